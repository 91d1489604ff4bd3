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

	// Every answer coming after the expiry leaves the order cancelled and
	// sends no OrderConfirmed: the services compensate what they did.
	apply("silent-1", domain.PaymentAuthorized, domain.StockReserved, domain.ShipmentScheduled)
	if o, err := store.GetOrder(ctx, pool, id("silent-1")); err != nil || o.Status != domain.Cancelled {
		t.Errorf("silent-1 answered after its expiry: %s, %v; want cancelled", o.Status, err)
	}
	var confirmed int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE convert_from(key, 'UTF8') = $1
	    AND headers @> '[["ce_type", "shop.order.confirmed.v1"]]'`, id("silent-1")).Scan(&confirmed); err != nil || confirmed != 0 {
		t.Errorf("OrderConfirmed for silent-1 after its expiry: %d, %v; want none", confirmed, err)
	}
}

// An order whose last answer commits while the expiry waits for its row
// lock is confirmed, not expired: the expiry checks again under the lock
// what it chose the order by.
func TestExpiryLosesToAnAnswerHoldingTheLock(t *testing.T) {
	a, pool := newApp(t)
	ctx := context.Background()
	q := queued(t, "late", "", 1000, 250)
	if err := a.StoreGroup(ctx, q)[0]; err != nil {
		t.Fatal(err)
	}
	result := func(s domain.Step) app.StepResult {
		return app.StepResult{Ctx: ctx, OrderID: q.Order.ID, Result: domain.Result{Step: s}, At: q.Order.PlacedAt}
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := a.ApplyAll(ctx, tx, []app.StepResult{result(domain.PaymentAuthorized), result(domain.StockReserved),
		result(domain.ShipmentScheduled)}); err != nil {
		t.Fatal(err)
	}
	const timeout = time.Minute
	at := q.Order.PlacedAt.Add(timeout + time.Second)
	a.SetNow(func() time.Time { return at })
	type outcome struct {
		n   int
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		n, err := a.ExpirePending(ctx, timeout, at) // sees it pending, then waits for the lock
		done <- outcome{n, err}
	}()
	testenv.Eventually(t, 10*time.Second, "the expiry waits for the order's row lock", func() bool {
		var waiting int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		return err == nil && waiting > 0
	})
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.err != nil || r.n != 0 {
		t.Errorf("expiry racing the answers: %d expired, %v; want 0", r.n, r.err)
	}
	if o, err := store.GetOrder(ctx, pool, q.Order.ID); err != nil || o.Status != domain.Confirmed {
		t.Errorf("order %s, %v; want confirmed", o.Status, err)
	}
	var cancelled int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE headers @> '[["ce_type", "shop.order.cancelled.v1"]]'`).Scan(&cancelled); err != nil || cancelled != 0 {
		t.Errorf("OrderCancelled events: %d, %v; want none", cancelled, err)
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
	const timeout, interval, slack = 300 * time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond
	var flapping atomic.Bool
	// How much earlier than an interval ago the answers were asked about,
	// at the least: the margin lies in the deadline, not in what must be
	// read (an answer written after the deadline, before an interval ago,
	// must be applied too).
	var sooner atomic.Int64
	sooner.Store(int64(time.Hour))
	readUpTo := func(_ context.Context, upTo time.Time) (bool, error) {
		d := time.Since(upTo) - interval
		if d < 0 {
			t.Errorf("asked about answers up to %s from now, want an interval (%s) ago at most", -d-interval, interval)
		}
		for old := sooner.Load(); d < time.Duration(old) && !sooner.CompareAndSwap(old, int64(d)); old = sooner.Load() {
		}
		if asked.Add(1)%2 == 0 && flapping.Load() {
			return false, errors.New("broker away")
		}
		g := guard.Load()
		return g.read, g.err
	}
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
	// The flow restarts when the broker answers again; the deadline is
	// then a timeout, a gap (3 intervals and the slack), an interval of
	// hold-up unseen and the interval of answers read later.
	if waited, least := time.Since(back), timeout+5*interval+slack; waited < least {
		t.Errorf("cancelled %s after the broker answered again, want %s at least", waited, least)
	}
	if d := time.Duration(sooner.Load()); d > 50*time.Millisecond {
		t.Errorf("the answers were asked about up to %s before an interval ago at the latest, want up to an interval ago", d+interval)
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

// A replica that cannot reach the broker (its route, its credentials)
// stops expiring, and only itself: another replica that reaches it still
// expires the orders no step answered. Two loops on one database, one of
// them always failing to reach the broker.
func TestExpireLoopReplicaCutOff(t *testing.T) {
	a, pool := newApp(t)
	ctx, cancel := context.WithCancel(context.Background())
	q := queued(t, "silent", "", 1000, 250)
	if err := a.StoreGroup(ctx, q)[0]; err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `DELETE FROM outbox`); err != nil { // the relay published it
		t.Fatal(err)
	}
	const timeout, interval, slack = 300 * time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond
	done := make(chan error, 2)
	go func() {
		done <- a.ExpireLoop(ctx, timeout, interval, slack, func(context.Context, time.Time) (bool, error) { return true, nil })
	}()
	go func() {
		done <- a.ExpireLoop(ctx, timeout, interval, slack, func(context.Context, time.Time) (bool, error) {
			return false, errors.New("dial tcp: connection refused")
		})
	}()
	testenv.Eventually(t, 10*time.Second, "the order cancelled by the replica that reaches the broker", func() bool {
		o, err := store.GetOrder(ctx, pool, q.Order.ID)
		return err == nil && o.Status == domain.Cancelled
	})
	cancel()
	for range 2 {
		if err := <-done; err != nil {
			t.Errorf("ExpireLoop: %v", err)
		}
	}
}
