package consume_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
	"github.com/shopflow/shopflow/pkg/platform/tracing"
	"github.com/shopflow/shopflow/services/shipping/internal/shipment"
	"github.com/shopflow/shopflow/services/shipping/internal/store"
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

func outcomeOf(t *testing.T, pool *pgxpool.Pool) outcome {
	t.Helper()
	ctx := context.Background()
	o := outcome{
		Shipments: testenv.Rows(t, pool, `SELECT concat_ws(' ', order_id, status, carrier, name, line1, line2, city, postal_code, country,
			placed_at, pickup_at, pickup_zone, coalesce(cancel_reason, '-')) FROM shipments ORDER BY order_id`),
		History: testenv.Rows(t, pool, `SELECT concat_ws(' ', order_id, status, event_id, note) FROM shipment_history ORDER BY order_id, id`),
		Cancellations: testenv.Rows(t, pool, `SELECT concat_ws(' ', order_id, event_id, reason, cancelled_at,
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

// inboxApply applies items as the inbox applies a batch with a
// BatchHandler: all in one transaction; if that fails, each half the same
// way, down to one event, whose error the inbox would retry or
// dead-letter. It records those errors by index (from base) and counts
// the transactions.
func inboxApply(t *testing.T, pool *pgxpool.Pool, items []inbox.Item, base int, failed map[int]error, txs *int) {
	t.Helper()
	*txs++
	err := pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
		return handler.HandleBatch(context.Background(), tx, items)
	})
	switch {
	case err == nil:
	case len(items) == 1:
		failed[base] = err
	default:
		half := len(items) / 2
		inboxApply(t, pool, items[:half], base, failed, txs)
		inboxApply(t, pool, items[half:], base+half, failed, txs)
	}
}

// TestBatchMatchesOneByOne: the scenario's batch, applied through the
// batch handler as the inbox applies it, leaves exactly what applying its
// events one at a time through the per-event handler leaves: the same
// shipments, history, recorded cancellations and outbox events per key
// (each under the trace of the event that caused it), and the same error,
// alone, for the refused address, found in a few transactions.
func TestBatchMatchesOneByOne(t *testing.T) {
	t.Parallel()
	s := newScenario()

	one := newPool(t)
	badErr := s.applyOneByOne(t, one)
	want := outcomeOf(t, one)

	batch := newPool(t)
	for i, err := range oneByOne(t, batch, s.before) {
		if err != nil {
			t.Fatalf("before[%d]: %v", i, err)
		}
	}
	s.published(t, batch)
	failed := map[int]error{}
	txs := 0
	inboxApply(t, batch, s.batch, 0, failed, &txs)
	if len(failed) != 1 || failed[s.bad] == nil {
		t.Errorf("events failing alone: %v; want only batch[%d], the refused address", failed, s.bad)
	} else if err := failed[s.bad]; !inbox.IsPermanent(err) || !errors.Is(err, shipment.ErrUndeliverable) || err.Error() != badErr.Error() {
		t.Errorf("the refused address failed with %v; want what it fails with alone: %v", err, badErr)
	}
	// One failing event costs about two transactions per halving.
	if most := 2*bits.Len(uint(len(s.batch))) + 1; txs > most {
		t.Errorf("%d transactions for a batch of %d with one bad event, want at most %d", txs, len(s.batch), most)
	}
	got := outcomeOf(t, batch)
	s.check(t, got)
	if got.String() != want.String() {
		t.Errorf("batch outcome differs from one by one:\nbatch: %s\none by one: %s", got, want)
	}
}

// TestBatchCostsTwoRoundTrips: the scenario's batch without its bad
// event (39 events of every kind on 22 orders) costs two round trips, as
// does one event; events that are not shipping's business cost none.
func TestBatchCostsTwoRoundTrips(t *testing.T) {
	t.Parallel()
	s := newScenario()
	pool := newPool(t)
	for i, err := range oneByOne(t, pool, s.before) {
		if err != nil {
			t.Fatalf("before[%d]: %v", i, err)
		}
	}
	good := slices.Delete(slices.Clone(s.batch), s.bad, s.bad+1)
	foreign := good[len(good)-1:]
	for _, c := range []struct {
		name  string
		items []inbox.Item
		trips int
	}{
		{"one event", good[:1], 2},
		{"the batch", good[1:], 2},
		{"foreign events", foreign, 0},
	} {
		tx := &testenv.CountingTx{}
		err := pgx.BeginFunc(context.Background(), pool, func(t pgx.Tx) error {
			tx.Tx = t
			return handler.HandleBatch(context.Background(), tx, c.items)
		})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if tx.Trips != c.trips {
			t.Errorf("%s (%d events): %d round trips, want %d", c.name, len(c.items), tx.Trips, c.trips)
		}
	}
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM shipments`).Scan(&n); err != nil || n != 6+12 {
		t.Errorf("%d shipments (%v), want 18: the batch was not applied", n, err)
	}
}

// TestConcurrentBatchesHaveOneEffect: two batches booking the same 20
// orders, one in ascending and one in descending order of id (as two
// consumers might around a rebalance), run at once while a third
// transaction holds one order's booking in the middle. Booking in
// order-id order, they queue instead of deadlocking; the loser fails
// transiently and its retry is a no-op: one shipment, one history entry
// and one ShipmentScheduled per order.
func TestConcurrentBatchesHaveOneEffect(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	prefix := uuid.NewString()[:8]
	var up, down []inbox.Item
	for i := range 20 {
		up = append(up, inbox.Item{Ctx: ctx, Event: placed(fmt.Sprintf("%s-o%02d", prefix, i), "DE")})
		down = append(down, inbox.Item{Ctx: ctx, Event: placed(fmt.Sprintf("%s-o%02d", prefix, 19-i), "DE")})
	}

	gate, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer gate.Rollback(ctx) //nolint:errcheck // rolled back below
	if err := handler.Handle(ctx, gate, placed(fmt.Sprintf("%s-o%02d", prefix, 10), "DE")); err != nil {
		t.Fatal(err)
	}

	type result struct {
		items []inbox.Item
		err   error
	}
	results := make(chan result, 2)
	var pids []int
	for _, items := range [][]inbox.Item{up, down} {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var pid int
		if err := tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
		go func() {
			defer tx.Rollback(ctx) //nolint:errcheck // no-op after commit
			err := handler.HandleBatch(ctx, tx, items)
			if err == nil {
				err = tx.Commit(ctx)
			}
			results <- result{items, err}
		}()
	}
	testenv.Eventually(t, 30*time.Second, "both batches waiting", func() bool {
		var waiting int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1) AND cardinality(pg_blocking_pids(pid)) > 0`,
			pids).Scan(&waiting)
		return err == nil && waiting == 2
	})
	if err := gate.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	done := []result{<-results, <-results}
	for _, r := range done {
		if r.err == nil {
			continue
		}
		var pgErr *pgconn.PgError
		if errors.As(r.err, &pgErr) && pgErr.Code == "40P01" {
			t.Errorf("concurrent batches deadlocked: %v", r.err)
		}
		if inbox.IsPermanent(r.err) {
			t.Fatalf("losing batch: %v, want success or a transient error", r.err)
		}
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return handler.HandleBatch(ctx, tx, r.items) }); err != nil {
			t.Fatalf("retry of the losing batch: %v", err)
		}
	}
	var shipments, history, scheduled, keys int
	err = pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM shipments), (SELECT count(*) FROM shipment_history),
		(SELECT count(*) FROM outbox), (SELECT count(DISTINCT key) FROM outbox)`).Scan(&shipments, &history, &scheduled, &keys)
	if err != nil {
		t.Fatal(err)
	}
	if shipments != 20 || history != 20 || scheduled != 20 || keys != 20 {
		t.Errorf("%d shipments, %d history entries, %d events for %d orders; want 20 of each", shipments, history, scheduled, keys)
	}
}

// TestBatchAppliesSeveralChangesPerOrder: status changes of one order in
// one batch are applied in delivery order, as one by one: the shipment
// ends in the last one's status with the last reason given, and the
// history holds every change, in order.
func TestBatchAppliesSeveralChangesPerOrder(t *testing.T) {
	t.Parallel()
	x, y := uuid.NewString(), uuid.NewString()
	evs := []events.Event{
		placed(x, "DE"), placed(y, "DE"),
		confirmed(x), cancelled(y, "first reason"), cancelled(x, "late fraud check"), confirmed(y),
	}
	items := make([]inbox.Item, len(evs))
	for i, ev := range evs {
		items[i] = inbox.Item{Ctx: context.Background(), Event: ev}
	}
	one := newPool(t)
	for i, err := range oneByOne(t, one, items) {
		if err != nil {
			t.Fatalf("event %d one by one: %v", i, err)
		}
	}
	batch := newPool(t)
	if err := pgx.BeginFunc(context.Background(), batch, func(tx pgx.Tx) error {
		return handler.HandleBatch(context.Background(), tx, items[:2])
	}); err != nil {
		t.Fatal(err)
	}
	if err := pgx.BeginFunc(context.Background(), batch, func(tx pgx.Tx) error {
		return handler.HandleBatch(context.Background(), tx, items[2:])
	}); err != nil {
		t.Fatal(err)
	}
	want, got := outcomeOf(t, one), outcomeOf(t, batch)
	if got.String() != want.String() {
		t.Errorf("batch outcome differs from one by one:\nbatch: %s\none by one: %s", got, want)
	}
	sx, err := store.Get(context.Background(), batch, x)
	if err != nil {
		t.Fatal(err)
	}
	var hist []string
	for _, h := range sx.History {
		hist = append(hist, string(h.Status))
	}
	if sx.Status != shipment.StatusCancelled || sx.CancelReason != "late fraud check" ||
		strings.Join(hist, ",") != "scheduled,ready,cancelled" {
		t.Errorf("order confirmed then cancelled in one batch: %s (%q), history %v; want cancelled (late fraud check), scheduled,ready,cancelled",
			sx.Status, sx.CancelReason, hist)
	}
}
