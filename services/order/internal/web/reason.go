package web

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/shopflow/shopflow/services/order/internal/order"
)

// Why an order was cancelled, for the customer. The API keeps the
// order's own reason (order.Reason: short codes for programs); the page
// says the same in words. What it does not know it shows as it is.

// declineTexts are the fake gateway's decline codes
// (services/payment/internal/gateway/rules.go) in words.
var declineTexts = map[string]string{
	"card_declined":        "Your card was declined.",
	"invalid_card":         "The card was not recognised.",
	"unsupported_currency": "The card cannot pay in this currency.",
	"no reason given":      "The payment was declined.",
}

// gatewayLimitMajorUnits is the largest amount the fake gateway
// authorizes, in major units of the order's currency
// (gateway.LimitMajorUnits; the payment service's package is its own).
const gatewayLimitMajorUnits = 10_000

var (
	// expiryReason is order.Expire's reason.
	expiryReason = regexp.MustCompile(`^no answer from (.+) within (\S+)$`)
	// shortLine is one line of a stock rejection, as consume writes it.
	shortLine = regexp.MustCompile(`^(\S+) \(wanted (\d+), (\d+) available\)$`)
)

// reasonText is why o was cancelled, in words ("" unless it was).
func reasonText(o order.Order) string {
	if o.Status != order.Cancelled {
		return ""
	}
	if o.CustomerCancel {
		return "You cancelled the order."
	}
	if o.Expiry != "" {
		return expiryText(o.Expiry)
	}
	var parts []string
	if o.PaymentFailure != "" {
		parts = append(parts, declineText(o.PaymentFailure, o.Currency))
	}
	if o.InventoryFailure != "" {
		parts = append(parts, stockText(o.InventoryFailure, o.Lines))
	}
	return strings.Join(parts, " ")
}

func declineText(failure, currency string) string {
	code, ok := strings.CutPrefix(failure, "payment declined: ")
	if !ok {
		return failure
	}
	if code == "amount_exceeds_limit" {
		limit := int64(gatewayLimitMajorUnits)
		for range minorDigitsOf(currency) {
			limit *= 10
		}
		return "The amount is over the card's limit of " + formatMoney(limit, currency) + "."
	}
	if s, ok := declineTexts[code]; ok {
		return s
	}
	return failure
}

// stockText names the products that were short, by the names the order
// shows; a rejection in another form is shown as it is.
func stockText(failure string, lines []order.Line) string {
	list, ok := strings.CutPrefix(failure, "out of stock: ")
	if !ok {
		return failure
	}
	names := map[string]string{}
	for _, l := range lines {
		names[l.SKU] = l.Name
	}
	var short []string
	items := strings.Split(list, "), ") // the lines' own ", " is inside their parentheses
	for i, item := range items {
		if i < len(items)-1 {
			item += ")"
		}
		m := shortLine.FindStringSubmatch(item)
		if m == nil {
			return failure
		}
		name := names[m[1]]
		if name == "" {
			name = m[1]
		}
		short = append(short, fmt.Sprintf("%s (you asked for %s, %s left)", name, m[2], m[3]))
	}
	return "Not enough in stock: " + strings.Join(short, "; ") + "."
}

// stepNames are the saga's steps as the page names them.
var stepNames = map[string]string{"payment": "the payment", "inventory": "the stock check", "shipping": "shipping"}

func expiryText(expiry string) string {
	m := expiryReason.FindStringSubmatch(expiry)
	if m == nil {
		return expiry
	}
	d, err := time.ParseDuration(m[2])
	if err != nil {
		return expiry
	}
	var steps []string
	for _, s := range strings.Split(m[1], ", ") {
		name, ok := stepNames[s]
		if !ok {
			return expiry
		}
		steps = append(steps, name)
	}
	list := steps[0]
	if n := len(steps); n > 1 {
		list = strings.Join(steps[:n-1], ", ") + " and " + steps[n-1]
	}
	return "Cancelled automatically: " + list + " did not answer within " + durationText(d) + "."
}

// durationText says d in hours, minutes and seconds ("1 hour 30 minutes").
func durationText(d time.Duration) string {
	var parts []string
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{time.Hour, "hour"}, {time.Minute, "minute"}, {time.Second, "second"}} {
		n := int64(d / u.unit)
		d -= time.Duration(n) * u.unit
		switch {
		case n == 1:
			parts = append(parts, "1 "+u.name)
		case n > 1:
			parts = append(parts, strconv.FormatInt(n, 10)+" "+u.name+"s")
		}
	}
	if len(parts) == 0 {
		return "less than a second"
	}
	return strings.Join(parts, " ")
}
