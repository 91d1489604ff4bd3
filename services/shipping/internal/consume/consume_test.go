package consume_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/outbox"
	"github.com/shopflow/shopflow/pkg/platform/pg"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
	"github.com/shopflow/shopflow/services/shipping"
	"github.com/shopflow/shopflow/services/shipping/internal/consume"
	"github.com/shopflow/shopflow/services/shipping/internal/shipment"
	"github.com/shopflow/shopflow/services/shipping/internal/store"
)

func newPool(t *testing.T) *pgxpool.Pool {
	return testenv.Pool(t, shipping.Schema, pg.Migrations{Name: outbox.MigrationsTable, FS: outbox.Migrations()}, shipping.Migrations())
}

var handler = consume.Handler{Schedule: shipment.Schedule{Location: time.UTC, Cutoff: shipment.Cutoff{Hour: 15}},
	Log: slog.New(slog.DiscardHandler)}

// apply runs the handler on ev in its own transaction, as the inbox does.
func apply(t *testing.T, pool *pgxpool.Pool, ev events.Event) error {
	t.Helper()
	return pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error { return handler.Handle(context.Background(), tx, ev) })
}

func outboxTypes(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT (SELECT h ->> 1 FROM jsonb_array_elements(headers) h WHERE h ->> 0 = 'ce_type') FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	types, err := pgx.CollectRows(rows, pgx.RowTo[*string])
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(types))
	for i, s := range types {
		if s != nil {
			out[i] = *s
		}
	}
	return out
}

func placed(orderID, country string) events.Event {
	return events.New("/shopflow/order", events.OrderPlaced{
		OrderID: orderID, CustomerID: "c", Currency: "EUR", TotalCents: 100,
		Items:   []events.Line{{SKU: "S", Quantity: 1, UnitPriceCents: 100}},
		Payment: events.PaymentMethod{CardToken: "tok_visa"},
		ShippingAddress: events.Address{Name: "Grace Hopper", Line1: "Hauptstr. 1", City: "Berlin", PostalCode: "10115",
			Country: country},
		PlacedAt: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC),
	})
}

func TestConfirmMarksReadyWithoutAnEvent(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	id := uuid.NewString()
	if err := apply(t, pool, placed(id, "DE")); err != nil {
		t.Fatal(err)
	}
	confirm := events.New("/shopflow/order", events.OrderConfirmed{OrderID: id, ConfirmedAt: time.Now()})
	for range 2 { // the second, under the same id or not, changes nothing
		if err := apply(t, pool, confirm); err != nil {
			t.Fatal(err)
		}
	}
	s, err := store.Get(context.Background(), pool, id)
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != shipment.StatusReady || len(s.History) != 2 || s.History[1].Status != shipment.StatusReady {
		t.Errorf("after confirm: %s, history %+v", s.Status, s.History)
	}
	if !s.PickupAt.Equal(time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)) {
		t.Errorf("pickup %s, want Thursday 09:00", s.PickupAt)
	}
	if got := outboxTypes(t, pool); len(got) != 1 || got[0] != string(events.TypeShipmentScheduled) {
		t.Errorf("outbox = %v, want only ShipmentScheduled", got)
	}
	// A confirmation of an order never seen changes nothing and is no error.
	if err := apply(t, pool, events.New("/shopflow/order", events.OrderConfirmed{OrderID: uuid.NewString(), ConfirmedAt: time.Now()})); err != nil {
		t.Errorf("confirm of an unknown order = %v", err)
	}
}

func TestErrorsAreClassified(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()

	err := apply(t, pool, placed(uuid.NewString(), "ZZ"))
	if !inbox.IsPermanent(err) || !errors.Is(err, shipment.ErrUndeliverable) {
		t.Errorf("undeliverable address: %v, want a permanent ErrUndeliverable", err)
	}

	// A lock the handler cannot get in time is a database hiccup: transient.
	id := uuid.NewString()
	if err := apply(t, pool, placed(id, "DE")); err != nil {
		t.Fatal(err)
	}
	holder, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(ctx) //nolint:errcheck
	if _, err := holder.Exec(ctx, `SELECT 1 FROM shipments WHERE order_id = $1 FOR UPDATE`, id); err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '50ms'`); err != nil {
			return err
		}
		return handler.Handle(ctx, tx, events.New("/shopflow/order", events.OrderCancelled{OrderID: id, Reason: "r", CancelledAt: time.Now()}))
	})
	if err == nil || inbox.IsPermanent(err) {
		t.Errorf("lock timeout: %v, want a transient error", err)
	}
}

// TestConcurrentBookingHasOneEffect: two deliveries of an order's
// OrderPlaced (under different event ids) apply at once, as around a
// rebalance. The second waits on the first's shipment row; when the first
// commits, the second must neither book nor emit anything, and if it
// fails for it, the failure is transient and its retry a no-op: one
// shipment, one history entry, one ShipmentScheduled.
func TestConcurrentBookingHasOneEffect(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	id := uuid.NewString()

	first, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Rollback(ctx) //nolint:errcheck // committed below
	if err := handler.Handle(ctx, first, placed(id, "DE")); err != nil {
		t.Fatal(err)
	}
	var firstPID int
	if err := first.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&firstPID); err != nil {
		t.Fatal(err)
	}

	second := make(chan error, 1)
	go func() { second <- apply(t, pool, placed(id, "DE")) }()
	testenv.Eventually(t, 30*time.Second, "the second delivery waiting on the first", func() bool {
		var waiting bool
		err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid)))`,
			firstPID).Scan(&waiting)
		return err == nil && waiting
	})
	if err := first.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		if inbox.IsPermanent(err) {
			t.Fatalf("losing delivery: %v, want success or a transient error", err)
		}
		if err := apply(t, pool, placed(id, "DE")); err != nil { // the inbox's retry
			t.Fatalf("retry of the losing delivery: %v", err)
		}
	}
	s, err := store.Get(ctx, pool, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.History) != 1 || s.Status != shipment.StatusScheduled {
		t.Errorf("shipment %s, history %+v; want scheduled once", s.Status, s.History)
	}
	if got := outboxTypes(t, pool); len(got) != 1 || got[0] != string(events.TypeShipmentScheduled) {
		t.Errorf("outbox = %v, want one ShipmentScheduled", got)
	}
}
