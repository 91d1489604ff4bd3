// Package payment holds the payment service's domain rules in plain Go: the
// statuses a payment goes through, which currencies and amounts it accepts,
// and what each order event means for a payment in a given state.
//
// The saga drives a payment through at most three steps, one per order
// event: OrderPlaced authorizes (or is declined), OrderConfirmed captures,
// OrderCancelled compensates (void before capture, refund after). Every
// other combination (a capture for a declined payment, a compensation for
// an order never paid here, a step repeated under a new event id) is a
// no-op that the service records in the payment's history but acts on in
// no other way: the decisions here say which.
package payment

import (
	"errors"
	"fmt"
	"time"
)

// Status is the state of a payment.
type Status string

// The statuses of a payment.
const (
	// StatusAuthorized: the gateway holds the order's amount on the card.
	StatusAuthorized Status = "authorized"
	// StatusDeclined: the gateway refused the authorization; final.
	StatusDeclined Status = "declined"
	// StatusCaptured: the authorized amount was collected.
	StatusCaptured Status = "captured"
	// StatusVoided: the authorization was released before capture; final.
	StatusVoided Status = "voided"
	// StatusRefunded: the captured amount was paid back; final.
	StatusRefunded Status = "refunded"
	// StatusCancelled: the order was cancelled before any payment was made
	// here. It is a tombstone: an OrderPlaced arriving later (replayed from
	// the dead-letter topic, say) must not charge a cancelled order.
	StatusCancelled Status = "cancelled"
)

// StatusNone is what the history records for an order that has no payment.
const StatusNone Status = "none"

// Payment is the payment service's record of one order's payment.
type Payment struct {
	OrderID           string
	PaymentID         string // empty for StatusCancelled tombstones
	Status            Status
	AmountCents       int64
	Currency          string
	ChargeID          string // the gateway's id of the authorization
	AuthorizationCode string
	Reason            string // why it was declined, or why the order was cancelled
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

// StatusOf returns p's status, or StatusNone for a nil payment.
func StatusOf(p *Payment) Status {
	if p == nil {
		return StatusNone
	}
	return p.Status
}

// Errors of content that no retry can fix; the consumer dead-letters the
// event naming them.
var (
	// ErrUnsupportedCurrency: the service takes no payments in the currency.
	ErrUnsupportedCurrency = errors.New("unsupported currency")
	// ErrInvalidAmount: the amount is not a positive number of minor units.
	ErrInvalidAmount = errors.New("invalid amount")
)

// minorPerMajor gives, per accepted ISO 4217 currency, how many minor units
// make one major unit (100 cents to the dollar, 1 yen to the yen).
var minorPerMajor = map[string]int64{
	"USD": 100, "EUR": 100, "GBP": 100, "CHF": 100, "CAD": 100, "AUD": 100,
	"SEK": 100, "NOK": 100, "DKK": 100, "PLN": 100, "JPY": 1,
}

// MinorPerMajor returns how many minor units make one major unit of
// currency, and whether the service accepts the currency at all.
func MinorPerMajor(currency string) (int64, bool) {
	n, ok := minorPerMajor[currency]
	return n, ok
}

// CheckAmount reports whether an order's amount can be paid here: a
// positive number of minor units in an accepted currency.
func CheckAmount(amountCents int64, currency string) error {
	if _, ok := minorPerMajor[currency]; !ok {
		return fmt.Errorf("%w %q", ErrUnsupportedCurrency, currency)
	}
	if amountCents <= 0 {
		return fmt.Errorf("%w: %d minor units", ErrInvalidAmount, amountCents)
	}
	return nil
}

// Step is what the service must do at the gateway for an event.
type Step int

// The steps.
const (
	// Skip: nothing to do; the event is recorded in the history only.
	Skip Step = iota
	// Authorize the order's amount (OrderPlaced for a new order).
	Authorize
	// Capture the authorization (OrderConfirmed).
	Capture
	// Void the authorization (OrderCancelled before capture).
	Void
	// Refund the capture (OrderCancelled after capture).
	Refund
	// Tombstone: record the order as cancelled without a payment
	// (OrderCancelled for an order never seen).
	Tombstone
)

// Decision is what an event means for a payment in its current state.
type Decision struct {
	Step Step
	// Detail explains the decision for the history (and the log).
	Detail string
	// Unexpected marks a Skip the saga should never cause (a capture of a
	// declined payment): worth a warning, not an error.
	Unexpected bool
}

// OnPlaced decides what an OrderPlaced means for the order's payment p
// (nil when the order is new here).
func OnPlaced(p *Payment) Decision {
	switch StatusOf(p) {
	case StatusNone:
		return Decision{Step: Authorize}
	case StatusCancelled:
		return Decision{Step: Skip, Detail: "order placed after it was cancelled; not charged", Unexpected: true}
	default:
		return Decision{Step: Skip, Detail: fmt.Sprintf("order placed again; payment already %s", p.Status)}
	}
}

// OnConfirmed decides what an OrderConfirmed means for the order's payment
// p (nil when the order was never seen here).
func OnConfirmed(p *Payment) Decision {
	switch s := StatusOf(p); s {
	case StatusAuthorized:
		return Decision{Step: Capture, Detail: "captured on order confirmation"}
	case StatusCaptured:
		return Decision{Step: Skip, Detail: "order confirmed again; already captured"}
	case StatusNone:
		return Decision{Step: Skip, Detail: "order confirmed but no payment was made here; nothing to capture", Unexpected: true}
	default:
		return Decision{Step: Skip, Detail: fmt.Sprintf("order confirmed but payment is %s; nothing to capture", s), Unexpected: true}
	}
}

// OnCancelled decides what an OrderCancelled means for the order's payment
// p (nil when the order was never seen here).
func OnCancelled(p *Payment) Decision {
	switch s := StatusOf(p); s {
	case StatusAuthorized:
		return Decision{Step: Void, Detail: "authorization voided on order cancellation"}
	case StatusCaptured:
		return Decision{Step: Refund, Detail: "capture refunded on order cancellation"}
	case StatusNone:
		return Decision{Step: Tombstone, Detail: "order cancelled before any payment was made here; nothing to compensate"}
	case StatusDeclined:
		return Decision{Step: Skip, Detail: "order cancelled; payment was declined, nothing to compensate"}
	default:
		return Decision{Step: Skip, Detail: fmt.Sprintf("order cancelled again; payment already %s", s)}
	}
}
