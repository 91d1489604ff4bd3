package consume_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/tracing"
	"github.com/shopflow/shopflow/services/shipping/internal/shipment"
)

// traced returns a context carrying a fresh remote trace, as the inbox
// gives each consumed event, and that trace's traceparent.
func traced() (context.Context, string) {
	var tid [16]byte
	var sid [8]byte
	_, _ = rand.Read(tid[:])
	_, _ = rand.Read(sid[:])
	tp := "00-" + hex.EncodeToString(tid[:]) + "-" + hex.EncodeToString(sid[:]) + "-01"
	return tracing.FromTraceParent(context.Background(), tp), tp
}

func cancelled(orderID, reason string) events.Event {
	return events.New("/shopflow/order", events.OrderCancelled{OrderID: orderID, Reason: reason,
		CancelledAt: time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC)})
}

func confirmed(orderID string) events.Event {
	return events.New("/shopflow/order", events.OrderConfirmed{OrderID: orderID, ConfirmedAt: time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC)})
}

// oneByOne applies evs one transaction each through the per-event
// handler, each under its own trace, and returns each one's error (the
// inbox would retry or dead-letter that event alone).
func oneByOne(t *testing.T, pool *pgxpool.Pool, items []inbox.Item) []error {
	t.Helper()
	errs := make([]error, len(items))
	for i, it := range items {
		errs[i] = pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error { return handler.Handle(it.Ctx, tx, it.Event) })
	}
	return errs
}

// outcome is everything a run of events left in a database, without what
// is random (shipment ids, tracking numbers, event ids of results, times
// the database stamps), ordered so two runs compare as strings.
type outcome struct {
	Shipments     []string
	History       []string
	Cancellations []string
	// Outbox is, per key, the events in outbox order: type, payload
	// (ids and tracking numbers checked against the shipment, then
	// blanked) and traceparent.
	Outbox map[string][]string
}

func (o outcome) String() string {
	b, _ := json.MarshalIndent(o, "", "  ")
	return string(b)
}

func rowsOf(t *testing.T, pool *pgxpool.Pool, q string) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func outcomeOf(t *testing.T, pool *pgxpool.Pool) outcome {
	t.Helper()
	ctx := context.Background()
	o := outcome{
		Shipments: rowsOf(t, pool, `SELECT concat_ws(' ', order_id, status, carrier, name, line1, line2, city, postal_code, country,
			placed_at, pickup_at, pickup_zone, coalesce(cancel_reason, '-')) FROM shipments ORDER BY order_id`),
		History: rowsOf(t, pool, `SELECT concat_ws(' ', order_id, status, event_id, note) FROM shipment_history ORDER BY order_id, id`),
		Cancellations: rowsOf(t, pool, `SELECT concat_ws(' ', order_id, event_id, reason, cancelled_at,
			CASE WHEN placed_ignored_at IS NULL THEN 'awaited' ELSE 'ignored' END)
			FROM unscheduled_cancellations ORDER BY order_id`),
		Outbox: map[string][]string{},
	}
	// Every shipment's identity, to check the events carry it.
	ids := map[string][2]string{}
	rows, err := pool.Query(ctx, `SELECT order_id, shipment_id::text, tracking_number FROM shipments`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var order, id, tn string
		if err := rows.Scan(&order, &id, &tn); err != nil {
			t.Fatal(err)
		}
		if err := shipment.ValidTrackingNumber(tn); err != nil {
			t.Errorf("shipment of %s: %v", order, err)
		}
		ids[order] = [2]string{id, tn}
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	rows, err = pool.Query(ctx, `SELECT convert_from(key, 'UTF8'), value, headers FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var key string
		var value []byte
		var pairs [][2]string
		if err := rows.Scan(&key, &value, &pairs); err != nil {
			t.Fatal(err)
		}
		hs := make([]events.Header, len(pairs))
		for i, p := range pairs {
			hs[i] = events.Header{Key: p[0], Value: []byte(p[1])}
		}
		ev, err := events.Decode(hs, value)
		if err != nil {
			t.Fatalf("outbox row for %s: %v", key, err)
		}
		want := ids[key]
		var payload events.Payload
		switch p := ev.Payload.(type) {
		case events.ShipmentScheduled:
			if p.ShipmentID != want[0] || p.TrackingNumber != want[1] {
				t.Errorf("ShipmentScheduled %+v, want shipment %v", p, want)
			}
			p.ShipmentID, p.TrackingNumber = "", ""
			payload = p
		case events.ShipmentCancelled:
			if p.ShipmentID != want[0] || p.TrackingNumber != want[1] {
				t.Errorf("ShipmentCancelled %+v, want shipment %v", p, want)
			}
			p.ShipmentID, p.TrackingNumber = "", ""
			payload = p
		default:
			payload = p
		}
		o.Outbox[key] = append(o.Outbox[key], fmt.Sprintf("%s %+v %s", ev.Type, payload, ev.TraceParent))
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	return o
}

// scenario is a batch of order events covering every decision the
// handler makes, with the state they meet prepared by before.
type scenario struct {
	before, batch []inbox.Item
	bad           int // index in batch of the one event the carrier refuses
	// tp[order] is the traceparent of the event whose result the order's
	// events must carry, in outbox order.
	tp map[string][]string
	// ids names the orders for the expectations.
	ids map[string]string
}

func newScenario() scenario {
	id := func(name string) string { return name + "-" + uuid.NewString()[:8] }
	s := scenario{bad: -1, tp: map[string][]string{}, ids: map[string]string{}}
	for _, n := range []string{"a", "b", "bad", "shipped", "cancelledShipped", "cancelledFirst", "cancelledFirstBad",
		"confirmed", "unknown", "never", "shippedBad"} {
		s.ids[n] = id(n)
	}
	ids := s.ids
	item := func(ev events.Event) inbox.Item {
		ctx, _ := traced()
		return inbox.Item{Ctx: ctx, Event: ev}
	}
	for _, ev := range []events.Event{
		placed(ids["shipped"], "DE"), placed(ids["shippedBad"], "DE"),
		placed(ids["cancelledShipped"], "DE"), cancelled(ids["cancelledShipped"], "early"),
		cancelled(ids["cancelledFirst"], "before"), cancelled(ids["cancelledFirstBad"], "before"),
		placed(ids["confirmed"], "DE"), confirmed(ids["confirmed"]),
	} {
		s.before = append(s.before, item(ev))
	}
	add := func(ev events.Event, emits bool) {
		ctx, tp := traced()
		s.batch = append(s.batch, inbox.Item{Ctx: ctx, Event: ev})
		if emits {
			s.tp[ev.Subject] = append(s.tp[ev.Subject], tp)
		}
	}
	var many []string
	for i := range 12 {
		many = append(many, id(fmt.Sprintf("m%02d", i)))
	}
	add(placed(ids["a"], "DE"), true)
	add(placed(many[0], "FR"), true)
	add(placed(ids["b"], "US"), true)
	s.bad = len(s.batch)
	add(placed(ids["bad"], "ZZ"), false)                    // refused: dead-lettered alone
	add(placed(ids["a"], "DE"), false)                      // re-published: no-op
	add(placed(many[1], "NL"), true)                        //
	add(placed(ids["shipped"], "DE"), false)                // booked before: no-op
	add(placed(ids["shippedBad"], "ZZ"), false)             // booked before, so its address is never checked
	add(placed(ids["cancelledShipped"], "DE"), false)       // booked (and cancelled) before: no-op
	add(placed(ids["cancelledFirst"], "DE"), false)         // cancelled first: not booked, noted
	add(placed(ids["cancelledFirstBad"], "ZZ"), false)      // cancelled first: noted, address never checked
	add(confirmed(ids["b"]), false)                         // booked in this batch: ready
	add(cancelled(ids["a"], "customer changed mind"), true) // booked in this batch: cancelled
	add(placed(many[2], "DE"), true)
	add(cancelled(ids["unknown"], "fraud"), false)       // never placed: recorded
	add(placed(ids["unknown"], "DE"), false)             // cancelled earlier in this batch: noted
	add(confirmed(ids["cancelledShipped"]), false)       // stays cancelled
	add(cancelled(ids["a"], "again"), false)             // already cancelled: no-op
	add(confirmed(ids["confirmed"]), false)              // already ready: no-op
	add(confirmed(ids["never"]), false)                  // no shipment: logged, no-op
	add(placed(ids["b"], "US"), false)                   // re-published after its confirmation: no-op
	add(cancelled(ids["unknown"], "fraud again"), false) // recorded already: no-op
	for _, m := range many[3:] {
		add(placed(m, "GB"), true)
		add(placed(m, "GB"), false) // re-published at once
	}
	add(events.New("/shopflow/payment", events.PaymentAuthorized{OrderID: ids["a"], PaymentID: "p", AmountCents: 1,
		Currency: "EUR"}), false) // not shipping's business
	return s
}

// published empties the outbox, as the relay does, so only the batch's
// events remain to compare.
func (s scenario) published(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), `DELETE FROM outbox`); err != nil {
		t.Fatal(err)
	}
}

// applyOneByOne applies the scenario one event per transaction and checks
// that exactly its bad event fails, permanently, as undeliverable; it
// returns that error.
func (s scenario) applyOneByOne(t *testing.T, pool *pgxpool.Pool) error {
	t.Helper()
	for i, err := range oneByOne(t, pool, s.before) {
		if err != nil {
			t.Fatalf("before[%d]: %v", i, err)
		}
	}
	s.published(t, pool)
	var badErr error
	for i, err := range oneByOne(t, pool, s.batch) {
		switch {
		case i == s.bad:
			if !inbox.IsPermanent(err) || !errors.Is(err, shipment.ErrUndeliverable) {
				t.Errorf("one by one: the bad address gave %v, want a permanent ErrUndeliverable", err)
			}
			badErr = err
		case err != nil:
			t.Errorf("one by one: batch[%d] (%s %s): %v", i, s.batch[i].Event.Type, s.batch[i].Event.Subject, err)
		}
	}
	return badErr
}

// check compares o with what the scenario must leave behind.
func (s scenario) check(t *testing.T, o outcome) {
	t.Helper()
	ids := s.ids
	status := map[string]string{}
	for _, row := range o.Shipments {
		f := strings.Fields(row)
		status[f[0]] = f[1]
	}
	for name, want := range map[string]string{"a": "cancelled", "b": "ready", "shipped": "scheduled", "shippedBad": "scheduled",
		"cancelledShipped": "cancelled", "confirmed": "ready"} {
		if status[ids[name]] != want {
			t.Errorf("shipment of %s: %q, want %s", name, status[ids[name]], want)
		}
	}
	for _, name := range []string{"bad", "cancelledFirst", "cancelledFirstBad", "unknown", "never"} {
		if st, ok := status[ids[name]]; ok {
			t.Errorf("%s has a shipment (%s), want none", name, st)
		}
	}
	if n := len(o.Shipments); n != 6+12 {
		t.Errorf("%d shipments, want 18 (6 named, 12 more)", n)
	}
	var ignored []string
	for _, row := range o.Cancellations {
		if strings.HasSuffix(row, " ignored") {
			ignored = append(ignored, strings.Fields(row)[0])
		}
	}
	wantIgnored := []string{ids["cancelledFirst"], ids["cancelledFirstBad"], ids["unknown"]}
	slices.Sort(wantIgnored)
	if !slices.Equal(ignored, wantIgnored) || len(o.Cancellations) != 3 {
		t.Errorf("cancellations %q, want 3 with placed ignored for cancelledFirst, cancelledFirstBad, unknown", o.Cancellations)
	}
	kinds := map[string]string{}
	for key, evs := range o.Outbox {
		var ks []string
		for i, e := range evs {
			ks = append(ks, strings.Fields(e)[0])
			if tps := s.tp[key]; i >= len(tps) || !strings.HasSuffix(e, " "+tps[i]) {
				t.Errorf("outbox event %d of %s: %s, want the trace of the event that caused it", i, key, e)
			}
		}
		kinds[key] = strings.Join(ks, ",")
	}
	sched, canc := string(events.TypeShipmentScheduled), string(events.TypeShipmentCancelled)
	if kinds[ids["a"]] != sched+","+canc || kinds[ids["b"]] != sched || len(kinds) != 2+12 {
		t.Errorf("outbox kinds by key %v; want a scheduled then cancelled, b and the 12 others scheduled, nothing else", kinds)
	}
}

// TestOneByOneOutcome pins what the per-event handler does with the
// scenario, which the batch handler must match.
func TestOneByOneOutcome(t *testing.T) {
	t.Parallel()
	s := newScenario()
	pool := newPool(t)
	s.applyOneByOne(t, pool)
	o := outcomeOf(t, pool)
	s.check(t, o)
	if t.Failed() {
		t.Log(o)
	}
}
