package shipment

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/shopflow/shopflow/pkg/events"
)

// MaxFieldLength bounds each address field, in characters, so it fits on
// one line of the label (the contract's events.MaxAddressFieldLength).
const MaxFieldLength = events.MaxAddressFieldLength

// ErrUndeliverable is wrapped by every reason the carrier refuses an
// address. Retrying cannot change the answer.
var ErrUndeliverable = errors.New("address the carrier cannot take")

// AddressError names the field of an address the carrier refuses and why.
type AddressError struct {
	Field  string
	Reason string
}

func (e *AddressError) Error() string {
	return fmt.Sprintf("%s: shipping_address.%s %s", ErrUndeliverable, e.Field, e.Reason)
}

// Unwrap makes errors.Is(err, ErrUndeliverable) hold.
func (e *AddressError) Unwrap() error { return ErrUndeliverable }

// CheckAddress reports the first field of a that the carrier cannot take
// as an *AddressError: a country it does not serve, a missing name, first
// line, city or postal code, a field longer than MaxFieldLength or holding
// control characters or characters the label cannot print
// (events.LabelPrintable). The carrier's coverage and line length are part of
// the OrderPlaced contract (pkg/events), so the order service refuses such
// addresses when they are placed; this is the carrier's own word, since a
// label is printed from them.
func CheckAddress(a Address) error {
	fields := []struct {
		name, value string
		required    bool
	}{
		{"name", a.Name, true},
		{"line1", a.Line1, true},
		{"line2", a.Line2, false},
		{"city", a.City, true},
		{"postal_code", a.PostalCode, true},
	}
	for _, f := range fields {
		v := strings.TrimSpace(f.value)
		switch {
		case f.required && v == "":
			return &AddressError{Field: f.name, Reason: "is empty"}
		case !utf8.ValidString(f.value):
			return &AddressError{Field: f.name, Reason: "is not valid UTF-8"}
		case utf8.RuneCountInString(f.value) > MaxFieldLength:
			return &AddressError{Field: f.name, Reason: fmt.Sprintf("is longer than %d characters", MaxFieldLength)}
		case strings.ContainsFunc(f.value, unicode.IsControl):
			return &AddressError{Field: f.name, Reason: "contains control characters"}
		}
		if r, bad := events.FirstUnprintable(f.value); bad {
			return &AddressError{Field: f.name, Reason: fmt.Sprintf("contains %q (%U), which the label cannot print", r, r)}
		}
	}
	if !events.ShipsTo(a.Country) {
		return &AddressError{Field: "country", Reason: fmt.Sprintf("%q is not a country the carrier serves (%s)",
			a.Country, strings.Join(events.ShippingCountries(), " "))}
	}
	return nil
}
