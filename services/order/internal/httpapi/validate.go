package httpapi

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/language"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/services/order/internal/app"
	"github.com/shopflow/shopflow/services/order/internal/order"
)

var (
	skuPattern = regexp.MustCompile(`^[A-Z0-9][A-Z0-9-]{0,63}$`)
	// An email address as people have them (alice+shop@, o'brien@) is a
	// customer id: the id is stored through parameters, written into pages
	// by html/template or as text, and sent as JSON, never spliced raw.
	customerPattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@+'-]{0,63}$`)
	cardTokenPattern = regexp.MustCompile(`^tok_[A-Za-z0-9_]{1,64}$`)
	postalPattern    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 -]{0,15}$`)
	currencyPattern  = regexp.MustCompile(`^[A-Z]{3}$`)
	countryPattern   = regexp.MustCompile(`^[A-Z]{2}$`)
)

const maxPriceCents = 10_000_000_00 // 10 million in major units

// validatePlace checks everything about a placement that needs no
// database; the catalog checks (known SKU, its currency) are the use
// case's. It returns every problem, each naming its field.
func validatePlace(req *PlaceOrderRequest, sells func(string) bool) []app.FieldError {
	var bad []app.FieldError
	add := func(field, msg string) {
		if msg != "" {
			bad = append(bad, app.FieldError{Field: field, Message: msg})
		}
	}
	add("customer_id", checkCustomerID(req.CustomerID))
	add("currency", checkCurrency(req.Currency, sells))
	switch n := len(req.Items); {
	case n == 0:
		add("items", "must hold at least one item")
	case n > order.MaxLines:
		add("items", fmt.Sprintf("holds %d items; at most %d are allowed", n, order.MaxLines))
	default:
		first := map[string]int{}
		for i, it := range req.Items {
			f := fmt.Sprintf("items.%d.", i)
			switch {
			case it.SKU == "":
				add(f+"sku", "is required")
			case !skuPattern.MatchString(it.SKU):
				add(f+"sku", "must be 1 to 64 of A-Z, 0-9 and -, starting with a letter or digit")
			default:
				if j, dup := first[it.SKU]; dup {
					add(f+"sku", fmt.Sprintf("repeats items.%d.sku; put the whole quantity on one line", j))
				} else {
					first[it.SKU] = i
				}
			}
			if it.Quantity < 1 || it.Quantity > order.MaxQuantity {
				add(f+"quantity", fmt.Sprintf("must be from 1 to %d", order.MaxQuantity))
			}
		}
	}
	switch tok := req.Payment.CardToken; {
	case tok == "":
		add("payment.card_token", "is required")
	case !cardTokenPattern.MatchString(tok):
		add("payment.card_token", "must be a card token like tok_visa")
	}
	// Each field is a line of the shipping label, and the order must go
	// where the carrier delivers (the OrderPlaced contract): an address
	// the shipping service would refuse is refused here, while the
	// customer can still fix it, rather than leave the order pending.
	a := req.ShippingAddress
	const maxLine = events.MaxAddressFieldLength
	add("shipping_address.name", checkLabelLine(a.Name, 1, maxLine))
	add("shipping_address.line1", checkLabelLine(a.Line1, 1, maxLine))
	if a.Line2 != "" {
		add("shipping_address.line2", checkLabelLine(a.Line2, 0, maxLine))
	}
	add("shipping_address.city", checkLabelLine(a.City, 1, maxLine))
	switch {
	case a.PostalCode == "":
		add("shipping_address.postal_code", "is required")
	case !postalPattern.MatchString(a.PostalCode):
		add("shipping_address.postal_code", "must be 1 to 16 letters, digits, spaces or dashes")
	}
	add("shipping_address.country", checkShipsTo(a.Country))
	if t := req.ExpectedTotalCents; t != nil && *t < 0 {
		add("expected_total_cents", "must be a whole number of minor units, 0 or more")
	}
	return bad
}

func checkCustomerID(s string) string {
	switch {
	case s == "":
		return "is required"
	case !customerPattern.MatchString(s):
		return "must be 1 to 64 of letters, digits and . _ : @ + ' -, starting with a letter or digit"
	}
	return ""
}

func checkCurrency(s string, sells func(string) bool) string {
	switch {
	case s == "":
		return "is required"
	case !currencyPattern.MatchString(s):
		return "must be an ISO 4217 code like USD"
	case !sells(s):
		return fmt.Sprintf("%s is not a supported currency", s)
	}
	return ""
}

// checkCountry accepts ISO 3166-1 alpha-2 codes of countries.
func checkCountry(s string) string {
	if s == "" {
		return "is required"
	}
	if countryPattern.MatchString(s) {
		if r, err := language.ParseRegion(s); err == nil && r.IsCountry() && r.String() == s {
			return ""
		}
	}
	return "must be an ISO 3166-1 alpha-2 country code like US"
}

// checkShipsTo wants a country code (checkCountry) of a country orders
// ship to.
func checkShipsTo(s string) string {
	if msg := checkCountry(s); msg != "" {
		return msg
	}
	if events.ShipsTo(s) {
		return ""
	}
	return fmt.Sprintf("we do not ship to %s; we ship to %s", s, strings.Join(events.ShippingCountries(), ", "))
}

// checkText wants min..max characters of printable text, not all blank.
func checkText(s string, min, max int) string {
	n := utf8.RuneCountInString(s)
	switch {
	case n == 0 && min > 0, min > 0 && strings.TrimSpace(s) == "":
		return "is required"
	case n > max:
		return fmt.Sprintf("is too long: %d characters, at most %d", n, max)
	case n < min:
		return fmt.Sprintf("must be %d to %d characters", min, max)
	case strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }):
		return "must not contain control characters"
	}
	return ""
}

// checkLabelLine wants a line of the shipping label: text as checkText
// wants it, in characters the label can print (events.LabelPrintable).
func checkLabelLine(s string, min, max int) string {
	if msg := checkText(s, min, max); msg != "" {
		return msg
	}
	if r, bad := events.FirstUnprintable(s); bad {
		return fmt.Sprintf("contains %q (%U), which the shipping label cannot print: write the address in Latin letters", r, r)
	}
	return ""
}

// validKey accepts Idempotency-Keys as Stripe does: up to 255 characters,
// here printable ASCII.
func validKey(k string) bool {
	if len(k) == 0 || len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}
