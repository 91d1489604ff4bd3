// Package order holds the order's rules in plain Go: what an order is, how
// its total is computed from catalog prices, and the saga's state machine
// that turns the payment, inventory and shipping results into the order's
// status. Nothing here knows about HTTP, SQL or Kafka.
package order

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/shopflow/shopflow/pkg/events"
)

// Status is the order's overall state.
type Status string

// The order statuses (ARCHITECTURE.md, "The saga").
const (
	Pending   Status = "pending"
	Confirmed Status = "confirmed"
	Cancelled Status = "cancelled"
)

// Valid reports whether s is one of the statuses.
func (s Status) Valid() bool { return s == Pending || s == Confirmed || s == Cancelled }

// Step is the state of one saga step (payment, inventory or shipping).
// Each step moves forward only: pending → an outcome → its compensation.
type Step string

// Step states. Every step starts Pending; each other value is named after
// the event that set it.
const (
	StepPending Step = "pending"

	PaymentAuthorized Step = "authorized"
	PaymentDeclined   Step = "declined"
	PaymentVoided     Step = "voided"
	PaymentRefunded   Step = "refunded"

	StockReserved Step = "reserved"
	StockRejected Step = "rejected"
	StockReleased Step = "released"

	ShipmentScheduled Step = "scheduled"
	ShipmentCancelled Step = "cancelled"
)

// rank orders a step's states so a late or duplicate result never moves a
// step backwards: 0 pending, 1 outcome (success or failure), 2 compensated.
func (s Step) rank() int {
	switch s {
	case StepPending, "":
		return 0
	case PaymentVoided, PaymentRefunded, StockReleased, ShipmentCancelled:
		return 2
	default:
		return 1
	}
}

// succeeded reports whether the step's work was done (and possibly since
// compensated).
func (s Step) succeeded() bool {
	switch s {
	case PaymentAuthorized, StockReserved, ShipmentScheduled:
		return true
	}
	return false
}

// Steps are the three steps of an order's saga.
type Steps struct {
	Payment   Step
	Inventory Step
	Shipping  Step
}

// Line is one line of an order, priced from the catalog.
type Line struct {
	SKU            string
	Name           string
	Quantity       int
	UnitPriceCents int64
}

// TotalCents is the line's price times its quantity.
func (l Line) TotalCents() int64 { return l.UnitPriceCents * int64(l.Quantity) }

// Address is where the order ships.
type Address struct {
	Name       string `json:"name"`
	Line1      string `json:"line1"`
	Line2      string `json:"line2,omitempty"`
	City       string `json:"city"`
	PostalCode string `json:"postal_code"`
	Country    string `json:"country"`
}

// Order is an order and the state of its saga.
type Order struct {
	ID             string
	CustomerID     string
	Status         Status
	Currency       string
	TotalCents     int64
	Lines          []Line
	Steps          Steps
	TrackingNumber string
	Address        Address
	// CardToken is carried into OrderPlaced for the payment service; it is
	// not stored.
	CardToken string

	// The causes behind a cancellation. The reason shown is derived from
	// them in a fixed order, so it does not depend on which result
	// arrived first.
	PaymentFailure   string
	InventoryFailure string
	CustomerCancel   bool
	// Expiry says which steps had not answered when the order was
	// cancelled for waiting too long (Expire); empty otherwise.
	Expiry string

	PlacedAt    time.Time
	ConfirmedAt time.Time // zero until confirmed
	CancelledAt time.Time // zero until cancelled
	UpdatedAt   time.Time
}

// Limits on an order's lines (issue 3): the event contract's, so that
// every order placed makes an OrderPlaced the consumers take.
const (
	MaxLines    = events.MaxLines
	MaxQuantity = events.MaxQuantity
)

// New builds a pending order from priced lines; the total is computed
// here, from the catalog prices the lines carry.
func New(id, customerID, currency, cardToken string, lines []Line, addr Address, now time.Time) (Order, error) {
	if len(lines) == 0 || len(lines) > MaxLines {
		return Order{}, fmt.Errorf("order: %d lines, want 1..%d", len(lines), MaxLines)
	}
	var total int64
	for _, l := range lines {
		if l.Quantity < 1 || l.Quantity > MaxQuantity || l.UnitPriceCents <= 0 {
			return Order{}, fmt.Errorf("order: line %s: quantity %d, price %d", l.SKU, l.Quantity, l.UnitPriceCents)
		}
		total += l.TotalCents()
	}
	now = stamp(now)
	return Order{
		ID: id, CustomerID: customerID, Status: Pending, Currency: currency, TotalCents: total,
		Lines: lines, Address: addr, CardToken: cardToken,
		Steps:    Steps{Payment: StepPending, Inventory: StepPending, Shipping: StepPending},
		PlacedAt: now, UpdatedAt: now,
	}, nil
}

// Result is what a step reported, translated from its event.
type Result struct {
	// Step is the new state the result puts its step in.
	Step Step
	// Reason explains a failure (declined, out of stock).
	Reason string
	// TrackingNumber comes with ShipmentScheduled.
	TrackingNumber string
	// Amount is the money a payment result names (authorized, declined,
	// voided or refunded); nil for the others.
	Amount *Amount
	// Stock is what a stock result names, by SKU: the quantities
	// reserved or released, or for a rejection the quantities it could
	// not fill (Partial); nil for the others.
	Stock map[string]int
	// Partial says Stock names some of the order's SKUs, not all (a
	// rejection lists only the short lines).
	Partial bool
}

// Amount is a sum of money in minor units.
type Amount struct {
	Cents    int64
	Currency string
}

func (a Amount) String() string { return fmt.Sprintf("%d %s", a.Cents, a.Currency) }

// Mismatch says how r disagrees with the order it is about: a payment
// result for another amount or currency than the order's total, a stock
// result for other SKUs or quantities than the order's lines (which o
// must hold); "" when it agrees, or names neither. The services answer
// for the order as placed (the payment service authorizes, voids and
// refunds its whole total; the inventory reserves, releases or rejects
// its lines, summed by SKU), so such a result is not an answer for this
// order, whoever sent it: a 1 JPY authorization must not confirm a
// 49.98 USD order.
func (o *Order) Mismatch(r Result) string {
	if r.Amount != nil {
		if want := (Amount{o.TotalCents, o.Currency}); *r.Amount != want {
			return fmt.Sprintf("it is for %s (minor units), the order's total is %s", r.Amount, want)
		}
	}
	if r.Stock == nil {
		return ""
	}
	want := make(map[string]int, len(o.Lines))
	for _, l := range o.Lines {
		want[l.SKU] += l.Quantity
	}
	for sku, n := range r.Stock {
		if w, ok := want[sku]; !ok || n != w {
			return fmt.Sprintf("it names %s, the order's lines are %s", quantities(r.Stock), quantities(want))
		}
	}
	if !r.Partial && len(r.Stock) != len(want) {
		return fmt.Sprintf("it names %s, the order's lines are %s", quantities(r.Stock), quantities(want))
	}
	return ""
}

// quantities lists q as "SKU-1×2, SKU-2×1", in SKU order.
func quantities(q map[string]int) string {
	parts := make([]string, 0, len(q))
	for _, sku := range slices.Sorted(maps.Keys(q)) {
		parts = append(parts, fmt.Sprintf("%s×%d", sku, q[sku]))
	}
	return strings.Join(parts, ", ")
}

// Contradicts reports whether r contradicts the outcome already recorded
// for its step, and what that is: a failure where a success is recorded
// or the reverse (authorized, then declined; reserved, then rejected), a
// compensation counting as the success it undoes (declined, then voided).
// One service gives one answer per order, so two such answers mean one of
// them is not its own (forged, or a bug): Apply leaves the order as the
// first made it, and the caller says so.
func (o *Order) Contradicts(r Result) (recorded Step, ok bool) {
	step := o.stepFor(r.Step)
	if step == nil {
		return "", false
	}
	was, now := step.outcome(), r.Step.outcome()
	return *step, was != 0 && now != 0 && was != now
}

// outcome is what a step's state says of the step's work: 1 done (and
// possibly since compensated), -1 refused (declined, rejected), 0 no
// answer yet.
func (s Step) outcome() int {
	switch s {
	case StepPending, "":
		return 0
	case PaymentDeclined, StockRejected:
		return -1
	}
	return 1
}

// Outcome is what applying a result or a cancel asks the caller to
// announce.
type Outcome int

// Outcomes: nothing new, or the order just became confirmed or cancelled
// (emit OrderConfirmed / OrderCancelled).
const (
	NoChange Outcome = iota
	Changed
	BecameConfirmed
	BecameCancelled
)

// ErrNotCancellable is returned by Cancel for a confirmed order.
var ErrNotCancellable = errors.New("order is confirmed and can no longer be cancelled")

// Apply records a step's result and advances the order: all three steps
// succeeded → confirmed; a failure while pending → cancelled. Duplicates
// and results that would move a step backwards change nothing, so any
// arrival order of the same results ends in the same state; nor does a
// result that contradicts the step's recorded outcome (Contradicts).
func (o *Order) Apply(r Result, at time.Time) Outcome {
	step := o.stepFor(r.Step)
	if step == nil {
		return NoChange
	}
	if r.Step.rank() <= step.rank() {
		return NoChange // a duplicate, or older news than what we know
	}
	if _, ok := o.Contradicts(r); ok {
		return NoChange // declined, then voided: the first answer stands
	}
	*step = r.Step
	switch r.Step {
	case PaymentDeclined:
		o.PaymentFailure = "payment declined: " + orUnknown(r.Reason)
	case StockRejected:
		o.InventoryFailure = "out of stock: " + orUnknown(r.Reason)
	case ShipmentScheduled:
		o.TrackingNumber = r.TrackingNumber
	}
	o.touch(at)

	if o.Status != Pending {
		return Changed
	}
	if o.PaymentFailure != "" || o.InventoryFailure != "" {
		o.cancel()
		return BecameCancelled
	}
	if o.Steps.Payment.succeeded() && o.Steps.Inventory.succeeded() && o.Steps.Shipping.succeeded() {
		o.Status = Confirmed
		o.ConfirmedAt = o.UpdatedAt
		return BecameConfirmed
	}
	return Changed
}

// Cancel is the customer's cancel: a pending order becomes cancelled, a
// cancelled one stays as it is (NoChange), a confirmed one cannot.
func (o *Order) Cancel(at time.Time) (Outcome, error) {
	switch o.Status {
	case Cancelled:
		return NoChange, nil
	case Confirmed:
		return NoChange, ErrNotCancellable
	}
	o.CustomerCancel = true
	o.touch(at)
	o.cancel()
	return BecameCancelled, nil
}

// Expire cancels an order still pending after timeout: a step that never
// answers (its OrderPlaced dead-lettered, its service gone) would hold the
// customer's money and the stock for good. It names the steps that had not
// answered. Not pending, or placed less than timeout before at: NoChange.
func (o *Order) Expire(at time.Time, timeout time.Duration) Outcome {
	if o.Status != Pending || at.Sub(o.PlacedAt) < timeout {
		return NoChange
	}
	var silent []string
	for _, s := range []struct {
		name string
		step Step
	}{{"payment", o.Steps.Payment}, {"inventory", o.Steps.Inventory}, {"shipping", o.Steps.Shipping}} {
		if s.step == StepPending {
			silent = append(silent, s.name)
		}
	}
	o.Expiry = fmt.Sprintf("no answer from %s within %s", strings.Join(silent, ", "), timeout)
	o.touch(at)
	o.cancel()
	return BecameCancelled
}

// stamp is the form every timestamp of an order takes: UTC, to the
// microsecond, as PostgreSQL stores it, so an order reads back with the
// instants the response that created or changed it showed.
func stamp(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// touch moves UpdatedAt to at, never back. Results carry their
// producer's clock (the event's time, which the order service caps at
// its own clock: never back means one from the future would pin it
// there), so one that arrives late, or
// from a host whose clock is behind, must not make the order look older
// than a change it has already shown; and the latest of the results'
// times is the same whatever order they arrive in.
func (o *Order) touch(at time.Time) {
	if at := stamp(at); at.After(o.UpdatedAt) {
		o.UpdatedAt = at
	}
}

// cancel ends the order; touch(at) has run. Like confirmed_at,
// cancelled_at is the order's latest instant, so it equals updated_at at
// the change and is never before placed_at, whatever the clocks of the
// hosts whose results came first.
func (o *Order) cancel() {
	o.Status = Cancelled
	o.CancelledAt = o.UpdatedAt
}

// Reason says why a cancelled order was cancelled: the customer, the
// wait (Expire), or the failed steps in a fixed order (payment, then
// inventory). A failure that arrives after the customer's cancel or the
// expiry does not change the reason: it did not cause the cancellation.
func (o *Order) Reason() string {
	if o.Status != Cancelled {
		return ""
	}
	if o.CustomerCancel {
		return "cancelled by customer"
	}
	if o.Expiry != "" {
		return o.Expiry
	}
	var parts []string
	for _, f := range []string{o.PaymentFailure, o.InventoryFailure} {
		if f != "" {
			parts = append(parts, f)
		}
	}
	return strings.Join(parts, "; ")
}

// Service names the step s is a state of: "payment", "inventory" or
// "shipping" ("" for pending, a state of every step).
func (s Step) Service() string {
	switch s {
	case PaymentAuthorized, PaymentDeclined, PaymentVoided, PaymentRefunded:
		return "payment"
	case StockReserved, StockRejected, StockReleased:
		return "inventory"
	case ShipmentScheduled, ShipmentCancelled:
		return "shipping"
	}
	return ""
}

func (o *Order) stepFor(s Step) *Step {
	switch s {
	case PaymentAuthorized, PaymentDeclined, PaymentVoided, PaymentRefunded:
		return &o.Steps.Payment
	case StockReserved, StockRejected, StockReleased:
		return &o.Steps.Inventory
	case ShipmentScheduled, ShipmentCancelled:
		return &o.Steps.Shipping
	}
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "no reason given"
	}
	return s
}

// Product is a catalog entry; orders are priced from it.
type Product struct {
	SKU        string
	Name       string
	PriceCents int64
	Currency   string
	Active     bool
	UpdatedAt  time.Time
}
