package check_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopflow/shopflow/cmd/shop/check"
	"github.com/shopflow/shopflow/cmd/shop/seed"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// TestUnsettledIsAViolation: a wait that runs out with an event about an
// order still in an outbox (the payment service frozen: its relay
// publishes nothing) is a violation saying which outbox, not "OK". The
// check used to say "waited 1s; the shop did not settle" and then "OK:
// every invariant holds", with exit status 0.
func TestUnsettledIsAViolation(t *testing.T) {
	s := startShop(t)
	ctx := context.Background()
	s.holdRelay(t, "payments")
	// Inventory rejects it, so the order is cancelled whatever payment
	// says; payment authorizes, then voids, and its two events stay in
	// its outbox.
	id := s.place(t, "tok_visa", item{"SKU-0001", 1}, item{seed.OutOfStockSKU, 1})
	testenv.Eventually(t, time.Minute, "the order cancelled, its payment voided and its shipment cancelled", func() bool {
		var n int
		err := s.pool.QueryRow(ctx, `SELECT count(*) FROM orders.orders o
JOIN payments.payments p ON p.order_id = o.id::text JOIN shipping.shipments sh ON sh.order_id = o.id::text
WHERE o.id = $1 AND o.status = 'cancelled' AND p.status = 'voided' AND sh.status = 'cancelled'`, id).Scan(&n)
		return err == nil && n == 1
	})

	rep, err := check.Run(ctx, s.pool, check.Options{Wait: time.Second, Baseline: seed.Initial(), Poll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// The order is in flight, not checked: its events are not out yet.
	want := []finding{{check.RuleUnsettled, ""}}
	if got := findings(rep.Violations); rep.Settled || !slices.Equal(got, want) {
		t.Fatalf("settled %v, violations %v; want not settled and %v", rep.Settled, rep.Violations, want)
	}
	if len(rep.InFlightOrders) != 1 || rep.InFlightOrders[0].Order != id {
		t.Fatalf("in flight %v, want the order %s", rep.InFlightOrders, id)
	}
	for _, d := range []string{rep.Violations[0].Detail, rep.InFlightOrders[0].Detail} {
		if !strings.Contains(d, "2 events") || !strings.Contains(d, "in the payments outbox not yet published") {
			t.Errorf("%q does not say which outbox holds what", d)
		}
		t.Logf("%s", d)
	}
}

// holdRelay stops schema's outbox relay from publishing, as a frozen
// service's would: it ends the session holding the relay's lock and takes
// the lock itself until the test ends (the relay stands by meanwhile).
func (s *shop) holdRelay(t *testing.T, schema string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	const key = `hashtextextended('shopflow.outbox.' || $1::text, 0)`
	testenv.Eventually(t, 30*time.Second, "the "+schema+" relay's lock", func() bool {
		var got bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(`+key+`)`, schema).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if !got {
			_, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_locks
WHERE locktype = 'advisory' AND objsubid = 1 AND pid <> pg_backend_pid()
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND ((classid::bigint << 32) | objid::bigint) = `+key, schema)
			if err != nil {
				t.Fatal(err)
			}
		}
		return got
	})
}

// TestInFlightIsNotBroken: a check without a wait on a busy shop sees
// orders whose last results are still on their way: confirmed, and not
// yet captured or made ready because OrderConfirmed is published but not
// yet consumed. Those are in flight, each listed apart with what it still
// waits for, and counted; not as broken invariants, which the check used
// to report them as (61 during a load), nor as "pending" violations. The
// same state long after the order's last change is broken.
func TestInFlightIsNotBroken(t *testing.T) {
	s := startShop(t)
	ctx := context.Background()
	id := s.place(t, "tok_visa", item{"SKU-0001", 1})
	rep, err := check.Run(ctx, s.pool, check.Options{Wait: time.Minute, Baseline: seed.Initial(), Poll: 100 * time.Millisecond})
	if err != nil || len(rep.Violations) > 0 {
		t.Fatalf("settled shop: %v %v", rep.Violations, err)
	}
	// As the order is just after its confirmation was published:
	// payment has not captured, shipping not made the parcel ready.
	s.exec(t, `UPDATE orders.orders SET updated_at = now() WHERE id = $1`, id)
	s.exec(t, `UPDATE payments.payments SET status = 'authorized' WHERE order_id = $1`, id)
	s.exec(t, `DELETE FROM payments.gateway_charges WHERE idempotency_key = $1 AND operation = 'capture'`, id)
	s.exec(t, `UPDATE shipping.shipments SET status = 'scheduled' WHERE order_id = $1`, id)

	rep, err = check.Run(ctx, s.pool, check.Options{Baseline: seed.Initial()})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Violations) > 0 || len(rep.InFlightOrders) != 1 || rep.InFlightOrders[0].Order != id {
		t.Fatalf("an order settling: violations %v, in flight %v; want no violation and the order in flight", rep.Violations, rep.InFlightOrders)
	}
	if d := rep.InFlightOrders[0].Detail; !strings.Contains(d, "still settling") || !strings.Contains(d, "payment is authorized, want captured") {
		t.Errorf("detail %q does not say what the order still waits for", d)
	}
	if rep.InFlight != 1 || rep.Settled {
		t.Errorf("in flight %d, settled %v; want 1, false", rep.InFlight, rep.Settled)
	}

	s.age(t)
	rep, err = check.Run(ctx, s.pool, check.Options{Baseline: seed.Initial()})
	if err != nil {
		t.Fatal(err)
	}
	want := []finding{{check.RuleConfirmedCharge, id}, {check.RuleConfirmedPayment, id}, {check.RuleConfirmedShipment, id}}
	if got := findings(rep.Violations); !slices.Equal(got, want) || rep.InFlight != 0 {
		t.Fatalf("the same an hour later: in flight %d, violations %v; want %v", rep.InFlight, rep.Violations, want)
	}
}

// TestProgressWhileWaiting: while it waits, the check reports after each
// look what is still moving (the caller draws it on a terminal), and an
// order still pending at the end names the steps it waits for and the
// outbox holding the event that would answer it. The check used to say
// nothing while waiting, and "order still pending" at the end.
func TestProgressWhileWaiting(t *testing.T) {
	s := startShop(t)
	ctx := context.Background()
	s.holdRelay(t, "shipping")
	id := s.place(t, "tok_visa", item{"SKU-0001", 1})
	testenv.Eventually(t, time.Minute, "payment and inventory answered", func() bool {
		var n int
		err := s.pool.QueryRow(ctx, `SELECT count(*) FROM orders.orders
WHERE id = $1 AND payment_step <> 'pending' AND inventory_step <> 'pending'`, id).Scan(&n)
		return err == nil && n == 1
	})

	var looks []check.Motion
	rep, err := check.Run(ctx, s.pool, check.Options{Wait: time.Second, Baseline: seed.Initial(), Poll: 100 * time.Millisecond,
		Progress: func(_ time.Duration, m check.Motion) { looks = append(looks, m) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(looks) < 2 || looks[0].Pending != 1 || looks[0].Outbox["shipping"] != 1 {
		t.Errorf("progress: %+v; want a look after each poll, each with the order pending and its event in the shipping outbox", looks)
	}
	want := []finding{{check.RuleUnsettled, ""}}
	if got := findings(rep.Violations); !slices.Equal(got, want) || len(rep.InFlightOrders) != 1 || rep.InFlightOrders[0].Order != id {
		t.Fatalf("violations %v, in flight %v; want %v and the order in flight", rep.Violations, rep.InFlightOrders, want)
	}
	for _, d := range []string{"steps still pending: shipping", "1 event about it in the shipping outbox not yet published"} {
		if !strings.Contains(rep.InFlightOrders[0].Detail, d) {
			t.Errorf("%q does not say %q", rep.InFlightOrders[0], d)
		}
	}
	t.Logf("%s", rep.InFlightOrders[0])
}
