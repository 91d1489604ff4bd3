package app_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopflow/shopflow/pkg/platform/testenv"

	"github.com/shopflow/shopflow/services/order/internal/app"
	domain "github.com/shopflow/shopflow/services/order/internal/order"
	"github.com/shopflow/shopflow/services/order/internal/store"
)

// An order still pending timeout after it was placed is cancelled, naming
// the steps that never answered, and OrderCancelled goes out so the other
// services release what they hold; a younger order, a confirmed one and a
// cancelled one are left alone, and a second round finds nothing.
func TestExpirePending(t *testing.T) {
	a, pool := newApp(t)
	ctx := context.Background()
	old := app.SetExpireBatch(2) // three batches for five pending orders
	t.Cleanup(func() { app.SetExpireBatch(old) })

	var qs []app.Queued
	for _, c := range []string{"silent-1", "silent-2", "silent-3", "silent-4", "paid", "confirmed", "declined"} {
		qs = append(qs, queued(t, c, "", 1000, 250))
	}
	for _, err := range a.StoreGroup(ctx, qs...) {
		if err != nil {
			t.Fatal(err)
		}
	}
	id := func(customer string) string {
		for _, q := range qs {
			if q.Order.CustomerID == customer {
				return q.Order.ID
			}
		}
		panic(customer)
	}
	placed := qs[0].Order.PlacedAt
	apply := func(customer string, steps ...domain.Step) {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		var rs []app.StepResult
		for _, s := range steps {
			rs = append(rs, app.StepResult{Ctx: ctx, OrderID: id(customer), Result: domain.Result{Step: s, Reason: "test"}, At: placed})
		}
		if err := a.ApplyAll(ctx, tx, rs); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	apply("paid", domain.PaymentAuthorized)
	apply("confirmed", domain.PaymentAuthorized, domain.StockReserved, domain.ShipmentScheduled)
	apply("declined", domain.PaymentDeclined)

	const timeout = 30 * time.Minute
	a.SetNow(func() time.Time { return placed.Add(timeout + time.Hour) })
	if n, err := a.ExpirePending(ctx, timeout, placed.Add(timeout-time.Second)); err != nil || n != 0 {
		t.Fatalf("answers read up to a second before the deadline: %d expired, %v; want 0", n, err)
	}

	at := placed.Add(timeout + time.Second)
	a.SetNow(func() time.Time { return at })
	if n, err := a.ExpirePending(ctx, timeout, at); err != nil || n != 5 {
		t.Fatalf("after the timeout: %d expired, %v; want 5", n, err)
	}
	want := map[string]string{
		"silent-1":  "cancelled: no answer from payment, inventory, shipping within 30m0s",
		"silent-4":  "cancelled: no answer from payment, inventory, shipping within 30m0s",
		"paid":      "cancelled: no answer from inventory, shipping within 30m0s",
		"confirmed": "confirmed: ",
		"declined":  "cancelled: payment declined: test",
	}
	for customer, w := range want {
		o, err := store.GetOrder(ctx, pool, id(customer))
		if err != nil {
			t.Fatal(err)
		}
		var stored string
		if err := pool.QueryRow(ctx, `SELECT reason FROM orders WHERE id = $1`, o.ID).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if got := string(o.Status) + ": " + o.Reason(); got != w || stored != o.Reason() {
			t.Errorf("%s: %q (reason column %q), want %q", customer, got, stored, w)
		}
		if strings.HasPrefix(customer, "silent") && !o.CancelledAt.Equal(at) {
			t.Errorf("%s cancelled at %s, want %s", customer, o.CancelledAt, at)
		}
	}
	// One OrderCancelled per expired order, with the reason; none for the
	// others beyond what the saga sent.
	rows, err := pool.Query(ctx, `SELECT convert_from(key, 'UTF8'), convert_from(value, 'UTF8') FROM outbox
	    WHERE headers @> '[["ce_type", "shop.order.cancelled.v1"]]'`)
	if err != nil {
		t.Fatal(err)
	}
	cancelled := map[string][]string{}
	for rows.Next() {
		var key, value string
		if err := rows.Scan(&key, &value); err != nil {
			t.Fatal(err)
		}
		cancelled[key] = append(cancelled[key], value)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"silent-1", "silent-2", "silent-3", "silent-4", "paid", "declined"} {
		if evs := cancelled[id(c)]; len(evs) != 1 || (c != "declined" && !strings.Contains(evs[0], "no answer from")) {
			t.Errorf("OrderCancelled for %s: %q, want one", c, evs)
		}
	}
	if evs := cancelled[id("confirmed")]; len(evs) != 0 {
		t.Errorf("OrderCancelled for the confirmed order: %q", evs)
	}

	a.SetNow(func() time.Time { return at.Add(time.Hour) })
	if n, err := a.ExpirePending(ctx, timeout, at.Add(time.Hour)); err != nil || n != 0 {
		t.Errorf("a second round: %d expired, %v; want 0", n, err)
	}
}

// ExpireLoop expires an order only when its events flowed for a whole
// timeout: not while its OrderPlaced waits in the outbox, not while
// answers wait unapplied in the service's own backlog (which does not
// stop the flow), not while the broker answers only every other time
// (which does), and no sooner than a timeout after it answers again. Real time,
// with a 300 ms timeout.
func TestExpireLoop(t *testing.T) {
	a, pool := newApp(t)
	ctx, cancel := context.WithCancel(context.Background())
	q := queued(t, "silent", "", 1000, 250)
	if err := a.StoreGroup(ctx, q)[0]; err != nil { // its OrderPlaced is in the outbox: no relay here
		t.Fatal(err)
	}
	type answer struct {
		read bool
		err  error
	}
	var guard atomic.Pointer[answer]
	var asked atomic.Int64
	guard.Store(&answer{read: true})
	var flapping atomic.Bool
	readUpTo := func(context.Context, time.Time) (bool, error) {
		if asked.Add(1)%2 == 0 && flapping.Load() {
			return false, errors.New("broker away")
		}
		g := guard.Load()
		return g.read, g.err
	}
	const timeout, interval, slack = 300 * time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond
	done := make(chan error, 1)
	go func() { done <- a.ExpireLoop(ctx, timeout, interval, slack, readUpTo) }()
	status := func() domain.Status {
		o, err := store.GetOrder(ctx, pool, q.Order.ID)
		if err != nil {
			t.Fatal(err)
		}
		return o.Status
	}
	pendingFor := func(d time.Duration, while string) {
		t.Helper()
		time.Sleep(d)
		if s := status(); s != domain.Pending {
			t.Fatalf("order %s %s, want pending", s, while)
		}
	}

	pendingFor(3*timeout, "while its OrderPlaced is unsent")
	guard.Store(&answer{read: false})
	if _, err := pool.Exec(ctx, `DELETE FROM outbox`); err != nil { // the relay published it
		t.Fatal(err)
	}
	pendingFor(3*timeout, "while the answers are unread")
	flapping.Store(true) // every other call fails
	pendingFor(3*timeout, "while the broker answers only now and then")
	flapping.Store(false)
	n := asked.Load()
	guard.Store(&answer{read: true})
	back := time.Now()
	testenv.Eventually(t, 10*time.Second, "order cancelled once the events flow", func() bool { return status() == domain.Cancelled })
	if waited := time.Since(back); waited < timeout {
		t.Errorf("cancelled %s after the broker answered again, want a timeout (%s) at least", waited, timeout)
	}
	if n < 30 {
		t.Errorf("the answers were asked about %d times in 2.7 s of rounds every 10 ms", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ExpireLoop: %v", err)
	}
}

// A round whose time is up before it reaches the orders still expires a
// batch of them: else a round slow in its checks expired nothing, every
// time, and said it ran.
func TestExpirePendingTakesABatchWhenLate(t *testing.T) {
	a, _ := newApp(t)
	ctx := context.Background()
	old := app.SetExpireBatch(2)
	t.Cleanup(func() { app.SetExpireBatch(old) })
	var qs []app.Queued
	for _, c := range []string{"a", "b", "c", "d", "e"} {
		qs = append(qs, queued(t, c, "", 1000, 250))
	}
	for _, err := range a.StoreGroup(ctx, qs...) {
		if err != nil {
			t.Fatal(err)
		}
	}
	at := qs[0].Order.PlacedAt.Add(time.Hour)
	a.SetNow(func() time.Time { return at })
	if n, err := a.ExpirePendingUntil(ctx, time.Minute, at, at.Add(-time.Second)); err != nil || n != 2 {
		t.Errorf("a round already past its time: %d expired, %v; want one batch, 2", n, err)
	}
	if n, err := a.ExpirePendingUntil(ctx, time.Minute, at, time.Time{}); err != nil || n != 3 {
		t.Errorf("then without a limit: %d expired, %v; want the other 3", n, err)
	}
}
