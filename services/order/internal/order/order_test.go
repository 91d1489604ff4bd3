package order

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func newOrder(t *testing.T) Order {
	t.Helper()
	o, err := New("o1", "c1", "USD", "tok_visa",
		[]Line{{SKU: "A", Name: "a", Quantity: 2, UnitPriceCents: 250}, {SKU: "B", Name: "b", Quantity: 1, UnitPriceCents: 1000}},
		Address{Name: "n", Line1: "l", City: "c", PostalCode: "p", Country: "US"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestNewComputesTotal(t *testing.T) {
	o := newOrder(t)
	if o.TotalCents != 1500 || o.Status != Pending || o.Steps != (Steps{StepPending, StepPending, StepPending}) {
		t.Fatalf("New = %+v", o)
	}
	if _, err := New("o", "c", "USD", "t", nil, Address{}, t0); err == nil {
		t.Error("New with no lines succeeded")
	}
	if _, err := New("o", "c", "USD", "t", []Line{{SKU: "A", Quantity: 1001, UnitPriceCents: 1}}, Address{}, t0); err == nil {
		t.Error("New with quantity 1001 succeeded")
	}
}

// interleavings returns every merge of the sequences that keeps each
// sequence's own order (one topic partition per step delivers its results
// in order; across steps anything goes).
func interleavings(seqs [][]Result) [][]Result {
	total := 0
	for _, s := range seqs {
		total += len(s)
	}
	var out [][]Result
	pos := make([]int, len(seqs))
	var cur []Result
	var rec func()
	rec = func() {
		if len(cur) == total {
			out = append(out, append([]Result(nil), cur...))
			return
		}
		for i, s := range seqs {
			if pos[i] < len(s) {
				cur = append(cur, s[pos[i]])
				pos[i]++
				rec()
				pos[i]--
				cur = cur[:len(cur)-1]
			}
		}
	}
	rec()
	return out
}

type final struct {
	Status   Status
	Steps    Steps
	Reason   string
	Tracking string
	Outcomes string // how often each announcing outcome happened
}

func run(t *testing.T, rs []Result, dupEvery int) final {
	o := newOrder(t)
	confirmed, cancelled := 0, 0
	for i, r := range rs {
		times := 1
		if dupEvery > 0 && i%dupEvery == 0 {
			times = 2 // redelivered
		}
		for range times {
			switch o.Apply(r, t0.Add(time.Duration(i)*time.Second)) {
			case BecameConfirmed:
				confirmed++
			case BecameCancelled:
				cancelled++
			}
		}
	}
	return final{o.Status, o.Steps, o.Reason(), o.TrackingNumber, fmt.Sprintf("confirmed×%d cancelled×%d", confirmed, cancelled)}
}

// TestSagaEveryArrivalOrder: for each scenario, every arrival order of the
// results, with and without redeliveries, ends in the same state and
// announces the outcome exactly once.
func TestSagaEveryArrivalOrder(t *testing.T) {
	auth := Result{Step: PaymentAuthorized}
	declined := Result{Step: PaymentDeclined, Reason: "card_declined"}
	voided := Result{Step: PaymentVoided}
	reserved := Result{Step: StockReserved}
	rejected := Result{Step: StockRejected, Reason: "SKU-1"}
	released := Result{Step: StockReleased}
	scheduled := Result{Step: ShipmentScheduled, TrackingNumber: "SF123"}
	shipCancelled := Result{Step: ShipmentCancelled}

	tests := []struct {
		name  string
		seqs  [][]Result // per step, in the order that step reports
		want  final
		count int // interleavings expected, to prove the generator ran
	}{
		{
			name: "all succeed", seqs: [][]Result{{auth}, {reserved}, {scheduled}}, count: 6,
			want: final{Confirmed, Steps{PaymentAuthorized, StockReserved, ShipmentScheduled}, "", "SF123", "confirmed×1 cancelled×0"},
		},
		{
			name: "payment declined, the others compensate", seqs: [][]Result{{declined}, {reserved, released}, {scheduled, shipCancelled}}, count: 30,
			want: final{Cancelled, Steps{PaymentDeclined, StockReleased, ShipmentCancelled}, "payment declined: card_declined", "SF123", "confirmed×0 cancelled×1"},
		},
		{
			name: "out of stock, the others compensate", seqs: [][]Result{{auth, voided}, {rejected}, {scheduled, shipCancelled}}, count: 30,
			want: final{Cancelled, Steps{PaymentVoided, StockRejected, ShipmentCancelled}, "out of stock: SKU-1", "SF123", "confirmed×0 cancelled×1"},
		},
		{
			name: "both fail: the reason does not depend on which came first", seqs: [][]Result{{declined}, {rejected}, {scheduled, shipCancelled}}, count: 12,
			want: final{Cancelled, Steps{PaymentDeclined, StockRejected, ShipmentCancelled}, "payment declined: card_declined; out of stock: SKU-1", "SF123", "confirmed×0 cancelled×1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orders := interleavings(tt.seqs)
			if len(orders) != tt.count {
				t.Fatalf("%d interleavings, want %d", len(orders), tt.count)
			}
			for _, dup := range []int{0, 1, 2, 3} {
				for _, rs := range orders {
					if got := run(t, rs, dup); got != tt.want {
						t.Fatalf("arrival %v (dup every %d):\n got %+v\nwant %+v", steps(rs), dup, got, tt.want)
					}
				}
			}
		})
	}
}

func steps(rs []Result) []Step {
	out := make([]Step, len(rs))
	for i, r := range rs {
		out[i] = r.Step
	}
	return out
}

func TestCustomerCancel(t *testing.T) {
	o := newOrder(t)
	if got, err := o.Cancel(t0); err != nil || got != BecameCancelled {
		t.Fatalf("Cancel pending = %v, %v", got, err)
	}
	if got, err := o.Cancel(t0); err != nil || got != NoChange {
		t.Fatalf("Cancel cancelled = %v, %v; want NoChange", got, err)
	}
	// Results arriving after the cancel are recorded; the reason stays.
	o.Apply(Result{Step: PaymentAuthorized}, t0)
	o.Apply(Result{Step: StockReserved}, t0)
	if got := o.Apply(Result{Step: ShipmentScheduled}, t0); got != Changed {
		t.Errorf("all steps succeeded after a cancel: %v, want Changed (no confirmation)", got)
	}
	o.Apply(Result{Step: StockRejected, Reason: "x"}, t0)
	if o.Status != Cancelled || o.Reason() != "cancelled by customer" {
		t.Errorf("after cancel: %s %q", o.Status, o.Reason())
	}

	c := newOrder(t)
	for _, r := range []Step{PaymentAuthorized, StockReserved, ShipmentScheduled} {
		c.Apply(Result{Step: r}, t0)
	}
	if _, err := c.Cancel(t0); !errors.Is(err, ErrNotCancellable) {
		t.Errorf("Cancel confirmed = %v, want ErrNotCancellable", err)
	}
}

// TestTimesNeverGoBack: results carry their producer's clock. One that
// arrives late (older than the customer's cancel) must not move updated_at
// back, and a producer whose clock is behind must not date a confirmation
// before the order was placed.
func TestTimesNeverGoBack(t *testing.T) {
	o := newOrder(t)
	cancelAt := t0.Add(2 * time.Second)
	if _, err := o.Cancel(cancelAt); err != nil {
		t.Fatal(err)
	}
	o.Apply(Result{Step: PaymentAuthorized}, t0.Add(time.Second)) // sent before the cancel, arrives after
	if !o.UpdatedAt.Equal(cancelAt) {
		t.Errorf("updated_at = %s after a late result, want the cancel's %s", o.UpdatedAt, cancelAt)
	}

	c := newOrder(t)
	behind := t0.Add(-time.Minute)
	for _, r := range []Step{PaymentAuthorized, StockReserved, ShipmentScheduled} {
		c.Apply(Result{Step: r}, behind)
	}
	if c.Status != Confirmed || c.ConfirmedAt.Before(c.PlacedAt) || c.UpdatedAt.Before(c.PlacedAt) {
		t.Errorf("confirmed_at %s, updated_at %s: before placed_at %s", c.ConfirmedAt, c.UpdatedAt, c.PlacedAt)
	}
	d := newOrder(t)
	d.Apply(Result{Step: PaymentDeclined, Reason: "x"}, behind)
	if d.CancelledAt.Before(d.PlacedAt) {
		t.Errorf("cancelled_at %s before placed_at %s", d.CancelledAt, d.PlacedAt)
	}

	// Results arriving out of their clocks' order: the confirmation is
	// dated at the latest of them, as updated_at is, not at the last to
	// arrive (seen by hand: confirmed_at 7 ms before updated_at).
	e := newOrder(t)
	e.Apply(Result{Step: PaymentAuthorized}, t0.Add(3*time.Second))
	e.Apply(Result{Step: StockReserved}, t0.Add(2*time.Second))
	e.Apply(Result{Step: ShipmentScheduled}, t0.Add(time.Second))
	if want := t0.Add(3 * time.Second); !e.ConfirmedAt.Equal(want) || !e.UpdatedAt.Equal(want) {
		t.Errorf("confirmed_at %s, updated_at %s; want both %s", e.ConfirmedAt, e.UpdatedAt, want)
	}
}

func TestExpire(t *testing.T) {
	o := newOrder(t)
	o.Apply(Result{Step: StockReserved}, t0)
	if got := o.Expire(o.PlacedAt.Add(time.Minute-time.Microsecond), time.Minute); got != NoChange || o.Status != Pending {
		t.Fatalf("Expire before the timeout = %v, %s; want NoChange, pending", got, o.Status)
	}
	at := o.PlacedAt.Add(time.Minute)
	if got := o.Expire(at, time.Minute); got != BecameCancelled {
		t.Fatalf("Expire at the timeout = %v, want BecameCancelled", got)
	}
	want := "no answer from payment, shipping within 1m0s"
	if o.Status != Cancelled || o.Reason() != want || !o.CancelledAt.Equal(at) {
		t.Fatalf("expired: %s %q at %s; want cancelled %q at %s", o.Status, o.Reason(), o.CancelledAt, want, at)
	}
	if got := o.Expire(at.Add(time.Hour), time.Minute); got != NoChange {
		t.Errorf("Expire twice = %v, want NoChange", got)
	}
	// The answers that come late are recorded (so the compensations they
	// bring show), and the reason stays the wait.
	o.Apply(Result{Step: PaymentDeclined, Reason: "card declined"}, at.Add(time.Second))
	if o.Steps.Payment != PaymentDeclined || o.Reason() != want {
		t.Errorf("after a late decline: payment %s, reason %q; want declined, %q", o.Steps.Payment, o.Reason(), want)
	}

	c := newOrder(t)
	for _, r := range []Step{PaymentAuthorized, StockReserved, ShipmentScheduled} {
		c.Apply(Result{Step: r}, t0)
	}
	if got := c.Expire(c.PlacedAt.Add(time.Hour), time.Minute); got != NoChange || c.Status != Confirmed {
		t.Errorf("Expire confirmed = %v, %s; want NoChange, confirmed", got, c.Status)
	}
}
