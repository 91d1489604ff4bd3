package consume_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/tracing"
	"github.com/shopflow/shopflow/services/payment/internal/consume"
	"github.com/shopflow/shopflow/services/payment/internal/gateway"
)

// counting counts a gateway's calls by operation and idempotency key
// ("authorize <order id>"), and how many were in flight at most.
type counting struct {
	gateway.Gateway
	mu             sync.Mutex
	calls          map[string]int
	inFlight, peak int
}

// count counts a call; call done when it returns.
func (c *counting) count(op, key string) (done func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.calls == nil {
		c.calls = map[string]int{}
	}
	c.calls[op+" "+key]++
	c.inFlight++
	c.peak = max(c.peak, c.inFlight)
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.inFlight--
	}
}

// take returns the calls counted so far and the most in flight at once,
// and starts counting afresh.
func (c *counting) take() (calls map[string]int, peak int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	calls, peak = c.calls, c.peak
	c.calls, c.peak = nil, 0
	return calls, peak
}

func (c *counting) Authorize(ctx context.Context, req gateway.AuthorizeRequest) (gateway.Authorization, error) {
	defer c.count("authorize", req.IdempotencyKey)()
	return c.Gateway.Authorize(ctx, req)
}

func (c *counting) Capture(ctx context.Context, req gateway.OperationRequest) (gateway.Receipt, error) {
	defer c.count("capture", req.IdempotencyKey)()
	return c.Gateway.Capture(ctx, req)
}

func (c *counting) Void(ctx context.Context, req gateway.OperationRequest) (gateway.Receipt, error) {
	defer c.count("void", req.IdempotencyKey)()
	return c.Gateway.Void(ctx, req)
}

func (c *counting) Refund(ctx context.Context, req gateway.OperationRequest) (gateway.Receipt, error) {
	defer c.count("refund", req.IdempotencyKey)()
	return c.Gateway.Refund(ctx, req)
}

// traced returns ctx carrying a trace of its own for the i-th event, as
// the inbox gives each event its record's trace.
func traced(ctx context.Context, i int) context.Context {
	return tracing.FromTraceParent(ctx, fmt.Sprintf("00-%032x-%016x-01", i+1, i+1))
}

// oneByOne applies each event in a transaction of its own through
// Handle, as the inbox does with a per-event handler.
func (h *harness) oneByOne(handler *consume.Handler, evs []events.Event) {
	h.t.Helper()
	ctx := context.Background()
	for i, ev := range evs {
		if err := pgx.BeginFunc(ctx, h.pool, func(tx pgx.Tx) error { return handler.Handle(traced(ctx, i), tx, ev) }); err != nil {
			h.t.Fatalf("event %d (%s of %s): %v", i, ev.Type, ev.Subject, err)
		}
	}
}

// batch applies the events in one transaction through HandleBatch.
func (h *harness) batch(handler *consume.Handler, evs []events.Event) error {
	h.t.Helper()
	ctx := context.Background()
	items := make([]inbox.Item, len(evs))
	for i, ev := range evs {
		items[i] = inbox.Item{Ctx: traced(ctx, i), Event: ev}
	}
	return pgx.BeginFunc(ctx, h.pool, func(tx pgx.Tx) error { return handler.HandleBatch(ctx, tx, items) })
}

// snapshot renders what the handlers left in the database, but for what
// differs between two runs by design (times, the ids of result events
// and payments): the payments by order id, then the history and the
// result events in the order they were written, each result event with
// the trace it continues. A payment's id shows as P(order id), in its row
// and in the events that carry it.
func (h *harness) snapshot() []string {
	h.t.Helper()
	ctx := context.Background()
	var out []string
	rows, err := h.pool.Query(ctx, `
SELECT order_id, coalesce(payment_id, ''), status, amount_cents, currency, charge_id, authorization_code, reason, created_at <= updated_at
FROM payments ORDER BY order_id`)
	if err != nil {
		h.t.Fatal(err)
	}
	ids := map[string]string{} // payment id → P(order id)
	for rows.Next() {
		var order, pid, status, currency, charge, code, reason string
		var amount int64
		var timesOK bool
		if err := rows.Scan(&order, &pid, &status, &amount, &currency, &charge, &code, &reason, &timesOK); err != nil {
			h.t.Fatal(err)
		}
		if pid != "" {
			ids[pid] = "P(" + order + ")"
		}
		out = append(out, fmt.Sprintf("payment %s %s %s %d %s charge=%s code=%s reason=%q updated>=created:%t",
			order, ids[pid], status, amount, currency, charge, code, reason, timesOK))
	}
	if err := rows.Err(); err != nil {
		h.t.Fatal(err)
	}
	rows, err = h.pool.Query(ctx, `SELECT order_id, status, event_id, event_type, detail FROM payment_history ORDER BY id`)
	if err != nil {
		h.t.Fatal(err)
	}
	for rows.Next() {
		var order, status, evID, evType, detail string
		if err := rows.Scan(&order, &status, &evID, &evType, &detail); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("history %s %s %s %s %q", order, status, evID, evType, detail))
	}
	if err := rows.Err(); err != nil {
		h.t.Fatal(err)
	}
	for _, ev := range h.outbox("") {
		payload, err := json.Marshal(ev.Payload)
		if err != nil {
			h.t.Fatal(err)
		}
		p := string(payload)
		for id, name := range ids {
			p = strings.ReplaceAll(p, id, name)
		}
		out = append(out, fmt.Sprintf("result %s %s trace=%s %s", ev.Type, ev.Subject, ev.TraceParent, p))
	}
	return out
}

// TestHandleBatchMatchesOneByOne: a batch of events for many orders, in
// the mixes the saga produces and some it should not (approvals, declines
// by card and by amount, an order placed twice within the batch, an order
// authorized before the batch placed again and cancelled, a capture and a
// refund of what the batch itself authorized, an order cancelled before it
// was placed), applied in one HandleBatch call leaves exactly the
// payments, history and result events (each continuing its own event's
// trace) that applying the events one at a time through Handle leaves, with
// the same gateway calls: one authorization per new order, none for the
// others. The batch's calls overlap, at most 16 at a time.
func TestHandleBatchMatchesOneByOne(t *testing.T) {
	t.Parallel()
	one, many := newDB(t), newDB(t)
	// One gateway for both: the same answers (charge ids, codes), from
	// one ledger; its calls are counted per run. Its latency makes calls
	// made side by side overlap.
	gw := &counting{Gateway: gateway.NewFake(one.gwPool, gateway.FakeConfig{Latency: 5 * time.Millisecond})}
	handler := consume.New(gw, testLog(t))

	known := newOrderID() // authorized before the batch
	before := []events.Event{placed(known, gateway.TokenVisa, 1000)}
	a, b, c, d, f := newOrderID(), newOrderID(), newOrderID(), newOrderID(), newOrderID()
	evs := []events.Event{
		placed(a, gateway.TokenVisa, 3998),
		placed(b, gateway.TokenDeclined, 3998), // declined: card_declined
		placed(known, gateway.TokenVisa, 1000), // already authorized: recorded, no call
		placed(c, gateway.TokenVisa, 1_000_001),
		placed(a, gateway.TokenVisa, 3998), // a again, a new event id: recorded, no second call
		confirmed(a),                       // captures what this batch authorized
		cancelled(known, "customer"),       // voids the authorization from before
		cancelled(d, "customer"),           // never seen: a tombstone, which releases any hold (there is none)
		placed(d, gateway.TokenVisa, 700),  // after its cancellation: not charged
		confirmed(b),                       // declined: a recorded no-op
		placed(f, gateway.TokenVisa, 2500),
	}
	// More new orders than the gateway calls a batch makes at once.
	var fresh []string
	for i := range consume.GatewayCalls + 20 {
		id := newOrderID()
		fresh = append(fresh, id)
		token := gateway.TokenVisa
		if i%5 == 0 {
			token = gateway.TokenDeclined
		}
		evs = append(evs, placed(id, token, int64(100+i)))
		if i == 20 {
			evs = append(evs, confirmed(f), cancelled(f, "customer")) // f captured, then refunded
		}
	}

	one.oneByOne(handler, before)
	many.oneByOne(handler, before)
	_, _ = gw.take()

	one.oneByOne(handler, evs)
	wantCalls, _ := gw.take()
	if err := many.batch(handler, evs); err != nil {
		t.Fatalf("HandleBatch: %v", err)
	}
	gotCalls, peak := gw.take()
	if peak < 2 || peak > consume.GatewayCalls {
		t.Errorf("at most %d gateway calls in flight at once, want 2 to %d", peak, consume.GatewayCalls)
	}

	if !maps.Equal(gotCalls, wantCalls) {
		t.Errorf("gateway calls in the batch %v,\none by one %v", gotCalls, wantCalls)
	}
	want := map[string]int{"authorize " + a: 1, "authorize " + b: 1, "authorize " + c: 1, "authorize " + f: 1,
		"capture " + a: 1, "void " + known: 1, "void " + d: 1, "capture " + f: 1, "refund " + f: 1}
	for _, id := range fresh {
		want["authorize "+id] = 1
	}
	if !maps.Equal(gotCalls, want) {
		t.Errorf("gateway calls in the batch %v,\nwant %v", gotCalls, want)
	}

	got, exp := many.snapshot(), one.snapshot()
	if len(exp) != 6+len(fresh)+(len(before)+len(evs))+7+len(fresh) {
		t.Errorf("one by one left %d rows, want %d payments, %d history entries, %d results", len(exp),
			6+len(fresh), len(before)+len(evs), 7+len(fresh))
	}
	if !slices.Equal(got, exp) {
		for i := range max(len(got), len(exp)) {
			g, e := "(none)", "(none)"
			if i < len(got) {
				g = got[i]
			}
			if i < len(exp) {
				e = exp[i]
			}
			if g != e {
				t.Errorf("row %d:\nbatch      %s\none by one %s", i, g, e)
			}
		}
	}
}

// failing is a gateway whose Authorize fails with err for one key.
type failing struct {
	gateway.Gateway
	key string
	err error
}

func (f failing) Authorize(ctx context.Context, req gateway.AuthorizeRequest) (gateway.Authorization, error) {
	if req.IdempotencyKey == f.key {
		return gateway.Authorization{}, f.err
	}
	return f.Gateway.Authorize(ctx, req)
}

// TestHandleBatchFailsAsAWhole: one event the batch cannot apply fails the
// whole batch, classified as Handle would classify it alone, and leaves
// nothing behind; the batch without it applies, and the event alone fails
// the same way: what the inbox's splitting relies on to isolate it.
func TestHandleBatchFailsAsAWhole(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		wrap      func(g gateway.Gateway, bad string) gateway.Gateway
		bad       func(h *harness, id string) events.Event
		permanent bool
		is        error
	}{
		{
			name: "gateway rejection is permanent",
			bad: func(h *harness, id string) events.Event {
				// The key was used for another amount: the gateway rejects.
				gw := gateway.NewFake(h.gwPool, gateway.FakeConfig{})
				if _, err := gw.Authorize(context.Background(), gateway.AuthorizeRequest{IdempotencyKey: id,
					CardToken: gateway.TokenVisa, AmountCents: 100, Currency: "USD"}); err != nil {
					t.Fatal(err)
				}
				return placed(id, gateway.TokenVisa, 200)
			},
			permanent: true,
			is:        gateway.ErrRejected,
		},
		{
			name: "gateway down is transient",
			wrap: func(g gateway.Gateway, bad string) gateway.Gateway {
				return failing{Gateway: g, key: bad, err: fmt.Errorf("%w: connection refused", gateway.ErrUnavailable)}
			},
			bad:       func(_ *harness, id string) events.Event { return placed(id, gateway.TokenVisa, 500) },
			permanent: false,
			is:        gateway.ErrUnavailable,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newDB(t)
			bad := newOrderID()
			var fake gateway.Gateway = gateway.NewFake(h.gwPool, gateway.FakeConfig{})
			if tt.wrap != nil {
				fake = tt.wrap(fake, bad)
			}
			gw := &counting{Gateway: fake}
			handler := consume.New(gw, testLog(t))
			var good []events.Event
			for i := range 30 {
				good = append(good, placed(newOrderID(), gateway.TokenVisa, int64(100+i)))
			}
			evs := slices.Concat(good[:10], []events.Event{tt.bad(h, bad)}, good[10:])

			err := h.batch(handler, evs)
			if err == nil {
				t.Fatal("HandleBatch succeeded with a bad event in the batch")
			}
			if inbox.IsPermanent(err) != tt.permanent || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Errorf("HandleBatch: %v; permanent %t, want %t and %v", err, inbox.IsPermanent(err), tt.permanent, tt.is)
			}
			if i, ok := inbox.FailedItem(err); !ok || i != 10 {
				t.Errorf("HandleBatch named item %d (%t), want the bad event, 10, so the inbox need not halve", i, ok)
			}
			if rows := h.snapshot(); len(rows) != 0 {
				t.Errorf("a failed batch left %q", rows)
			}

			// Split as the inbox does: the good ones apply, the bad one
			// fails alone, as it did in the batch.
			_, _ = gw.take()
			if err := h.batch(handler, good); err != nil {
				t.Fatalf("the batch without the bad event: %v", err)
			}
			alone := h.batch(handler, evs[10:11])
			if alone == nil || inbox.IsPermanent(alone) != tt.permanent {
				t.Errorf("the bad event alone: %v, want permanent %t", alone, tt.permanent)
			}
			calls, _ := gw.take()
			for _, ev := range good {
				if n := calls["authorize "+ev.Subject]; n != 1 {
					t.Errorf("order %s authorized %d times by the retried batch, want 1", ev.Subject, n)
				}
				if l, _ := h.charges(ev.Subject); !maps.Equal(l, map[string]int{"authorize/approved": 1}) {
					t.Errorf("order %s: gateway ledger %v, want one approved authorization", ev.Subject, l)
				}
			}
			if res := h.outbox(""); len(res) != len(good) {
				t.Errorf("%d result events, want %d", len(res), len(good))
			}
		})
	}
}
