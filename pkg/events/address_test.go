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
