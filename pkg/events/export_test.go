package events

// HasCityLayout reports whether CityLines knows country's layout, rather
// than falling back to the postal code first.
func HasCityLayout(country string) bool {
	_, ok := cityLayouts[country]
	return ok
}
