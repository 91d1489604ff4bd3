// Package store keeps orders, the catalog and idempotency keys in the
// order service's PostgreSQL schema. SQL lives beside the method that runs
// it; pgx errors become the domain's errors here.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/services/order/internal/order"
)

// DB is what the store needs of a pool or a transaction.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// ErrNotFound is returned for an order or product that does not exist.
var ErrNotFound = errors.New("not found")

// ErrExists: a create-only write found the row there already.
var ErrExists = errors.New("exists already")

// Products returns the catalog entries for skus (those that exist), by SKU.
func Products(ctx context.Context, db DB, skus []string) (map[string]order.Product, error) {
	const q = `SELECT sku, name, price_cents, currency, active, updated_at FROM products WHERE sku = ANY($1)`
	rows, err := db.Query(ctx, q, skus)
	if err != nil {
		return nil, fmt.Errorf("read products: %w", err)
	}
	out := make(map[string]order.Product, len(skus))
	var p order.Product
	_, err = pgx.ForEachRow(rows, []any{&p.SKU, &p.Name, &p.PriceCents, &p.Currency, &p.Active, &p.UpdatedAt}, func() error {
		out[p.SKU] = p
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read products: %w", err)
	}
	return out, nil
}

// ListProducts returns the catalog in SKU order; inactive products only
// when all is set.
func ListProducts(ctx context.Context, db DB, all bool) ([]order.Product, error) {
	const q = `SELECT sku, name, price_cents, currency, active, updated_at FROM products WHERE active OR $1 ORDER BY sku`
	rows, err := db.Query(ctx, q, all)
	if err != nil {
		return nil, fmt.Errorf("list products: %w", err)
	}
	out := []order.Product{}
	var p order.Product
	_, err = pgx.ForEachRow(rows, []any{&p.SKU, &p.Name, &p.PriceCents, &p.Currency, &p.Active, &p.UpdatedAt}, func() error {
		out = append(out, p)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list products: %w", err)
	}
	return out, nil
}

// ProductWrite says what PutProduct may do.
type ProductWrite int

const (
	// Upsert creates the entry or replaces it.
	Upsert ProductWrite = iota
	// CreateOnly creates it, or returns ErrExists when the SKU has one.
	CreateOnly
	// UpdateOnly replaces it, or returns ErrNotFound when the SKU has none.
	UpdateOnly
)

// productWrites are PutProduct's statements by ProductWrite. Each
// returns the entry's updated_at (left as it was when nothing changes)
// and whether the row was inserted, and no row when its condition fails.
var productWrites = [...]string{
	Upsert: `
INSERT INTO products (sku, name, price_cents, currency, active, updated_at)
VALUES ($1, $2, $3, $4, $5, now())
ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, price_cents = EXCLUDED.price_cents,
    currency = EXCLUDED.currency, active = EXCLUDED.active,
    updated_at = CASE WHEN (products.name, products.price_cents, products.currency, products.active)
                        IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.price_cents, EXCLUDED.currency, EXCLUDED.active)
                      THEN now() ELSE products.updated_at END
RETURNING updated_at, xmax = 0`, // an inserted row version has no xmax; an updated one has the updater's
	CreateOnly: `
INSERT INTO products (sku, name, price_cents, currency, active, updated_at)
VALUES ($1, $2, $3, $4, $5, now())
ON CONFLICT (sku) DO NOTHING
RETURNING updated_at, true`,
	UpdateOnly: `
UPDATE products SET name = $2, price_cents = $3, currency = $4, active = $5,
    updated_at = CASE WHEN (name, price_cents, currency, active) IS DISTINCT FROM ($2, $3, $4, $5)
                      THEN now() ELSE updated_at END
WHERE sku = $1
RETURNING updated_at, false`,
}

// PutProduct writes a catalog entry as w allows and returns it as stored
// and whether it was created. When w's condition fails it returns
// ErrExists (CreateOnly) or ErrNotFound (UpdateOnly), and changes
// nothing.
func PutProduct(ctx context.Context, db DB, p order.Product, w ProductWrite) (stored order.Product, created bool, err error) {
	err = db.QueryRow(ctx, productWrites[w], p.SKU, p.Name, p.PriceCents, p.Currency, p.Active).Scan(&p.UpdatedAt, &created)
	switch {
	case errors.Is(err, pgx.ErrNoRows) && w == CreateOnly:
		return order.Product{}, false, fmt.Errorf("product %s: %w", p.SKU, ErrExists)
	case errors.Is(err, pgx.ErrNoRows) && w == UpdateOnly:
		return order.Product{}, false, fmt.Errorf("product %s: %w", p.SKU, ErrNotFound)
	case err != nil:
		return order.Product{}, false, fmt.Errorf("put product %s: %w", p.SKU, err)
	}
	return p, created, nil
}

// QueueInsertOrders adds the statements that store os and their lines to
// b (two, however many orders), so the caller sends them in one round
// trip with its other writes.
func QueueInsertOrders(b *pgx.Batch, os ...order.Order) error {
	if len(os) == 0 {
		return nil
	}
	n := len(os)
	ids, customers, statuses, curs := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	totals, addrs, placed := make([]int64, n), make([]string, n), make([]time.Time, n)
	var (
		lineOrders, skus, names []string
		nos, qtys               []int32
		prices                  []int64
	)
	for i, o := range os {
		a, err := json.Marshal(o.Address)
		if err != nil {
			return fmt.Errorf("order %s: address: %w", o.ID, err)
		}
		ids[i], customers[i], statuses[i], curs[i] = o.ID, o.CustomerID, string(o.Status), o.Currency
		totals[i], addrs[i], placed[i] = o.TotalCents, string(a), o.PlacedAt
		for j, l := range o.Lines {
			lineOrders, nos, skus, names = append(lineOrders, o.ID), append(nos, int32(j+1)), append(skus, l.SKU), append(names, l.Name)
			qtys, prices = append(qtys, int32(l.Quantity)), append(prices, l.UnitPriceCents)
		}
	}
	const qo = `
INSERT INTO orders (id, customer_id, status, currency, total_cents, shipping_address, placed_at, updated_at)
SELECT id, c, s, cur, t, a::jsonb, p, p
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::timestamptz[]) AS u(id, c, s, cur, t, a, p)`
	b.Queue(qo, ids, customers, statuses, curs, totals, addrs, placed)
	const ql = `
INSERT INTO order_lines (order_id, line_no, sku, name, quantity, unit_price_cents)
SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::int[], $6::bigint[])`
	b.Queue(ql, lineOrders, nos, skus, names, qtys, prices)
	return nil
}

const orderColumns = `id, customer_id, status, currency, total_cents, payment_step, inventory_step,
    shipping_step, payment_failure, inventory_failure, customer_cancel, expiry, tracking_number, shipping_address,
    placed_at, coalesce(confirmed_at, '0001-01-01Z'), coalesce(cancelled_at, '0001-01-01Z'), updated_at`

func scanOrder(row pgx.Row, o *order.Order) error {
	var id uuid.UUID
	err := row.Scan(&id, &o.CustomerID, &o.Status, &o.Currency, &o.TotalCents, &o.Steps.Payment,
		&o.Steps.Inventory, &o.Steps.Shipping, &o.PaymentFailure, &o.InventoryFailure, &o.CustomerCancel,
		&o.Expiry, &o.TrackingNumber, &o.Address, &o.PlacedAt, &o.ConfirmedAt, &o.CancelledAt, &o.UpdatedAt)
	if err != nil {
		return err
	}
	o.ID = id.String()
	o.PlacedAt, o.ConfirmedAt, o.CancelledAt, o.UpdatedAt = o.PlacedAt.UTC(), o.ConfirmedAt.UTC(), o.CancelledAt.UTC(), o.UpdatedAt.UTC()
	return nil
}

// LockOrder reads an order's row (not its lines) for update: every
// change to an order happens under this lock, so its outbox rows are
// written, and published, in order.
func LockOrder(ctx context.Context, tx pgx.Tx, id string) (order.Order, error) {
	var o order.Order
	err := scanOrder(tx.QueryRow(ctx, `SELECT `+orderColumns+` FROM orders WHERE id = $1 FOR UPDATE`, id), &o)
	if errors.Is(err, pgx.ErrNoRows) {
		return o, ErrNotFound
	}
	if err != nil {
		return o, fmt.Errorf("lock order %s: %w", id, err)
	}
	return o, nil
}

// LockOrders is LockOrder for several orders at once, locked in id order
// (so two batches cannot deadlock over them), by id. Ids not found are
// missing from the map.
func LockOrders(ctx context.Context, tx pgx.Tx, ids []string) (map[string]*order.Order, error) {
	return LockOrdersWithLines(ctx, tx, ids, nil)
}

// LockOrdersWithLines is LockOrders that also reads the lines of the
// orders in withLines (some of ids), in the same round trip.
func LockOrdersWithLines(ctx context.Context, tx pgx.Tx, ids, withLines []string) (map[string]*order.Order, error) {
	const lock = `SELECT ` + orderColumns + ` FROM orders WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE`
	fail := func(err error) (map[string]*order.Order, error) {
		return nil, fmt.Errorf("lock %d orders: %w", len(ids), err)
	}
	var (
		rows pgx.Rows
		br   pgx.BatchResults
		err  error
	)
	if len(withLines) == 0 {
		rows, err = tx.Query(ctx, lock, ids)
	} else {
		b := &pgx.Batch{}
		b.Queue(lock, ids)
		b.Queue(`SELECT order_id, sku, name, quantity, unit_price_cents FROM order_lines
		    WHERE order_id = ANY($1::uuid[]) ORDER BY order_id, line_no`, withLines)
		br = tx.SendBatch(ctx, b)
		defer br.Close()
		rows, err = br.Query()
	}
	if err != nil {
		return fail(err)
	}
	defer rows.Close()
	out := make(map[string]*order.Order, len(ids))
	for rows.Next() {
		o := new(order.Order)
		if err := scanOrder(rows, o); err != nil {
			return fail(err)
		}
		out[o.ID] = o
	}
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	if br == nil {
		return out, nil
	}
	if rows, err = br.Query(); err != nil {
		return fail(err)
	}
	var (
		id uuid.UUID
		l  order.Line
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &l.SKU, &l.Name, &l.Quantity, &l.UnitPriceCents}, func() error {
		if o := out[id.String()]; o != nil {
			o.Lines = append(o.Lines, l)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %d orders' lines: %w", len(withLines), err)
	}
	return out, br.Close()
}

// QueueUpdateOrders adds to b the statement that stores the saga state of
// the orders (status, steps, causes, tracking number, timestamps); callers
// send it with their outbox write in one round trip.
func QueueUpdateOrders(b *pgx.Batch, os ...*order.Order) {
	n := len(os)
	var (
		ids, statuses, reasons, pays, invs, ships, payFails, invFails, expiries, tracking = make([]string, n), make([]string, n),
			make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n),
			make([]string, n), make([]string, n), make([]string, n)
		cancels              = make([]bool, n)
		confirmed, cancelled = make([]*time.Time, n), make([]*time.Time, n)
		updated              = make([]time.Time, n)
	)
	for i, o := range os {
		ids[i], statuses[i], reasons[i] = o.ID, string(o.Status), o.Reason()
		pays[i], invs[i], ships[i] = string(o.Steps.Payment), string(o.Steps.Inventory), string(o.Steps.Shipping)
		payFails[i], invFails[i], cancels[i], tracking[i] = o.PaymentFailure, o.InventoryFailure, o.CustomerCancel, o.TrackingNumber
		expiries[i] = o.Expiry
		confirmed[i], cancelled[i], updated[i] = nullTime(o.ConfirmedAt), nullTime(o.CancelledAt), o.UpdatedAt
	}
	const q = `
UPDATE orders o SET status = u.status, reason = u.reason, payment_step = u.pay, inventory_step = u.inv,
    shipping_step = u.ship, payment_failure = u.pay_fail, inventory_failure = u.inv_fail,
    customer_cancel = u.cancel, tracking_number = u.tracking, confirmed_at = u.confirmed,
    cancelled_at = u.cancelled, updated_at = u.updated, expiry = u.expiry
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::bool[], $10::text[], $11::timestamptz[], $12::timestamptz[], $13::timestamptz[], $14::text[])
    AS u(id, status, reason, pay, inv, ship, pay_fail, inv_fail, cancel, tracking, confirmed, cancelled, updated, expiry)
WHERE o.id = u.id`
	b.Queue(q, ids, statuses, reasons, pays, invs, ships, payFails, invFails, cancels, tracking, confirmed, cancelled, updated, expiries)
}

// PendingBefore returns up to limit ids of orders still pending that were
// placed before t, oldest first. Order ids are UUIDv7, which sort by their
// creation time (events.IDFloor), so the scan reads only the old end of
// the pending orders in orders_status_id: the orders of the last moments
// are never visited.
func PendingBefore(ctx context.Context, db DB, t time.Time, limit int) ([]string, error) {
	rows, err := db.Query(ctx, `SELECT id FROM orders WHERE status = 'pending' AND id < $1 AND placed_at < $2 ORDER BY id LIMIT $3`,
		events.IDFloor(t.Add(time.Millisecond)), t, limit)
	if err != nil {
		return nil, fmt.Errorf("pending orders placed before %s: %w", t.Format(time.RFC3339), err)
	}
	ids, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var id uuid.UUID
		err := r.Scan(&id)
		return id.String(), err
	})
	if err != nil {
		return nil, fmt.Errorf("pending orders placed before %s: %w", t.Format(time.RFC3339), err)
	}
	return ids, nil
}

// WatchFlow records a look, at now, at whether the service's events flow
// (flowing: its outbox drained) and returns since when they have flowed
// without a hold-up, and without a gap longer than maxGap between two
// looks (a restart after downtime, every replica down: nobody saw them
// flow meanwhile); the zero time when they do not flow now. One row,
// shared by the replicas (a look that is behind another replica's clock
// does not move checked_at back).
func WatchFlow(ctx context.Context, db DB, now time.Time, flowing bool, maxGap time.Duration) (time.Time, error) {
	const q = `
INSERT INTO expiry_watch AS w (id, flowing_since, checked_at)
VALUES (1, CASE WHEN $2 THEN $1::timestamptz END, $1)
ON CONFLICT (id) DO UPDATE SET
    flowing_since = CASE
        WHEN NOT $2 THEN NULL
        WHEN w.flowing_since IS NULL OR w.checked_at < $1::timestamptz - $3 * interval '1 microsecond' THEN $1::timestamptz
        ELSE w.flowing_since
    END,
    checked_at = greatest(w.checked_at, $1)
RETURNING flowing_since`
	var since *time.Time
	if err := db.QueryRow(ctx, q, now, flowing, maxGap.Microseconds()).Scan(&since); err != nil {
		return time.Time{}, fmt.Errorf("watch the flow of events: %w", err)
	}
	if since == nil {
		return time.Time{}, nil
	}
	return since.UTC(), nil
}

// GetOrder reads an order with its lines.
func GetOrder(ctx context.Context, db DB, id string) (order.Order, error) {
	o, err := GetOrderRow(ctx, db, id)
	if err != nil {
		return o, err
	}
	const ql = `SELECT sku, name, quantity, unit_price_cents FROM order_lines WHERE order_id = $1 ORDER BY line_no`
	rows, err := db.Query(ctx, ql, id)
	if err != nil {
		return o, fmt.Errorf("read order %s lines: %w", id, err)
	}
	var l order.Line
	_, err = pgx.ForEachRow(rows, []any{&l.SKU, &l.Name, &l.Quantity, &l.UnitPriceCents}, func() error {
		o.Lines = append(o.Lines, l)
		return nil
	})
	if err != nil {
		return o, fmt.Errorf("read order %s lines: %w", id, err)
	}
	return o, nil
}

// Filter selects orders for ListOrders.
type Filter struct {
	CustomerID string       // empty: any
	Status     order.Status // empty: any
	Before     string       // keyset cursor: only ids below this one
	Limit      int
}

// ListOrders returns orders newest first (without lines) and whether
// more follow.
func ListOrders(ctx context.Context, db DB, f Filter) ([]order.Order, bool, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if f.CustomerID != "" {
		add("customer_id = $%d", f.CustomerID)
	}
	if f.Status != "" {
		add("status = $%d", string(f.Status))
	}
	if f.Before != "" {
		add("id < $%d", f.Before)
	}
	q := `SELECT ` + orderColumns + ` FROM orders`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, f.Limit+1)
	q += fmt.Sprintf(` ORDER BY id DESC LIMIT $%d`, len(args))
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return nil, false, fmt.Errorf("list orders: %w", err)
	}
	defer rows.Close()
	out := []order.Order{}
	for rows.Next() {
		var o order.Order
		if err := scanOrder(rows, &o); err != nil {
			return nil, false, fmt.Errorf("list orders: %w", err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("list orders: %w", err)
	}
	more := len(out) > f.Limit
	if more {
		out = out[:f.Limit]
	}
	return out, more, nil
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
