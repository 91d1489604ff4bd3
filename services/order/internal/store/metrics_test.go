package store_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/outbox"
	"github.com/shopflow/shopflow/pkg/platform/pg"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
	order "github.com/shopflow/shopflow/services/order"
	"github.com/shopflow/shopflow/services/order/internal/store"
)

// ordersPool is a database of its own with the order service's schema.
func ordersPool(t *testing.T) *pgxpool.Pool {
	return testenv.Pool(t, "orders",
		pg.Migrations{Name: outbox.MigrationsTable, FS: outbox.Migrations()},
		pg.Migrations{Name: inbox.MigrationsTable, FS: inbox.Migrations()},
		order.Spec().Migrations)
}

// idAt is a UUIDv7 made at t.
func idAt(t time.Time) string {
	u, floor := uuid.Must(uuid.NewV7()), events.IDFloor(t)
	copy(u[:6], floor[:6]) // the time; the rest stays a UUIDv7's
	return u.String()
}

type orders struct {
	t    *testing.T
	pool *pgxpool.Pool
}

// add stores n orders made at t in status; it returns their ids.
func (o orders) add(t time.Time, status string, n int) []string {
	o.t.Helper()
	var ids []string
	for range n {
		id := idAt(t)
		_, err := o.pool.Exec(context.Background(), `
INSERT INTO orders (id, customer_id, status, currency, total_cents, shipping_address, placed_at, updated_at)
VALUES ($1, 'c', $2, 'USD', 100, '{}', $3, $3)`, id, status, t)
		if err != nil {
			o.t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

func (o orders) set(status string, ids ...string) {
	o.t.Helper()
	if _, err := o.pool.Exec(context.Background(), `UPDATE orders SET status = $1 WHERE id = ANY($2::uuid[])`, status, ids); err != nil {
		o.t.Fatal(err)
	}
}

// counted is every order counted by status: what the counter must match.
func (o orders) counted() map[string]int64 {
	o.t.Helper()
	out := map[string]int64{"pending": 0, "confirmed": 0, "cancelled": 0}
	rows, err := o.pool.Query(context.Background(), `SELECT status, count(*) FROM orders GROUP BY status`)
	if err != nil {
		o.t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			o.t.Fatal(err)
		}
		out[s] = n
	}
	return out
}

// TestStatusCounterMatchesACount: through placements, settlements, a
// pending order older than the window and the clock moving on, the
// counter gives what counting every order gives; and it does keep what
// it counted (an order stored below its mark, against the rules, is not
// seen until a pending one there makes it count everything again).
func TestStatusCounterMatchesACount(t *testing.T) {
	t.Parallel()
	pool := ordersPool(t)
	o := orders{t, pool}
	t0 := time.Now()
	now := t0.Add(-3 * time.Hour) // before every order below
	c := store.NewStatusCounter(func() time.Time { return now })
	check := func(step string) {
		t.Helper()
		got, err := c.Counts(context.Background(), pool)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if want := o.counted(); !maps.Equal(got, want) {
			t.Fatalf("%s: counter says %v, a count says %v", step, got, want)
		}
	}

	check("empty")
	now = t0
	o.add(t0.Add(-2*time.Hour), "confirmed", 5)
	o.add(t0.Add(-2*time.Hour), "cancelled", 3)
	oldPending := o.add(t0.Add(-90*time.Minute), "pending", 2)
	check("first count")
	check("again")
	o.set("confirmed", oldPending[0])
	o.set("cancelled", oldPending[1])
	check("old pending settled")
	recent := o.add(t0.Add(-time.Minute), "pending", 4)
	check("recent placements")
	o.set("confirmed", recent[:2]...)
	o.set("cancelled", recent[2])
	check("recent settled but one")
	now = t0.Add(time.Hour) // every order is now older than the window
	check("clock on, one still pending")
	check("again")
	o.set("confirmed", recent[3])
	check("all settled")
	check("again")
	o.add(t0.Add(50*time.Minute), "pending", 1)
	check("placed after the clock moved")

	// Against the rules: an order stored below the mark. The kept counts
	// do not see a settled one...
	o.add(t0.Add(-4*time.Hour), "confirmed", 1)
	got, err := c.Counts(context.Background(), pool)
	if err != nil {
		t.Fatal(err)
	}
	if want := o.counted(); got["confirmed"] != want["confirmed"]-1 {
		t.Fatalf("a settled order below the mark: counter says %v, a count %v; want it unseen (kept counts)", got, want)
	}
	// ... and a pending one makes the counter count everything again.
	o.add(t0.Add(-4*time.Hour), "pending", 1)
	check("pending below the mark")
}
