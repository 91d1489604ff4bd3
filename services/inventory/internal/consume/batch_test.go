package consume_test

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/outbox"
	"github.com/shopflow/shopflow/pkg/platform/pg"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
	"github.com/shopflow/shopflow/pkg/platform/tracing"
	"github.com/shopflow/shopflow/services/inventory/internal/app"
	"github.com/shopflow/shopflow/services/inventory/internal/consume"
	"github.com/shopflow/shopflow/services/inventory/internal/stock"
	"github.com/shopflow/shopflow/services/inventory/migrations"
)

// newPool opens the inventory schema, migrated as the service migrates
// it, on a fresh database, with room for conns connections.
func newPool(t *testing.T, conns int) *pgxpool.Pool {
	t.Helper()
	u, err := url.Parse(testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("pool_max_conns", fmt.Sprint(conns))
	u.RawQuery = q.Encode()
	return testenv.PoolAt(t, u.String(), "inventory",
		pg.Migrations{Name: outbox.MigrationsTable, FS: outbox.Migrations()},
		pg.Migrations{Name: inbox.MigrationsTable, FS: inbox.Migrations()},
		pg.Migrations{Name: migrations.Table, FS: migrations.FS()})
}

// handlers is the service's pair of inbox handlers on one database.
type handlers struct {
	pool  *pgxpool.Pool
	one   inbox.Handler
	batch inbox.BatchHandler
}

// newHandlers opens a fresh database with the scenario's stock.
func newHandlers(t *testing.T, conns int, levels map[string]int64) handlers {
	t.Helper()
	p := newPool(t, conns)
	svc := app.New(p, nil, 10*time.Second)
	for sku, n := range levels {
		if _, _, err := svc.SetOnHand(context.Background(), sku, n, stock.Precondition{}); err != nil {
			t.Fatal(err)
		}
	}
	return handlers{pool: p, one: consume.Handler(svc, nil), batch: consume.BatchHandler(svc, nil)}
}

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

type line = events.Line

func ln(sku string, q int) line { return line{SKU: sku, Quantity: q, UnitPriceCents: 100} }

func placedEv(orderID string, lines ...line) events.Event {
	var total int64
	for _, l := range lines {
		total += int64(l.Quantity) * l.UnitPriceCents
	}
	return events.New("/shopflow/order", events.OrderPlaced{OrderID: orderID, CustomerID: "cust-1", Currency: "USD",
		TotalCents: total, Items: lines, Payment: events.PaymentMethod{CardToken: "tok_visa"},
		ShippingAddress: events.Address{Name: "Ada", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"},
		PlacedAt:        time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)})
}

func cancelledEv(orderID, reason string) events.Event {
	return events.New("/shopflow/order", events.OrderCancelled{OrderID: orderID, Reason: reason,
		CancelledAt: time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC)})
}

func confirmedEv(orderID string) events.Event {
	return events.New("/shopflow/order", events.OrderConfirmed{OrderID: orderID, ConfirmedAt: time.Date(2026, 11, 25, 11, 0, 0, 0, time.UTC)})
}

// oneByOne applies items one transaction each through the per-event
// handler, as the inbox applies a record alone, and returns each one's
// error.
func (h handlers) oneByOne(items []inbox.Item) []error {
	errs := make([]error, len(items))
	for i, it := range items {
		errs[i] = pgx.BeginFunc(context.Background(), h.pool, func(tx pgx.Tx) error { return h.one(it.Ctx, tx, it.Event) })
	}
	return errs
}

// inboxRun is what applying a batch as the inbox does left behind.
type inboxRun struct {
	failed  map[int]error // errors of the events that failed alone, by index
	txs     int           // transactions
	halving int           // failed batches that named no event
	named   []int         // the events failed batches named, by index
}

// inboxApply applies items as the inbox's applyRun does with a
// BatchHandler: all in one transaction; when the handler names a failed
// event (inbox.ItemFailed), the events before it as one batch, it alone,
// and the rest as a batch; when it names none, the halves; one event
// alone is a batch of one whose error is its own.
func (h handlers) inboxApply(items []inbox.Item, base int, run *inboxRun) {
	if len(items) == 0 {
		return
	}
	run.txs++
	err := pgx.BeginFunc(context.Background(), h.pool, func(tx pgx.Tx) error {
		return h.batch(context.Background(), tx, items)
	})
	if err == nil {
		return
	}
	if len(items) == 1 {
		if _, ok := inbox.FailedItem(err); ok {
			err = errors.Unwrap(err)
		}
		run.failed[base] = err
		return
	}
	at, ok := inbox.FailedItem(err)
	if !ok || at < 0 || at >= len(items) {
		run.halving++
		half := len(items) / 2
		h.inboxApply(items[:half], base, run)
		h.inboxApply(items[half:], base+half, run)
		return
	}
	run.named = append(run.named, base+at)
	h.inboxApply(items[:at], base, run)
	h.inboxApply(items[at:at+1], base+at, run)
	h.inboxApply(items[at+1:], base+at+1, run)
}

// state is everything a run of events left in a database, without what
// is random (reservation ids, checked against the events that carry them,
// event ids) or stamped by the database (times), ordered so two runs
// compare as strings.
type state struct {
	Stock        []string
	Reservations []string
	Lines        []string
	// Outbox is, per key, the events in outbox order: type, payload
	// (reservation id checked, then blanked) and traceparent.
	Outbox map[string][]string
}

func (s state) String() string {
	b, _ := json.MarshalIndent(s, "", "  ")
	return string(b)
}

func stateOf(t *testing.T, pool *pgxpool.Pool) state {
	t.Helper()
	ctx := context.Background()
	s := state{
		Stock: testenv.Rows(t, pool, `SELECT concat_ws(' ', sku, on_hand, reserved, available) FROM stock ORDER BY sku`),
		Reservations: testenv.Rows(t, pool, `SELECT concat_ws(' ', order_id, status, coalesce(cancel_reason, '-'),
			CASE WHEN cancelled_at IS NULL THEN 'open' ELSE to_char(cancelled_at AT TIME ZONE 'UTC', 'HH24:MI') END)
			FROM reservations ORDER BY order_id`),
		Lines:  testenv.Rows(t, pool, `SELECT concat_ws(' ', order_id, sku, quantity) FROM reservation_lines ORDER BY order_id, sku`),
		Outbox: map[string][]string{},
	}
	resIDs := map[string]string{}
	rows, err := pool.Query(ctx, `SELECT order_id, reservation_id::text FROM reservations`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var order, id string
		if err := rows.Scan(&order, &id); err != nil {
			t.Fatal(err)
		}
		resIDs[order] = id
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
		if ev.Source != app.Source || ev.Subject != key {
			t.Errorf("outbox event %+v under key %s, want source %s and the key as subject", ev, key, app.Source)
		}
		payload := ev.Payload
		switch p := ev.Payload.(type) {
		case events.StockReserved:
			if p.ReservationID != resIDs[key] {
				t.Errorf("StockReserved of %s names reservation %s, the row says %s", key, p.ReservationID, resIDs[key])
			}
			p.ReservationID = ""
			payload = p
		case events.StockReleased:
			if p.ReservationID != resIDs[key] {
				t.Errorf("StockReleased of %s names reservation %s, the row says %s", key, p.ReservationID, resIDs[key])
			}
			p.ReservationID = ""
			payload = p
		}
		s.Outbox[key] = append(s.Outbox[key], fmt.Sprintf("%s %+v %s", ev.Type, payload, ev.TraceParent))
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	return s
}

// published empties the outbox, as the relay does, so only a batch's
// events remain to compare.
func published(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), `DELETE FROM outbox`); err != nil {
		t.Fatal(err)
	}
}

// scenarioStock is the stock the scenario starts from. SKU-C is scarce;
// SKU-Z9 has no row.
var scenarioStock = map[string]int64{"SKU-A": 10, "SKU-B": 4, "SKU-C": 2, "SKU-D": 100}

// scenario is a batch of order events covering every decision the
// inventory makes, alone and in combination within one batch, with the
// state they meet prepared by before.
type scenario struct {
	before, batch []inbox.Item
	// fails[i] is the error batch[i] fails with (matched with errors.Is);
	// every other event applies.
	fails map[int]error
	// results[order] is the result events the batch writes for the
	// order: their types and the traceparents of the events that caused
	// them, in order.
	results map[string][]string
}

func newScenario() scenario {
	s := scenario{fails: map[int]error{}, results: map[string][]string{}}
	for _, ev := range []events.Event{
		placedEv("early", ln("SKU-A", 2), ln("SKU-B", 1)), // reserved: confirmed in the batch
		placedEv("earlyCancel", ln("SKU-D", 5)),           // reserved: cancelled in the batch
		placedEv("earlyRejected", ln("SKU-C", 5)),         // rejected: cancelled in the batch
		cancelledEv("earlyTomb", "gone before"),           // cancelled before it was placed: placed in the batch
		placedEv("committedBefore", ln("SKU-D", 1)), confirmedEv("committedBefore"),
		placedEv("released", ln("SKU-D", 1)), cancelledEv("released", "r0"),
	} {
		ctx, _ := traced()
		s.before = append(s.before, inbox.Item{Ctx: ctx, Event: ev})
	}
	add := func(ev events.Event, result events.Type, fails error) {
		ctx, tp := traced()
		if fails != nil {
			s.fails[len(s.batch)] = fails
		}
		s.batch = append(s.batch, inbox.Item{Ctx: ctx, Event: ev})
		if result != "" {
			s.results[ev.Subject] = append(s.results[ev.Subject], string(result)+" "+tp)
		}
	}
	const (
		reserved = events.TypeStockReserved
		rejected = events.TypeStockRejected
		released = events.TypeStockReleased
	)
	add(placedEv("pc", ln("SKU-D", 1), ln("SKU-A", 1)), reserved, nil) // confirmed later in the batch
	add(placedEv("px", ln("SKU-B", 2)), reserved, nil)                 // cancelled later in the batch
	add(events.New("/shopflow/payment", events.PaymentAuthorized{OrderID: "pc", PaymentID: "p", AmountCents: 1,
		Currency: "USD"}), "", nil) // not the inventory's business
	add(confirmedEv("early"), "", nil)                                 // reserved before the batch
	add(placedEv("c1", ln("SKU-C", 2)), reserved, nil)                 // all of the scarce SKU
	add(placedEv("c2", ln("SKU-C", 1)), rejected, nil)                 // nothing left
	add(cancelledEv("tomb", "first"), "", nil)                         // never seen: the early-cancellation record
	add(confirmedEv("never"), "", stock.ErrConflict)                   // never reserved: fails alone
	add(placedEv("tomb", ln("SKU-A", 1)), "", nil)                     // cancelled first: nothing held
	add(cancelledEv("px", "px1"), released, nil)                       // placed in this batch: given back
	add(placedEv("bad", ln("SKU-A", 0)), "", stock.ErrInvalid)         // no such quantity: fails alone
	add(cancelledEv("c1", "c1"), released, nil)                        // the scarce SKU back on the shelf...
	add(placedEv("c3", ln("SKU-C", 2)), reserved, nil)                 // ...for the next order
	add(confirmedEv("pc"), "", nil)                                    // placed in this batch: off the shelf
	add(placedEv("c4", ln("SKU-C", 1), ln("SKU-A", 1)), rejected, nil) // SKU-C short again, SKU-A not
	add(cancelledEv("earlyRejected", "late"), "", nil)                 // rejected before: recorded
	add(placedEv("earlyTomb", ln("SKU-B", 1)), "", nil)                // cancelled before it was placed
	add(placedEv("pc", ln("SKU-D", 1), ln("SKU-A", 1)), "", nil)       // re-published: recorded
	add(cancelledEv("px", "px2"), "", nil)                             // released already: the first reason stays
	add(confirmedEv("committedBefore"), "", nil)                       // re-published: recorded
	add(cancelledEv("committedBefore", "oops"), "", nil)               // after its commit: recorded (and warned)
	add(confirmedEv("released"), "", stock.ErrConflict)                // released before: fails alone
	add(cancelledEv("bad", "after bad"), "", nil)                      // its placement failed: never seen
	add(confirmedEv("cf"), "", stock.ErrConflict)                      // confirmed before it is placed: fails alone
	add(placedEv("cf", ln("SKU-B", 1)), reserved, nil)                 // then placed
	add(cancelledEv("earlyCancel", "ec"), released, nil)               // reserved before the batch: given back
	add(placedEv("ghost", ln("SKU-Z9", 1)), rejected, nil)             // no stock row
	add(cancelledEv("tomb", "second"), "", nil)                        // recorded already: the first reason stays
	add(confirmedEv("pc"), "", nil)                                    // committed already
	return s
}

// prepare applies the scenario's before events one by one and empties
// the outbox.
func (s scenario) prepare(t *testing.T, h handlers) {
	t.Helper()
	for i, err := range h.oneByOne(s.before) {
		if err != nil {
			t.Fatalf("before[%d]: %v", i, err)
		}
	}
	published(t, h.pool)
}

// check compares what the scenario left with what it must leave, worked
// out by hand.
func (s scenario) check(t *testing.T, got state) {
	t.Helper()
	wantStock := []string{"SKU-A 7 0 7", "SKU-B 3 1 2", "SKU-C 2 2 0", "SKU-D 98 0 98"}
	if !slices.Equal(got.Stock, wantStock) {
		t.Errorf("stock %q, want %q", got.Stock, wantStock)
	}
	wantRes := []string{
		"bad cancelled after bad 11:00", "c1 released c1 11:00", "c2 rejected - open", "c3 reserved - open",
		"c4 rejected - open", "cf reserved - open", "committedBefore committed oops 11:00", "early committed - open",
		"earlyCancel released ec 11:00", "earlyRejected rejected late 11:00", "earlyTomb cancelled gone before 11:00",
		"ghost rejected - open", "pc committed - open", "px released px1 11:00", "released released r0 11:00",
		"tomb cancelled first 11:00",
	}
	if !slices.Equal(got.Reservations, wantRes) {
		t.Errorf("reservations\n%q\nwant\n%q", got.Reservations, wantRes)
	}
	wantLines := []string{
		"c1 SKU-C 2", "c2 SKU-C 1", "c3 SKU-C 2", "c4 SKU-A 1", "c4 SKU-C 1", "cf SKU-B 1",
		"committedBefore SKU-D 1", "early SKU-A 2", "early SKU-B 1", "earlyCancel SKU-D 5", "earlyRejected SKU-C 5",
		"ghost SKU-Z9 1", "pc SKU-A 1", "pc SKU-D 1", "px SKU-B 2", "released SKU-D 1",
	}
	if !slices.Equal(got.Lines, wantLines) {
		t.Errorf("lines\n%q\nwant\n%q", got.Lines, wantLines)
	}
	for key, evs := range got.Outbox {
		var have []string
		for _, e := range evs {
			f := strings.Fields(e)
			have = append(have, f[0]+" "+f[len(f)-1])
		}
		if !slices.Equal(have, s.results[key]) {
			t.Errorf("outbox of %s: %q, want %q (type, trace of the event that caused it)", key, have, s.results[key])
		}
	}
	for key := range s.results {
		if _, ok := got.Outbox[key]; !ok {
			t.Errorf("outbox of %s: nothing, want %q", key, s.results[key])
		}
	}
	for _, want := range []string{
		"shop.stock.rejected.v1 {OrderID:c2 Short:[{SKU:SKU-C Requested:1 Available:0}]}",
		"shop.stock.rejected.v1 {OrderID:c4 Short:[{SKU:SKU-C Requested:1 Available:0}]}",
		"shop.stock.released.v1 {OrderID:px ReservationID: Items:[{SKU:SKU-B Quantity:2}]}",
		"shop.stock.released.v1 {OrderID:earlyCancel ReservationID: Items:[{SKU:SKU-D Quantity:5}]}",
		"shop.stock.reserved.v1 {OrderID:pc ReservationID: Items:[{SKU:SKU-A Quantity:1} {SKU:SKU-D Quantity:1}]}",
	} {
		key := strings.TrimPrefix(strings.Fields(want)[1], "{OrderID:")
		if !slices.ContainsFunc(got.Outbox[key], func(e string) bool { return strings.HasPrefix(e, want+" ") }) {
			t.Errorf("outbox of %s: %q, want %s", key, got.Outbox[key], want)
		}
	}
}

// checkErrors checks that exactly the scenario's failing events failed,
// each with the error it is meant to, classified permanent.
func (s scenario) checkErrors(t *testing.T, how string, failed map[int]error) {
	t.Helper()
	for i, err := range failed {
		if want := s.fails[i]; want == nil {
			t.Errorf("%s: batch[%d] (%s %s) failed: %v", how, i, s.batch[i].Event.Type, s.batch[i].Event.Subject, err)
		} else if !errors.Is(err, want) || !inbox.IsPermanent(err) {
			t.Errorf("%s: batch[%d] failed with %v, want a permanent %v", how, i, err, want)
		}
	}
	for i := range s.fails {
		if failed[i] == nil {
			t.Errorf("%s: batch[%d] (%s %s) applied, want it to fail", how, i, s.batch[i].Event.Type, s.batch[i].Event.Subject)
		}
	}
}

// TestOneByOneOutcome pins what the per-event handler does with the
// scenario, which the batch handler must match.
func TestOneByOneOutcome(t *testing.T) {
	t.Parallel()
	s := newScenario()
	h := newHandlers(t, 4, scenarioStock)
	s.prepare(t, h)
	failed := map[int]error{}
	for i, err := range h.oneByOne(s.batch) {
		if err != nil {
			failed[i] = err
		}
	}
	s.checkErrors(t, "one by one", failed)
	got := stateOf(t, h.pool)
	s.check(t, got)
	if t.Failed() {
		t.Log(got)
	}
}

// applied is the scenario without its failing events, which change
// nothing one by one: the same outcome, from one transaction.
func (s scenario) applied() scenario {
	out := scenario{before: s.before, fails: map[int]error{}, results: s.results}
	for i, it := range s.batch {
		if s.fails[i] == nil {
			out.batch = append(out.batch, it)
		}
	}
	return out
}

// TestBatchMatchesOneByOne: the scenario's batch (placements,
// confirmations and cancellations of orders placed in it, before it or
// never, competing for a scarce SKU, repeated, in every order), applied
// through the batch handler as the inbox applies it, leaves exactly what
// applying its events one at a time leaves: the same stock, reservations,
// lines and outbox events per key (each under the trace of the event
// that caused it), and the same errors for the same events, each named
// by the handler (no halving). Without its failing events, the batch is
// applied in one transaction, with the same outcome.
func TestBatchMatchesOneByOne(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		s    scenario
	}{
		{"with failing events", newScenario()},
		{"in one transaction", newScenario().applied()},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := c.s
			one := newHandlers(t, 4, scenarioStock)
			s.prepare(t, one)
			oneFailed := map[int]error{}
			for i, err := range one.oneByOne(s.batch) {
				if err != nil {
					oneFailed[i] = err
				}
			}
			want := stateOf(t, one.pool)

			batch := newHandlers(t, 4, scenarioStock)
			s.prepare(t, batch)
			run := &inboxRun{failed: map[int]error{}}
			batch.inboxApply(s.batch, 0, run)
			s.checkErrors(t, "batch", run.failed)
			for i, err := range run.failed {
				if o := oneFailed[i]; o == nil || o.Error() != err.Error() || inbox.IsPermanent(o) != inbox.IsPermanent(err) {
					t.Errorf("batch[%d] failed with %v; one by one with %v", i, err, o)
				}
			}
			if run.halving > 0 {
				t.Errorf("%d failed batches named no event: the inbox had to halve them", run.halving)
			}
			for _, i := range run.named {
				if s.fails[i] == nil {
					t.Errorf("a failed batch named batch[%d] (%s %s), which applies", i, s.batch[i].Event.Type, s.batch[i].Event.Subject)
				}
			}
			// Each failing event costs its batch, the batch before it and
			// itself.
			if most := 3*len(s.fails) + 1; run.txs > most {
				t.Errorf("%d transactions for %d failing events, want at most %d", run.txs, len(s.fails), most)
			}
			got := stateOf(t, batch.pool)
			s.check(t, got)
			if got.String() != want.String() {
				t.Errorf("batch outcome differs from one by one:\nbatch: %s\none by one: %s", got, want)
			}
		})
	}
}

// TestBatchCostsTwoRoundTrips: a batch of 40 events of every kind (the
// scenario's without its failing ones, and more orders placed and settled
// in it) costs two round trips, as does one event; a batch that changes
// nothing costs one; events that are not the inventory's cost none.
func TestBatchCostsTwoRoundTrips(t *testing.T) {
	t.Parallel()
	s := newScenario()
	h := newHandlers(t, 4, map[string]int64{"SKU-A": 100, "SKU-B": 100, "SKU-C": 100, "SKU-D": 100})
	s.prepare(t, h)
	var good []inbox.Item
	for i, it := range s.batch {
		if s.fails[i] == nil {
			good = append(good, it)
		}
	}
	foreign := good[2:3]
	if _, ok := foreign[0].Event.Payload.(events.PaymentAuthorized); !ok {
		t.Fatalf("foreign event is a %s", foreign[0].Event.Type)
	}
	for i := 0; len(good) < 41; i++ {
		id := fmt.Sprintf("more-%02d", i)
		good = append(good, inbox.Item{Ctx: context.Background(), Event: placedEv(id, ln("SKU-A", 1), ln("SKU-D", 2))})
		if i%2 == 0 {
			good = append(good, inbox.Item{Ctx: context.Background(), Event: confirmedEv(id)})
		} else {
			good = append(good, inbox.Item{Ctx: context.Background(), Event: cancelledEv(id, "changed mind")})
		}
	}
	good = good[:41]
	repeats := []inbox.Item{{Ctx: context.Background(), Event: placedEv("pc", ln("SKU-A", 1))},
		{Ctx: context.Background(), Event: confirmedEv("pc")}}
	for _, c := range []struct {
		name  string
		items []inbox.Item
		trips int
	}{
		{"one event", good[:1], 2},
		{"40 events", good[1:], 2},
		{"repeats only", repeats, 1},
		{"foreign events", foreign, 0},
	} {
		tx := &testenv.CountingTx{}
		err := pgx.BeginFunc(context.Background(), h.pool, func(t pgx.Tx) error {
			tx.Tx = t
			return h.batch(context.Background(), tx, c.items)
		})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if tx.Trips != c.trips {
			t.Errorf("%s (%d events): %d round trips, want %d", c.name, len(c.items), tx.Trips, c.trips)
		}
	}
	var committed, released int
	err := h.pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE status = 'committed'),
		count(*) FILTER (WHERE status = 'released') FROM reservations WHERE order_id LIKE 'more-%'`).Scan(&committed, &released)
	if err != nil || committed == 0 || released == 0 {
		t.Errorf("more orders: %d committed, %d released (%v): the batch was not applied", committed, released, err)
	}
}

// race runs two batches at once, each in its own transaction, while gate
// (a transaction holding a lock both need) holds them up: once both wait,
// the gate rolls back. A batch that fails is reported (a deadlock as
// such) and retried alone, as the inbox would.
func race(t *testing.T, h handlers, gate pgx.Tx, a, b []inbox.Item) {
	t.Helper()
	ctx := context.Background()
	defer gate.Rollback(ctx) //nolint:errcheck // rolled back below
	type result struct {
		items []inbox.Item
		err   error
	}
	results := make(chan result, 2)
	var pids []int
	for _, items := range [][]inbox.Item{a, b} {
		tx, err := h.pool.Begin(ctx)
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
			err := h.batch(ctx, tx, items)
			if err == nil {
				err = tx.Commit(ctx)
			}
			results <- result{items, err}
		}()
	}
	waited := true
	testenv.Eventually(t, 20*time.Second, "both batches waiting", func() bool {
		var waiting int
		err := h.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1) AND cardinality(pg_blocking_pids(pid)) > 0`,
			pids).Scan(&waiting)
		if err == nil && waiting < 2 && len(results) > 0 {
			waited = false // one finished without waiting: say so below
			return true
		}
		return err == nil && waiting == 2
	})
	if !waited {
		t.Errorf("a batch finished while the gate held a lock it needs")
	}
	if err := gate.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range []result{<-results, <-results} {
		if r.err == nil {
			continue
		}
		var pgErr *pgconn.PgError
		if errors.As(r.err, &pgErr) && pgErr.Code == "40P01" {
			t.Errorf("concurrent batches deadlocked: %v", r.err)
		} else {
			t.Errorf("a concurrent batch failed: %v", r.err)
		}
		if err := pgx.BeginFunc(ctx, h.pool, func(tx pgx.Tx) error { return h.batch(ctx, tx, r.items) }); err != nil {
			t.Fatalf("retry of the failed batch: %v", err)
		}
	}
}

// TestConcurrentBatchesNeitherDeadlockNorLoseStock: two batches run at
// once, twice, as two consumers might around a rebalance, while a third
// transaction holds a lock both need until both wait.
//
// First over the same orders: each places the same 20 new orders (one
// in ascending, one in descending order of id), settles the same 20
// orders reserved before (confirms half, cancels half, in opposite
// orders) and places 10 orders of its own, while the gate holds a claim
// in the middle. Claiming and locking in one order, they queue instead
// of deadlocking.
//
// Then over different orders on the same scarce SKU: each settles
// reservations of its own made before and places 8 orders of its own,
// wanting more of SKU-X than there is, while the gate holds SKU-X's row.
// Locking the stock before planning, the second plans against what the
// first left, and nothing is oversold.
//
// Whatever they decide, the stock adds up: on hand is what it was less
// what was committed, reserved is what the reserved orders hold; and
// every order has one reservation, settled as asked, and one result
// event per change.
func TestConcurrentBatchesNeitherDeadlockNorLoseStock(t *testing.T) {
	t.Parallel()
	skus := []string{"SKU-A", "SKU-B", "SKU-C", "SKU-D", "SKU-E"}
	onHand := map[string]int64{"SKU-X": 20}
	for _, s := range skus {
		onHand[s] = 30
	}
	h := newHandlers(t, 8, onHand)
	ctx := context.Background()
	item := func(ev events.Event) inbox.Item { return inbox.Item{Ctx: ctx, Event: ev} }
	linesOf := func(i int) []line { // two or three SKUs, in varying order
		ls := []line{ln(skus[i%5], 1+i%3), ln(skus[(i+2)%5], 2)}
		if i%3 == 0 {
			ls = append(ls, ln(skus[(i+4)%5], 1))
		}
		return ls
	}
	var before []inbox.Item
	for i := range 20 {
		before = append(before, item(placedEv(fmt.Sprintf("p%02d", i), ln(skus[i%5], 1))))
	}
	for i := range 8 {
		before = append(before, item(placedEv(fmt.Sprintf("q%02d", i), ln("SKU-X", 1))))
	}
	for i, err := range h.oneByOne(before) {
		if err != nil {
			t.Fatalf("before[%d]: %v", i, err)
		}
	}
	// wantStatus[order] is its status at the end ("" for reserved or
	// rejected), wantEvents the result events it has in all.
	wantStatus, wantEvents := map[string]string{}, map[string]int{}
	settle := func(id string, confirm bool) inbox.Item {
		if confirm {
			wantStatus[id], wantEvents[id] = "committed", 1
			return item(confirmedEv(id))
		}
		wantStatus[id], wantEvents[id] = "released", 2
		return item(cancelledEv(id, "declined"))
	}
	placed := func(id string, lines ...line) inbox.Item {
		wantStatus[id], wantEvents[id] = "", 1
		return item(placedEv(id, lines...))
	}

	var up, down []inbox.Item
	for i := range 20 {
		j := 19 - i
		up = append(up, placed(fmt.Sprintf("n%02d", i), linesOf(i)...), settle(fmt.Sprintf("p%02d", i), i%2 == 0))
		down = append(down, placed(fmt.Sprintf("n%02d", j), linesOf(j)...), settle(fmt.Sprintf("p%02d", j), j%2 == 0))
		if i < 10 {
			up = append(up, placed(fmt.Sprintf("u%02d", i), linesOf(i+1)...))
			down = append(down, placed(fmt.Sprintf("d%02d", i), linesOf(i+2)...))
		}
	}
	// The gate claims n10, as a delivery of its placement would, and
	// holds it: both batches reach it (or each other) and wait.
	gate, err := h.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.one(ctx, gate, placedEv("n10", linesOf(10)...)); err != nil {
		t.Fatal(err)
	}
	race(t, h, gate, up, down)

	var x, y []inbox.Item
	for i := range 8 {
		if i < 4 {
			x = append(x, settle(fmt.Sprintf("q%02d", i), false))
		} else {
			y = append(y, settle(fmt.Sprintf("q%02d", i), true))
		}
		x = append(x, placed(fmt.Sprintf("x%02d", i), ln("SKU-X", 2), ln(skus[i%5], 1)))
		y = append(y, placed(fmt.Sprintf("y%02d", i), ln(skus[(i+3)%5], 1), ln("SKU-X", 2)))
	}
	gate, err = h.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gate.Exec(ctx, `SELECT 1 FROM stock WHERE sku = 'SKU-X' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	race(t, h, gate, x, y)

	// The stock adds up with the reservations.
	rows, err := h.pool.Query(ctx, `SELECT s.sku, s.on_hand, s.reserved, s.available,
		coalesce(sum(l.quantity) FILTER (WHERE r.status = 'reserved'), 0),
		coalesce(sum(l.quantity) FILTER (WHERE r.status = 'committed'), 0)
		FROM stock s LEFT JOIN reservation_lines l ON l.sku = s.sku LEFT JOIN reservations r ON r.order_id = l.order_id
		GROUP BY s.sku ORDER BY s.sku`)
	if err != nil {
		t.Fatal(err)
	}
	var committed, held int64
	for rows.Next() {
		var sku string
		var on, res, avail, reserved, gone int64
		if err := rows.Scan(&sku, &on, &res, &avail, &reserved, &gone); err != nil {
			t.Fatal(err)
		}
		if on != onHand[sku]-gone || res != reserved || avail < 0 {
			t.Errorf("%s: on_hand %d reserved %d available %d; the reservations say on hand %d, reserved %d",
				sku, on, res, avail, onHand[sku]-gone, reserved)
		}
		committed, held = committed+gone, held+reserved
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	// One reservation per order, settled as asked, one result per change.
	rows, err = h.pool.Query(ctx, `SELECT r.order_id, r.status,
		(SELECT count(*) FROM outbox o WHERE convert_from(o.key, 'UTF8') = r.order_id) FROM reservations r`)
	if err != nil {
		t.Fatal(err)
	}
	seen, rejected := map[string]bool{}, map[string]int{}
	for rows.Next() {
		var id, status string
		var n int
		if err := rows.Scan(&id, &status, &n); err != nil {
			t.Fatal(err)
		}
		seen[id] = true
		want, ok := wantStatus[id]
		switch {
		case !ok:
			t.Errorf("%s: a reservation (%s) for an order no event names", id, status)
		case want == "" && status != "reserved" && status != "rejected", want != "" && status != want:
			t.Errorf("%s: status %s, want %s", id, status, cmp.Or(want, "reserved or rejected"))
		case n != wantEvents[id]:
			t.Errorf("%s (%s): %d result events, want %d", id, status, n, wantEvents[id])
		}
		if status == "rejected" {
			rejected[id[:1]]++
		}
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	for id := range wantStatus {
		if !seen[id] {
			t.Errorf("%s: no reservation", id)
		}
	}
	if committed == 0 || held == 0 || rejected["x"]+rejected["y"] == 0 || rejected["n"]+rejected["u"]+rejected["d"] == 0 {
		t.Errorf("%d units committed, %d reserved, rejections %v: the test needs all of them to mean anything",
			committed, held, rejected)
	}
}
