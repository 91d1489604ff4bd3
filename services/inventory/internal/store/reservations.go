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

// QueueClaim adds to b the statement that inserts the order's reservation
// row with the given status unless the order already has one (another
// event for the order got here first, committed or committing now: the
// insert waits for it, then changes nothing).
func QueueClaim(b *pgx.Batch, orderID, reservationID string, s stock.Status) {
	const q = `INSERT INTO reservations (order_id, reservation_id, status) VALUES ($1, $2, $3)
ON CONFLICT (order_id) DO NOTHING`
	queue(b, "claim reservation "+orderID, nil, q, orderID, reservationID, string(s))
}

// LockReservation locks and returns the order's reservation, with what an
// event about a known order (OrderCancelled, OrderConfirmed) needs next,
// in one round trip (a pipelined batch): it sets the lock timeout (if
// lockTimeout > 0), locks the reservation row and, when the reservation
// holds stock (status reserved, the only one in which its lines are held),
// reads its lines in SKU order and locks their stock rows as LockStock
// does. The lock order is the package's: the reservation row, then stock
// by SKU; a reservation in any other status locks no stock. found is
// false when the order has no reservation; held is empty unless the
// reservation holds stock.
func LockReservation(ctx context.Context, tx pgx.Tx, orderID string, lockTimeout time.Duration) (r Reservation, found bool, held []stock.Line, err error) {
	b := &pgx.Batch{}
	if lockTimeout > 0 {
		b.Queue(setLockTimeout, lockTimeoutValue(lockTimeout))
	}
	b.Queue(`SELECT order_id, reservation_id::text, status, created_at, updated_at, cancelled_at, cancel_reason
FROM reservations WHERE order_id = $1 FOR UPDATE`, orderID)
	// The reservation row is locked by now, so its status is the one the
	// statement above returned.
	const holds = `EXISTS (SELECT 1 FROM reservations WHERE order_id = $1 AND status = $2)`
	b.Queue(`SELECT sku, quantity FROM reservation_lines WHERE order_id = $1 AND `+holds+`
ORDER BY sku COLLATE "C"`, orderID, string(stock.StatusReserved))
	b.Queue(`SELECT sku FROM stock WHERE sku IN (SELECT sku FROM reservation_lines WHERE order_id = $1) AND `+holds+`
ORDER BY sku COLLATE "C" FOR UPDATE OF stock`, orderID, string(stock.StatusReserved))
	br := tx.SendBatch(ctx, b)
	defer func() {
		if cerr := br.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("lock reservation %s: %w", orderID, cerr)
		}
	}()
	if lockTimeout > 0 {
		if _, err := br.Exec(); err != nil {
			return Reservation{}, false, nil, fmt.Errorf("lock reservation %s: lock timeout: %w", orderID, err)
		}
	}
	r, err = scanReservation(br.QueryRow())
	found = err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Reservation{}, false, nil, fmt.Errorf("lock reservation %s: %w", orderID, err)
	}
	if !found {
		r = Reservation{}
	}
	rows, err := br.Query()
	if err != nil {
		return Reservation{}, false, nil, fmt.Errorf("lines %s: %w", orderID, err)
	}
	held, err = pgx.CollectRows(rows, pgx.RowToStructByPos[stock.Line])
	if err != nil {
		return Reservation{}, false, nil, fmt.Errorf("lines %s: %w", orderID, err)
	}
	if _, err := br.Exec(); err != nil {
		return Reservation{}, false, nil, fmt.Errorf("lock stock: %w", err)
	}
	return r, found, held, nil
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

// QueueSetStatus adds to b the statement that moves the orders'
// reservations to s.
func QueueSetStatus(b *pgx.Batch, s stock.Status, orderIDs ...string) {
	const q = `UPDATE reservations SET status = $2, updated_at = now() WHERE order_id = ANY($1)`
	queue(b, fmt.Sprintf("set reservations %v %s", orderIDs, s), nil, q, orderIDs, string(s))
}

// QueueRecordCancel adds to b the statement that notes on the order's
// reservation that the order was cancelled, when and why; the first
// cancellation's note is kept.
func QueueRecordCancel(b *pgx.Batch, orderID, reason string, at time.Time) {
	const q = `UPDATE reservations SET cancelled_at = $2, cancel_reason = $3, updated_at = now()
WHERE order_id = $1 AND cancelled_at IS NULL`
	queue(b, "record cancel "+orderID, nil, q, orderID, at, reason)
}

// Opening is one new order for OpenAll: its id, the reservation id to
// claim it with, and its merged lines.
type Opening struct {
	OrderID       string
	ReservationID string
	Lines         []stock.Line
}

// OpenAll starts new orders' reservations (distinct ids) in one round
// trip (a pipelined batch): it sets the lock timeout (if lockTimeout > 0),
// claims every order's reservation with status reserved (a claim loses to
// a row already there: the order was seen before) and stores the lines of
// those it won, then locks the stock rows of all their SKUs at once, in
// SKU order, so batches cannot deadlock with one another. It returns the
// orders claimed and the locked levels. The lock order is the package's
// (the reservation rows, then stock by SKU).
func OpenAll(ctx context.Context, tx pgx.Tx, os []Opening, lockTimeout time.Duration) (claimed map[string]bool, levels map[string]stock.Level, err error) {
	var (
		ids, resIDs             = make([]string, len(os)), make([]string, len(os))
		lineIDs, lineSKUs, skus []string
		lineQs                  []int64
		seen                    = map[string]bool{}
	)
	for i, o := range os {
		ids[i], resIDs[i] = o.OrderID, o.ReservationID
		for _, l := range o.Lines {
			lineIDs, lineSKUs, lineQs = append(lineIDs, o.OrderID), append(lineSKUs, l.SKU), append(lineQs, l.Quantity)
			if !seen[l.SKU] {
				seen[l.SKU] = true
				skus = append(skus, l.SKU)
			}
		}
	}
	b := &pgx.Batch{}
	if lockTimeout > 0 {
		b.Queue(setLockTimeout, lockTimeoutValue(lockTimeout))
	}
	b.Queue(`INSERT INTO reservations (order_id, reservation_id, status)
SELECT o, r, 'reserved' FROM unnest($1::text[], $2::uuid[]) AS u(o, r)
ON CONFLICT (order_id) DO NOTHING
RETURNING order_id`, ids, resIDs)
	b.Queue(`INSERT INTO reservation_lines (order_id, sku, quantity)
SELECT l.o, l.sku, l.q FROM unnest($1::text[], $2::text[], $3::bigint[]) AS l(o, sku, q)
JOIN unnest($4::text[], $5::uuid[]) AS u(o, r) ON u.o = l.o
WHERE EXISTS (SELECT 1 FROM reservations WHERE order_id = u.o AND reservation_id = u.r)`, lineIDs, lineSKUs, lineQs, ids, resIDs)
	b.Queue(lockStock, skus)
	br := tx.SendBatch(ctx, b)
	defer func() {
		if cerr := br.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("open %d reservations: %w", len(os), cerr)
		}
	}()
	if lockTimeout > 0 {
		if _, err := br.Exec(); err != nil {
			return nil, nil, fmt.Errorf("open %d reservations: lock timeout: %w", len(os), err)
		}
	}
	rows, err := br.Query()
	if err != nil {
		return nil, nil, fmt.Errorf("claim %d reservations: %w", len(os), err)
	}
	won, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, nil, fmt.Errorf("claim %d reservations: %w", len(os), err)
	}
	claimed = make(map[string]bool, len(won))
	for _, id := range won {
		claimed[id] = true
	}
	if _, err := br.Exec(); err != nil {
		return nil, nil, fmt.Errorf("insert lines of %d reservations: %w", len(os), err)
	}
	rows, err = br.Query()
	if err != nil {
		return nil, nil, fmt.Errorf("lock stock: %w", err)
	}
	levels, err = collectLevels(rows)
	if err != nil {
		return nil, nil, err
	}
	return claimed, levels, nil
}
