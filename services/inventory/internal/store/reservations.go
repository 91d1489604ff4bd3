package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopflow/shopflow/services/inventory/internal/stock"
)

// Reservation is an order's row in the reservations table.
type Reservation struct {
	OrderID       string
	ReservationID string
	Status        stock.Status
	CreatedAt     time.Time
	UpdatedAt     time.Time
	CancelledAt   *time.Time
	CancelReason  *string
}

// Claim inserts the order's reservation row with the given status unless
// the order already has one. It reports whether it inserted: false means
// another event for the order got here first (committed, or committing
// now: the insert waits for it), and the caller must not act again.
func Claim(ctx context.Context, tx pgx.Tx, orderID, reservationID string, s stock.Status) (bool, error) {
	const q = `INSERT INTO reservations (order_id, reservation_id, status) VALUES ($1, $2, $3)
ON CONFLICT (order_id) DO NOTHING`
	tag, err := tx.Exec(ctx, q, orderID, reservationID, string(s))
	if err != nil {
		return false, fmt.Errorf("claim reservation %s: %w", orderID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// LockReservation locks and returns the order's reservation; found is
// false when there is none.
func LockReservation(ctx context.Context, tx pgx.Tx, orderID string) (r Reservation, found bool, err error) {
	const q = `SELECT order_id, reservation_id::text, status, created_at, updated_at, cancelled_at, cancel_reason
FROM reservations WHERE order_id = $1 FOR UPDATE`
	r, err = scanReservation(tx.QueryRow(ctx, q, orderID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Reservation{}, false, nil
	}
	if err != nil {
		return Reservation{}, false, fmt.Errorf("lock reservation %s: %w", orderID, err)
	}
	return r, true, nil
}

// GetReservation returns the order's reservation, or stock.ErrNotFound.
func GetReservation(ctx context.Context, db Querier, orderID string) (Reservation, error) {
	const q = `SELECT order_id, reservation_id::text, status, created_at, updated_at, cancelled_at, cancel_reason
FROM reservations WHERE order_id = $1`
	r, err := scanReservation(db.QueryRow(ctx, q, orderID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Reservation{}, fmt.Errorf("reservation %s: %w", orderID, stock.ErrNotFound)
	}
	return r, err
}

func scanReservation(row pgx.Row) (Reservation, error) {
	var r Reservation
	var s string
	err := row.Scan(&r.OrderID, &r.ReservationID, &s, &r.CreatedAt, &r.UpdatedAt, &r.CancelledAt, &r.CancelReason)
	r.Status = stock.Status(s)
	return r, err
}

// SetStatus moves the order's reservation to s.
func SetStatus(ctx context.Context, tx pgx.Tx, orderID string, s stock.Status) error {
	const q = `UPDATE reservations SET status = $2, updated_at = now() WHERE order_id = $1`
	if _, err := tx.Exec(ctx, q, orderID, string(s)); err != nil {
		return fmt.Errorf("set reservation %s %s: %w", orderID, s, err)
	}
	return nil
}

// RecordCancel notes on the order's reservation that the order was
// cancelled, when and why; the first cancellation's note is kept.
func RecordCancel(ctx context.Context, tx pgx.Tx, orderID, reason string, at time.Time) error {
	const q = `UPDATE reservations SET cancelled_at = $2, cancel_reason = $3, updated_at = now()
WHERE order_id = $1 AND cancelled_at IS NULL`
	if _, err := tx.Exec(ctx, q, orderID, at, reason); err != nil {
		return fmt.Errorf("record cancel %s: %w", orderID, err)
	}
	return nil
}

// InsertLines stores the order's merged lines.
func InsertLines(ctx context.Context, tx pgx.Tx, orderID string, lines []stock.Line) error {
	skus, qs := columns(lines)
	const q = `INSERT INTO reservation_lines (order_id, sku, quantity) SELECT $1, * FROM unnest($2::text[], $3::bigint[])`
	if _, err := tx.Exec(ctx, q, orderID, skus, qs); err != nil {
		return fmt.Errorf("insert lines %s: %w", orderID, err)
	}
	return nil
}

// Lines returns the order's lines in SKU order.
func Lines(ctx context.Context, db Querier, orderID string) ([]stock.Line, error) {
	const q = `SELECT sku, quantity FROM reservation_lines WHERE order_id = $1 ORDER BY sku COLLATE "C"`
	rows, err := db.Query(ctx, q, orderID)
	if err != nil {
		return nil, fmt.Errorf("lines %s: %w", orderID, err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowToStructByPos[stock.Line])
	if err != nil {
		return nil, fmt.Errorf("lines %s: %w", orderID, err)
	}
	return lines, nil
}

// Open starts a new order's reservation in one round trip (a pipelined
// batch): it sets the lock timeout (if lockTimeout > 0), claims the order
// as Claim does with status reserved, stores its merged lines if the claim
// won, and locks the lines' stock rows as LockStock does. It reports
// whether the claim won and the locked levels. The lock order is the
// package's (the reservation row, then stock by SKU); when the claim lost,
// the stock locks are merely held until the transaction ends.
func Open(ctx context.Context, tx pgx.Tx, orderID, reservationID string, lines []stock.Line, lockTimeout time.Duration) (claimed bool, levels map[string]stock.Level, err error) {
	skus, qs := columns(lines)
	b := &pgx.Batch{}
	if lockTimeout > 0 {
		b.Queue(setLockTimeout, lockTimeoutValue(lockTimeout))
	}
	b.Queue(`INSERT INTO reservations (order_id, reservation_id, status) VALUES ($1, $2, 'reserved')
ON CONFLICT (order_id) DO NOTHING`, orderID, reservationID)
	b.Queue(`INSERT INTO reservation_lines (order_id, sku, quantity)
SELECT $1, l.sku, l.q FROM unnest($3::text[], $4::bigint[]) AS l(sku, q)
WHERE EXISTS (SELECT 1 FROM reservations WHERE order_id = $1 AND reservation_id = $2)`, orderID, reservationID, skus, qs)
	b.Queue(lockStock, skus)
	br := tx.SendBatch(ctx, b)
	defer func() {
		if cerr := br.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("open reservation %s: %w", orderID, cerr)
		}
	}()
	if lockTimeout > 0 {
		if _, err := br.Exec(); err != nil {
			return false, nil, fmt.Errorf("open reservation %s: lock timeout: %w", orderID, err)
		}
	}
	tag, err := br.Exec()
	if err != nil {
		return false, nil, fmt.Errorf("claim reservation %s: %w", orderID, err)
	}
	claimed = tag.RowsAffected() == 1
	if _, err := br.Exec(); err != nil {
		return false, nil, fmt.Errorf("insert lines %s: %w", orderID, err)
	}
	rows, err := br.Query()
	if err != nil {
		return false, nil, fmt.Errorf("lock stock: %w", err)
	}
	levels, err = collectLevels(rows)
	if err != nil {
		return false, nil, err
	}
	return claimed, levels, nil
}
