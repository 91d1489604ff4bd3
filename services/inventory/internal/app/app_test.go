package app_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"sync"
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
	"github.com/shopflow/shopflow/services/inventory/internal/app"
	"github.com/shopflow/shopflow/services/inventory/internal/stock"
	"github.com/shopflow/shopflow/services/inventory/migrations"
)

// pool opens the inventory schema, migrated as the service migrates it, on
// a fresh database, with room for conns concurrent transactions.
func pool(t *testing.T, conns int) *pgxpool.Pool {
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

func placed(orderID string, lines ...events.Line) events.OrderPlaced {
	var total int64
	for _, l := range lines {
		total += int64(l.Quantity) * l.UnitPriceCents
	}
	return events.OrderPlaced{OrderID: orderID, CustomerID: "cust-1", Currency: "USD", TotalCents: total, Items: lines,
		Payment:         events.PaymentMethod{CardToken: "tok_visa"},
		ShippingAddress: events.Address{Name: "Ada", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"},
		PlacedAt:        time.Now().UTC()}
}

// TestConcurrentOverlappingOrdersNeverDeadlock: 32 orders over
// overlapping SKUs, their lines in different orders, each reserved in its
// own transaction as the inbox handler runs it, all at once, against too
// little stock for all of them. No transaction may fail (in particular
// with a deadlock, 40P01); each order is wholly reserved or wholly
// rejected; the reserved totals are exactly the successful orders' lines;
// nothing is oversold.
func TestConcurrentOverlappingOrdersNeverDeadlock(t *testing.T) {
	t.Parallel()
	const orders = 32
	p := pool(t, orders+2)
	ctx := context.Background()
	svc := app.New(p, nil, 10*time.Second)

	skus := []string{"SKU-A", "SKU-B", "SKU-C", "SKU-D", "SKU-E"}
	const onHand = 12 // 32 orders want about 3 units of ~3 SKUs each: demand far exceeds supply
	for _, s := range skus {
		if _, _, err := svc.SetOnHand(ctx, s, onHand, stock.Precondition{}); err != nil {
			t.Fatal(err)
		}
	}

	type order struct {
		id    string
		lines []events.Line
	}
	rng := rand.New(rand.NewPCG(1, 2))
	all := make([]order, orders)
	for i := range all {
		o := order{id: fmt.Sprintf("order-%02d", i)}
		for _, s := range rng.Perm(len(skus))[:2+rng.IntN(3)] { // 2..4 SKUs, in a random order
			o.lines = append(o.lines, events.Line{SKU: skus[s], Quantity: 1 + rng.IntN(3), UnitPriceCents: 100})
		}
		if i%4 == 0 { // a repeated SKU, merged before reserving
			o.lines = append(o.lines, events.Line{SKU: o.lines[0].SKU, Quantity: 1, UnitPriceCents: 100})
		}
		all[i] = o
	}

	// Open every connection before the start line, so the race is between
	// the transactions, not the server's connection set-up (and a server
	// out of connections says so here, not as a failed order).
	conns := make([]*pgxpool.Conn, orders)
	for i := range conns {
		c, err := p.Acquire(ctx)
		if err != nil {
			// Hand back the ones held: the pool's Close in Cleanup waits
			// for every acquired connection, and hung the test for good.
			for _, c := range conns[:i] {
				c.Release()
			}
			t.Fatalf("open connection %d of %d: %v", i+1, orders, err)
		}
		conns[i] = c
	}
	for _, c := range conns {
		c.Release()
	}

	start := make(chan struct{})
	outcomes := make([]app.Outcome, orders)
	errs := make([]error, orders)
	var wg sync.WaitGroup
	for i, o := range all {
		wg.Go(func() {
			<-start
			errs[i] = pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
				var err error
				outcomes[i], err = svc.Reserve(ctx, tx, placed(o.id, o.lines...))
				return err
			})
		})
	}
	close(start)
	wg.Wait()

	want := map[string]int64{}
	var reserved, rejected int
	for i, o := range all {
		if err := errs[i]; err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "40P01" {
				t.Errorf("%s: deadlock: %v", o.id, err)
			} else {
				t.Errorf("%s: %v", o.id, err)
			}
			continue
		}
		var status string
		if err := p.QueryRow(ctx, `SELECT status FROM reservations WHERE order_id = $1`, o.id).Scan(&status); err != nil {
			t.Fatal(err)
		}
		switch outcomes[i] {
		case app.Reserved:
			reserved++
			for _, l := range o.lines {
				want[l.SKU] += int64(l.Quantity)
			}
		case app.Rejected:
			rejected++
		default:
			t.Errorf("%s: outcome %q, want reserved or rejected", o.id, outcomes[i])
		}
		if status != string(outcomes[i]) {
			t.Errorf("%s: reservation status %q, outcome %q", o.id, status, outcomes[i])
		}
	}
	if reserved == 0 || rejected == 0 {
		t.Fatalf("reserved %d, rejected %d: the test needs both to mean anything", reserved, rejected)
	}
	for _, s := range skus {
		var onHandNow, res, avail int64
		if err := p.QueryRow(ctx, `SELECT on_hand, reserved, available FROM stock WHERE sku = $1`, s).Scan(&onHandNow, &res, &avail); err != nil {
			t.Fatal(err)
		}
		if onHandNow != onHand || res != want[s] || avail != onHand-want[s] || avail < 0 {
			t.Errorf("%s: on_hand %d reserved %d available %d; want %d, %d, %d", s, onHandNow, res, avail, onHand, want[s], onHand-want[s])
		}
	}
	// One result event per order, of the kind its outcome says.
	rows, err := p.Query(ctx, `SELECT key, headers FROM outbox`)
	if err != nil {
		t.Fatal(err)
	}
	perOrder := map[string]int{}
	for rows.Next() {
		var key []byte
		var headers any
		if err := rows.Scan(&key, &headers); err != nil {
			t.Fatal(err)
		}
		perOrder[string(key)]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, o := range all {
		if perOrder[o.id] != 1 {
			t.Errorf("%s: %d outbox events, want 1", o.id, perOrder[o.id])
		}
	}
	t.Logf("%d reserved, %d rejected", reserved, rejected)
}

// TestReservationLifecycle walks the use cases on one database: reserve,
// confirm (goods leave), reserve and cancel (goods return), and the
// recorded no-ops, checking stock after each step.
func TestReservationLifecycle(t *testing.T) {
	t.Parallel()
	p := pool(t, 4)
	ctx := context.Background()
	svc := app.New(p, nil, time.Second)
	// The API answers 201 for the first, 200 for the rest.
	for i, n := range []int64{10, 12, 10, 10} { // new, changed, changed back, unchanged
		if _, created, err := svc.SetOnHand(ctx, "SKU-1", n, stock.Precondition{}); err != nil || created != (i == 0) {
			t.Fatalf("SetOnHand %d (%d): created %v, %v", i, n, created, err)
		}
	}
	in := func(fn func(tx pgx.Tx) (app.Outcome, error)) (app.Outcome, error) {
		var out app.Outcome
		err := pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
			var err error
			out, err = fn(tx)
			return err
		})
		return out, err
	}
	level := func(wantOnHand, wantReserved int64) {
		t.Helper()
		l, err := svc.Stock(ctx, "SKU-1")
		if err != nil {
			t.Fatal(err)
		}
		if l.OnHand != wantOnHand || l.Reserved != wantReserved {
			t.Fatalf("SKU-1 on_hand %d reserved %d, want %d, %d", l.OnHand, l.Reserved, wantOnHand, wantReserved)
		}
	}
	line := events.Line{SKU: "SKU-1", Quantity: 3, UnitPriceCents: 100}
	steps := []struct {
		name         string
		do           func(tx pgx.Tx) (app.Outcome, error)
		want         app.Outcome
		wantErr      error
		onHand, resv int64
	}{
		{"reserve a", func(tx pgx.Tx) (app.Outcome, error) { return svc.Reserve(ctx, tx, placed("a", line)) }, app.Reserved, nil, 10, 3},
		{"reserve a again", func(tx pgx.Tx) (app.Outcome, error) { return svc.Reserve(ctx, tx, placed("a", line)) }, app.Recorded, nil, 10, 3},
		{"confirm a", func(tx pgx.Tx) (app.Outcome, error) {
			return svc.Commit(ctx, tx, events.OrderConfirmed{OrderID: "a", ConfirmedAt: time.Now()})
		}, app.Committed, nil, 7, 0},
		{"confirm a again", func(tx pgx.Tx) (app.Outcome, error) {
			return svc.Commit(ctx, tx, events.OrderConfirmed{OrderID: "a", ConfirmedAt: time.Now()})
		}, app.Recorded, nil, 7, 0},
		{"cancel a after confirm", func(tx pgx.Tx) (app.Outcome, error) {
			return svc.Release(ctx, tx, events.OrderCancelled{OrderID: "a", Reason: "late", CancelledAt: time.Now()})
		}, app.Recorded, nil, 7, 0},
		{"reserve b", func(tx pgx.Tx) (app.Outcome, error) { return svc.Reserve(ctx, tx, placed("b", line)) }, app.Reserved, nil, 7, 3},
		{"cancel b", func(tx pgx.Tx) (app.Outcome, error) {
			return svc.Release(ctx, tx, events.OrderCancelled{OrderID: "b", Reason: "customer", CancelledAt: time.Now()})
		}, app.Released, nil, 7, 0},
		{"cancel b again", func(tx pgx.Tx) (app.Outcome, error) {
			return svc.Release(ctx, tx, events.OrderCancelled{OrderID: "b", Reason: "customer", CancelledAt: time.Now()})
		}, app.Recorded, nil, 7, 0},
		{"confirm b after release", func(tx pgx.Tx) (app.Outcome, error) {
			return svc.Commit(ctx, tx, events.OrderConfirmed{OrderID: "b", ConfirmedAt: time.Now()})
		}, "", stock.ErrConflict, 7, 0},
		{"reserve c beyond stock", func(tx pgx.Tx) (app.Outcome, error) {
			return svc.Reserve(ctx, tx, placed("c", events.Line{SKU: "SKU-1", Quantity: 8, UnitPriceCents: 1}))
		}, app.Rejected, nil, 7, 0},
		{"cancel never-seen d", func(tx pgx.Tx) (app.Outcome, error) {
			return svc.Release(ctx, tx, events.OrderCancelled{OrderID: "d", Reason: "x", CancelledAt: time.Now()})
		}, app.Recorded, nil, 7, 0},
		{"place d after its cancel", func(tx pgx.Tx) (app.Outcome, error) { return svc.Reserve(ctx, tx, placed("d", line)) }, app.Recorded, nil, 7, 0},
		{"confirm never-seen e", func(tx pgx.Tx) (app.Outcome, error) {
			return svc.Commit(ctx, tx, events.OrderConfirmed{OrderID: "e", ConfirmedAt: time.Now()})
		}, "", stock.ErrConflict, 7, 0},
		{"reserve f", func(tx pgx.Tx) (app.Outcome, error) { return svc.Reserve(ctx, tx, placed("f", line)) }, app.Reserved, nil, 7, 3},
	}
	for _, s := range steps {
		out, err := in(s.do)
		if !errors.Is(err, s.wantErr) || (s.wantErr == nil) != (err == nil) {
			t.Fatalf("%s: err %v, want %v", s.name, err, s.wantErr)
		}
		if out != s.want {
			t.Fatalf("%s: outcome %q, want %q", s.name, out, s.want)
		}
		level(s.onHand, s.resv)
	}
	if _, _, err := svc.SetOnHand(ctx, "SKU-1", 2, stock.Precondition{}); !errors.Is(err, stock.ErrBelowReserved) {
		t.Fatalf("SetOnHand below reserved: %v, want ErrBelowReserved", err)
	}
	level(7, 3)
	var status string
	var reason *string
	if err := p.QueryRow(ctx, `SELECT status, cancel_reason FROM reservations WHERE order_id = 'd'`).Scan(&status, &reason); err != nil {
		t.Fatal(err)
	}
	if status != string(stock.StatusCancelled) || reason == nil || *reason != "x" {
		t.Fatalf("never-seen cancelled order recorded as %q reason %v", status, reason)
	}
}

// TestLockTimeoutBoundsCommitAndRelease: confirming or cancelling an order
// whose reservation row or stock rows another transaction holds fails
// with a lock timeout (55P03, which the inbox retries) after the
// service's lock timeout, not after the caller's deadline; once the locks
// are gone, both apply.
func TestLockTimeoutBoundsCommitAndRelease(t *testing.T) {
	t.Parallel()
	p := pool(t, 4)
	ctx := context.Background()
	svc := app.New(p, nil, 100*time.Millisecond)
	if _, _, err := svc.SetOnHand(ctx, "SKU-1", 10, stock.Precondition{}); err != nil {
		t.Fatal(err)
	}
	line := events.Line{SKU: "SKU-1", Quantity: 2, UnitPriceCents: 100}
	for _, id := range []string{"a", "b"} {
		if err := pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
			_, err := svc.Reserve(ctx, tx, placed(id, line))
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	commit := func(ctx context.Context, tx pgx.Tx) (app.Outcome, error) {
		return svc.Commit(ctx, tx, events.OrderConfirmed{OrderID: "a", ConfirmedAt: time.Now()})
	}
	release := func(ctx context.Context, tx pgx.Tx) (app.Outcome, error) {
		return svc.Release(ctx, tx, events.OrderCancelled{OrderID: "b", Reason: "customer", CancelledAt: time.Now()})
	}
	apply := func(do func(context.Context, pgx.Tx) (app.Outcome, error)) (app.Outcome, error) {
		// The deadline stands for the inbox's: without the lock timeout
		// the wait would end here, with another error.
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var out app.Outcome
		err := pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
			var err error
			out, err = do(ctx, tx)
			return err
		})
		return out, err
	}
	tests := []struct {
		name string
		lock string // what the other transaction holds
		do   func(context.Context, pgx.Tx) (app.Outcome, error)
	}{
		{"commit behind a stock row", `SELECT 1 FROM stock WHERE sku = 'SKU-1' FOR UPDATE`, commit},
		{"commit behind its reservation", `SELECT 1 FROM reservations WHERE order_id = 'a' FOR UPDATE`, commit},
		{"release behind a stock row", `SELECT 1 FROM stock WHERE sku = 'SKU-1' FOR UPDATE`, release},
		{"release behind its reservation", `SELECT 1 FROM reservations WHERE order_id = 'b' FOR UPDATE`, release},
	}
	for _, tt := range tests {
		other, err := p.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := other.Exec(ctx, tt.lock); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = apply(tt.do)
		took := time.Since(start)
		if err := other.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "55P03" {
			t.Fatalf("%s: err %v, want a lock timeout (55P03)", tt.name, err)
		}
		if took > 3*time.Second {
			t.Fatalf("%s: failed after %s, want about the 100ms lock timeout", tt.name, took)
		}
	}
	if out, err := apply(commit); err != nil || out != app.Committed {
		t.Fatalf("commit after the locks: %q, %v; want committed", out, err)
	}
	if out, err := apply(release); err != nil || out != app.Released {
		t.Fatalf("release after the locks: %q, %v; want released", out, err)
	}
	l, err := svc.Stock(ctx, "SKU-1")
	if err != nil {
		t.Fatal(err)
	}
	if l.OnHand != 8 || l.Reserved != 0 {
		t.Fatalf("SKU-1 on_hand %d reserved %d, want 8, 0", l.OnHand, l.Reserved)
	}
}

// TestApplyPlacedMatchesOneByOne: a batch of placed orders competing for
// too little stock, with a second OrderPlaced for one of them, comes out
// as reserving them one by one would: in order, each planned against what
// the ones before it left, the repeat changing nothing; and the two
// statements' worth of writes leave consistent rows.
func TestApplyPlacedMatchesOneByOne(t *testing.T) {
	t.Parallel()
	p := pool(t, 4)
	ctx := context.Background()
	svc := app.New(p, nil, 10*time.Second)
	for sku, n := range map[string]int64{"SKU-A": 5, "SKU-B": 3} {
		if _, _, err := svc.SetOnHand(ctx, sku, n, stock.Precondition{}); err != nil {
			t.Fatal(err)
		}
	}
	line := func(sku string, q int) events.Line { return events.Line{SKU: sku, Quantity: q, UnitPriceCents: 100} }
	batch := []events.OrderPlaced{
		placed("o1", line("SKU-A", 2), line("SKU-B", 1)),
		placed("o2", line("SKU-A", 2)),
		placed("o1", line("SKU-A", 2), line("SKU-B", 1)), // a repeat
		placed("o3", line("SKU-A", 2), line("SKU-B", 1)), // 1 A left: rejected
		placed("o4", line("SKU-B", 2)),                   // exactly what is left of B
		placed("o5", line("SKU-A", 1), line("SKU-A", 1)), // 2 A wanted after merging: rejected
	}
	evs := make([]app.Event, len(batch))
	for i, e := range batch {
		evs[i] = app.Event{Ctx: ctx, Payload: e}
	}
	var outs []app.Outcome
	err := pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
		var err error
		outs, err = svc.Apply(ctx, tx, evs)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []app.Outcome{app.Reserved, app.Reserved, app.Recorded, app.Rejected, app.Reserved, app.Rejected}
	if fmt.Sprint(outs) != fmt.Sprint(want) {
		t.Errorf("outcomes %v, want %v", outs, want)
	}
	for sku, reserved := range map[string]int64{"SKU-A": 4, "SKU-B": 3} {
		l, err := svc.Stock(ctx, sku)
		if err != nil || l.Reserved != reserved {
			t.Errorf("%s reserved %d (%v), want %d", sku, l.Reserved, err, reserved)
		}
	}
	var statuses string
	if err := p.QueryRow(ctx, `SELECT string_agg(order_id || '=' || status, ',' ORDER BY order_id) FROM reservations`).Scan(&statuses); err != nil {
		t.Fatal(err)
	}
	if statuses != "o1=reserved,o2=reserved,o3=rejected,o4=reserved,o5=rejected" {
		t.Errorf("reservations %s", statuses)
	}
	var lines int
	if err := p.QueryRow(ctx, `SELECT count(*) FROM reservation_lines`).Scan(&lines); err != nil || lines != 7 {
		t.Errorf("%d reservation lines (%v), want 7 (o1 2, o2 1, o3 2, o4 1, o5 1)", lines, err)
	}
	var n int
	if err := p.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&n); err != nil || n != 5 {
		t.Errorf("%d outbox rows (%v), want 5 (one per order)", n, err)
	}
	// Available in a rejection is what the orders before it left.
	var rejected string
	if err := p.QueryRow(ctx, `SELECT convert_from(value, 'UTF8') FROM outbox WHERE convert_from(key, 'UTF8') = 'o3'`).Scan(&rejected); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rejected, `"available":1`) {
		t.Errorf("o3's rejection %s, want SKU-A available 1", rejected)
	}
}

// TestConditionalSetOnHand: the level's version changes with every change
// (an admin's and an order's), and a change conditional on a version, on
// existing or on not existing is made only when that holds, checked
// against the locked row.
func TestConditionalSetOnHand(t *testing.T) {
	t.Parallel()
	p := pool(t, 4)
	ctx := context.Background()
	svc := app.New(p, nil, time.Second)
	ifMatch := func(v ...uint32) stock.Precondition { return stock.Precondition{IfMatch: &stock.Versions{List: v}} }
	var (
		anyVersion = &stock.Versions{Any: true}
		failed     *stock.PreconditionError
	)
	level := func() stock.Level {
		t.Helper()
		l, err := svc.Stock(ctx, "SKU-1")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}

	if _, _, err := svc.SetOnHand(ctx, "SKU-1", 10, stock.Precondition{IfMatch: anyVersion}); !errors.As(err, &failed) || failed.Found {
		t.Fatalf("If-Match * on a SKU without stock: %v, want a precondition error (not found)", err)
	}
	if _, err := svc.Stock(ctx, "SKU-1"); !errors.Is(err, stock.ErrNotFound) {
		t.Fatalf("a failed If-Match * created the SKU: %v", err)
	}
	l0, created, err := svc.SetOnHand(ctx, "SKU-1", 10, stock.Precondition{IfNoneMatch: anyVersion})
	if err != nil || !created {
		t.Fatalf("If-None-Match * on a new SKU: created %v, %v", created, err)
	}
	if _, _, err := svc.SetOnHand(ctx, "SKU-1", 11, stock.Precondition{IfNoneMatch: anyVersion}); !errors.As(err, &failed) || !failed.Found || failed.Current.Version != l0.Version {
		t.Fatalf("If-None-Match * on an existing SKU: %v, want a precondition error naming version %d", err, l0.Version)
	}
	if l := level(); l.Version != l0.Version || l.OnHand != 10 {
		t.Fatalf("after the refused changes: %+v, want %+v", l, l0)
	}

	l1, _, err := svc.SetOnHand(ctx, "SKU-1", 12, ifMatch(l0.Version))
	if err != nil || l1.OnHand != 12 || l1.Version == l0.Version {
		t.Fatalf("If-Match the current version: %+v, %v; want on hand 12 at a new version", l1, err)
	}
	if _, _, err := svc.SetOnHand(ctx, "SKU-1", 20, ifMatch(l0.Version)); !errors.As(err, &failed) || failed.Current.Version != l1.Version {
		t.Fatalf("If-Match a stale version: %v, want a precondition error naming version %d", err, l1.Version)
	}

	// An order reserving stock changes the version: an admin who read
	// the level before cannot set it from that stale read.
	err = pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
		_, err := svc.Reserve(ctx, tx, placed("a", events.Line{SKU: "SKU-1", Quantity: 3, UnitPriceCents: 100}))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	l2 := level()
	if l2.Reserved != 3 || l2.Version == l1.Version {
		t.Fatalf("after a reservation: %+v, want 3 reserved at a version other than %d", l2, l1.Version)
	}
	if _, _, err := svc.SetOnHand(ctx, "SKU-1", 30, ifMatch(l1.Version)); !errors.As(err, &failed) {
		t.Fatalf("If-Match the version before the reservation: %v, want a precondition error", err)
	}
	if l, _, err := svc.SetOnHand(ctx, "SKU-1", 12, ifMatch(7, l2.Version)); err != nil || l.Version != l2.Version {
		t.Fatalf("If-Match a list with the current version, same on hand: %+v, %v; want no change", l, err)
	}
	l3, _, err := svc.SetOnHand(ctx, "SKU-1", 30, stock.Precondition{IfMatch: anyVersion})
	if err != nil || l3.OnHand != 30 {
		t.Fatalf("If-Match * on an existing SKU: %+v, %v", l3, err)
	}

	// A change committed while the conditional one waits for the row
	// counts: the version is checked on the locked row, not on a read
	// made before the lock (which would pass, and then overwrite it).
	other, err := p.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback(ctx)
	if _, err := other.Exec(ctx, `UPDATE stock SET on_hand = on_hand + 1 WHERE sku = 'SKU-1'`); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := svc.SetOnHand(ctx, "SKU-1", 50, ifMatch(l3.Version))
		done <- err
	}()
	time.Sleep(200 * time.Millisecond) // the service's lock timeout is 1 s
	if err := other.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.As(err, &failed) {
		t.Fatalf("If-Match the version a concurrent change replaced: %v, want a precondition error", err)
	}
	if l := level(); l.OnHand != 31 {
		t.Fatalf("on hand %d after the concurrent change and the refused one, want 31", l.OnHand)
	}
}

// TestStockAdjustments: every change SetOnHand makes, by whichever path
// (created, set unconditionally, create-only, If-Match), is recorded in
// the stock_adjustments ledger in its transaction, with its delta and the
// on hand after it; a refused or no-op change and a sale record nothing.
// So on hand is always the ledger's sum less what was sold, which is
// what shop check holds the inventory to.
func TestStockAdjustments(t *testing.T) {
	t.Parallel()
	p := pool(t, 4)
	ctx := context.Background()
	svc := app.New(p, nil, time.Second)
	anyVersion := &stock.Versions{Any: true}
	set := func(sku string, n int64, pre stock.Precondition) (stock.Level, error) {
		t.Helper()
		l, _, err := svc.SetOnHand(ctx, sku, n, pre)
		return l, err
	}
	mustSet := func(sku string, n int64, pre stock.Precondition) stock.Level {
		t.Helper()
		l, err := set(sku, n, pre)
		if err != nil {
			t.Fatalf("set %s to %d: %v", sku, n, err)
		}
		return l
	}

	mustSet("SKU-1", 10, stock.Precondition{})                       // created: +10
	mustSet("SKU-1", 10, stock.Precondition{})                       // unchanged: nothing
	l := mustSet("SKU-1", 15, stock.Precondition{})                  // restocked: +5
	mustSet("SKU-2", 0, stock.Precondition{IfNoneMatch: anyVersion}) // created empty: +0
	if _, err := set("SKU-2", 4, stock.Precondition{IfNoneMatch: anyVersion}); err == nil {
		t.Fatal("If-None-Match * on an existing SKU succeeded")
	}
	mustSet("SKU-2", 4, stock.Precondition{IfMatch: anyVersion}) // +4
	// A sale takes 3 off the shelf without an adjustment.
	err := pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
		if _, err := svc.Reserve(ctx, tx, placed("a", events.Line{SKU: "SKU-1", Quantity: 3, UnitPriceCents: 100})); err != nil {
			return err
		}
		_, err := svc.Commit(ctx, tx, events.OrderConfirmed{OrderID: "a", ConfirmedAt: time.Now()})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := set("SKU-1", 20, stock.Precondition{IfMatch: &stock.Versions{List: []uint32{l.Version}}}); err == nil {
		t.Fatal("If-Match the version before the sale succeeded")
	}
	// Reserved 2 of the 12 left; on hand may not go below them.
	err = pgx.BeginFunc(ctx, p, func(tx pgx.Tx) error {
		_, err := svc.Reserve(ctx, tx, placed("b", events.Line{SKU: "SKU-1", Quantity: 2, UnitPriceCents: 100}))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := set("SKU-1", 1, stock.Precondition{}); !errors.Is(err, stock.ErrBelowReserved) {
		t.Fatalf("set below reserved: %v, want ErrBelowReserved", err)
	}
	mustSet("SKU-1", 7, stock.Precondition{}) // written off: -5

	got := testenv.Rows(t, p, `SELECT format('%s %s %s %s', sku, delta, on_hand_after, source) FROM stock_adjustments ORDER BY id`)
	want := []string{
		"SKU-1 10 10 set on hand",
		"SKU-1 5 15 set on hand",
		"SKU-2 0 0 set on hand",
		"SKU-2 4 4 set on hand",
		"SKU-1 -5 7 set on hand",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("adjustments:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// On hand = adjustments − sold, for every SKU.
	got = testenv.Rows(t, p, `
SELECT format('%s %s %s', s.sku, s.on_hand, (SELECT sum(delta) FROM stock_adjustments a WHERE a.sku = s.sku)
    - coalesce((SELECT sum(l.quantity) FROM reservation_lines l JOIN reservations r USING (order_id)
                WHERE r.status = 'committed' AND l.sku = s.sku), 0))
FROM stock s ORDER BY s.sku`)
	if want := []string{"SKU-1 7 7", "SKU-2 4 4"}; !slices.Equal(got, want) {
		t.Fatalf("sku, on hand, adjustments − sold: %v, want %v", got, want)
	}
}
