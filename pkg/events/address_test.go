package events_test

import (
	"regexp"
	"slices"
	"testing"

	"github.com/shopflow/shopflow/pkg/events"
)

func TestShippingCountries(t *testing.T) {
	cs := events.ShippingCountries()
	if len(cs) == 0 || !slices.IsSorted(cs) || len(slices.Compact(slices.Clone(cs))) != len(cs) {
		t.Fatalf("ShippingCountries() = %v, want a sorted list without repeats", cs)
	}
	code := regexp.MustCompile(`^[A-Z]{2}$`)
	for _, c := range cs {
		if !code.MatchString(c) || !events.ShipsTo(c) {
			t.Errorf("%q: not a two-letter code, or ShipsTo refuses it", c)
		}
	}
	for _, c := range []string{"BR", "us", "", "USA", "ZZ"} {
		if events.ShipsTo(c) {
			t.Errorf("ShipsTo(%q) = true", c)
		}
	}
	cs[0] = "XX"
	if events.ShipsTo("XX") {
		t.Error("changing the returned slice changed the list")
	}
}

func TestLabelPrintable(t *testing.T) {
	for _, tc := range []struct {
		s    string
		bad  rune
		fail bool
	}{
		{s: "Ada Lovelace, 1 Main St. #4"},
		{s: "Zoë Müller-Łukasiewicz, ul. Świętokrzyska 12, Łódź"},
		{s: "Øster Allé 5, Århus; Dvořák, Plzeň; Ștefan cel Mare, Iași"},
		{s: "Αθήνα; Москва, ул. Тверская"},
		{s: "東京都千代田区", bad: '東', fail: true},
		{s: "Main St \u00a0", bad: '\u00a0', fail: true}, // no-break space: not printable text
		{s: "tab\there", bad: '\t', fail: true},
		{s: "Cairo القاهرة", bad: 'ا', fail: true},
	} {
		bad, fail := events.FirstUnprintable(tc.s)
		if bad != tc.bad || fail != tc.fail {
			t.Errorf("FirstUnprintable(%q) = %q, %v; want %q, %v", tc.s, bad, fail, tc.bad, tc.fail)
		}
	}
}

// The city and postal code are written as the destination's post writes
// them; they were "postal code city" everywhere ("12345 Springfield",
// "SW1A 1AA London").
func TestCityLines(t *testing.T) {
	for _, tc := range []struct {
		country, city, postal string
		want                  []string
	}{
		{"US", "Springfield, IL", "62704", []string{"Springfield, IL 62704"}},
		{"CA", "Ottawa ON", "K1A 0B1", []string{"Ottawa ON K1A 0B1"}},
		{"AU", "Sydney NSW", "2000", []string{"Sydney NSW 2000"}},
		{"GB", "London", "SW1A 1AA", []string{"London", "SW1A 1AA"}},
		{"IE", "Dublin 2", "D02 X285", []string{"Dublin 2", "D02 X285"}},
		{"DE", "Berlin", "10115", []string{"10115 Berlin"}},
		{"FR", "Paris", "75007", []string{"75007 Paris"}},
		{"NL", "Amsterdam", "1012 JS", []string{"1012 JS Amsterdam"}},
		{"BR", "São Paulo", "01310-100", []string{"01310-100 São Paulo"}}, // not served: postal code first
		{"GB", "London", "", []string{"London"}},
		{"US", "", "12345", []string{"12345"}},
		{"DE", "", "", []string{}},
	} {
		a := events.Address{City: tc.city, PostalCode: tc.postal, Country: tc.country}
		if got := a.CityLines(); !slices.Equal(got, tc.want) {
			t.Errorf("%s %q %q: %q, want %q", tc.country, tc.city, tc.postal, got, tc.want)
		}
	}
}

// Every country orders ship to has its own layout: one added to the list
// must say where its postal code goes, not fall back unseen.
func TestCityLinesKnowEveryShippingCountry(t *testing.T) {
	for _, c := range events.ShippingCountries() {
		a := events.Address{City: "City", PostalCode: "PC", Country: c}
		if !events.HasCityLayout(c) {
			t.Errorf("%s: no layout for its city and postal code (CityLines gives %q)", c, a.CityLines())
		}
	}
}
