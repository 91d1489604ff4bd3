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
