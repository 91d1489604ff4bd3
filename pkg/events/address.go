package events

import "slices"

// What an OrderPlaced's shipping address must hold for the order to ship:
// the carrier's coverage and the length of a label line. These are rules
// the producer and the consumer share, not part of the event's schema
// (Decode and schemas/ accept any two-letter country and any length, as
// v1 always has). The order service refuses other addresses when the
// order is placed (a 400 naming the field); the shipping service, which
// prints the label, checks them again and dead-letters an OrderPlaced
// that breaks them, since the saga has no event for a refused shipment.

// MaxAddressFieldLength bounds each field of a shipping address, in
// characters: each is one line of the shipping label.
const MaxAddressFieldLength = 60

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
