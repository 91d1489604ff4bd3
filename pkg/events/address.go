package events

import (
	"slices"
	"strings"
	"unicode"
)

// What an OrderPlaced's shipping address must hold for the order to ship:
// the carrier's coverage, the length of a label line and the characters
// a label can print. These are rules the producer and the consumer
// share, not part of the event's schema (Decode and schemas/ accept any
// two-letter country, and any length up to the contract's bound on a
// string, 255 characters). The order service refuses other addresses
// when the order is placed (a 400 naming the field); the shipping
// service, which prints the label, checks them again and dead-letters an
// OrderPlaced that breaks them, since the saga has no event for a refused
// shipment.

// MaxAddressFieldLength bounds each field of a shipping address, in
// characters: each is one line of the shipping label.
const MaxAddressFieldLength = 60

// LabelPrintable reports whether the shipping label can print r: the
// letters of the Latin (with the accents of every country the carrier
// serves), Greek and Cyrillic scripts, digits, punctuation and common
// symbols. An address in another script (Japanese, Chinese, Arabic, ...)
// must be written in Latin letters: a label showing boxes for it would
// not reach its address.
func LabelPrintable(r rune) bool { return unicode.Is(labelRunes, r) }

// FirstUnprintable returns the first character of s the label cannot
// print, and false when it can print all of s.
func FirstUnprintable(s string) (rune, bool) {
	for _, r := range s {
		if !LabelPrintable(r) {
			return r, true
		}
	}
	return 0, false
}

// shippingCountries are the ISO 3166-1 alpha-2 codes the carrier delivers
// to, sorted.
var shippingCountries = []string{
	"AT", "AU", "BE", "CA", "CH", "CZ", "DE", "DK", "ES", "FI", "FR", "GB",
	"IE", "IT", "JP", "LU", "NL", "NO", "NZ", "PL", "PT", "SE", "US",
}

// ShippingCountries returns the ISO 3166-1 alpha-2 codes orders ship to,
// sorted.
func ShippingCountries() []string { return slices.Clone(shippingCountries) }

// ShipsTo reports whether orders ship to country (an ISO 3166-1 alpha-2
// code, upper case).
func ShipsTo(country string) bool {
	_, ok := slices.BinarySearch(shippingCountries, country)
	return ok
}

// cityLayout is how a country's post writes an address's city and
// postal code.
type cityLayout int

const (
	postcodeCity     cityLayout = iota // "10115 Berlin": continental Europe
	cityPostcode                       // "Springfield 12345": North America, Oceania, Japan (romanized)
	cityThenPostcode                   // "London", then "SW1A 1AA" on a line of its own: the UK and Ireland
)

// cityLayouts holds the layout of every country orders ship to, as the
// countries' posts write it (the Universal Postal Union's addressing
// guides, and the formats of Google's libaddressinput data). The address
// has no state or province field: a customer who writes one writes it
// with the city ("Springfield, IL"), which then comes before the postal
// code as it should.
var cityLayouts = map[string]cityLayout{
	"AT": postcodeCity, "BE": postcodeCity, "CH": postcodeCity, "CZ": postcodeCity,
	"DE": postcodeCity, "DK": postcodeCity, "ES": postcodeCity, "FI": postcodeCity,
	"FR": postcodeCity, "IT": postcodeCity, "LU": postcodeCity, "NL": postcodeCity,
	"NO": postcodeCity, "PL": postcodeCity, "PT": postcodeCity, "SE": postcodeCity,
	"AU": cityPostcode, "CA": cityPostcode, "JP": cityPostcode, "NZ": cityPostcode,
	"US": cityPostcode,
	"GB": cityThenPostcode, "IE": cityThenPostcode,
}

// CityLines returns the lines an address's city and postal code take
// when it is written out (the order page, the shipping label), in the
// order its country's post writes them: "10115 Berlin" (DE),
// "Springfield 12345" (US), "London" then "SW1A 1AA" (GB). A country
// outside ShippingCountries gets the postal code first. An empty field
// is left out, and so is a line left empty.
func (a Address) CityLines() []string {
	switch cityLayouts[a.Country] {
	case cityPostcode:
		return nonEmpty(strings.TrimSpace(a.City + " " + a.PostalCode))
	case cityThenPostcode:
		return nonEmpty(a.City, a.PostalCode)
	default:
		return nonEmpty(strings.TrimSpace(a.PostalCode + " " + a.City))
	}
}

// nonEmpty returns the lines that are not empty.
func nonEmpty(lines ...string) []string {
	return slices.DeleteFunc(lines, func(l string) bool { return l == "" })
}
