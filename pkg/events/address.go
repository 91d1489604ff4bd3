package events

import (
	"slices"
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
