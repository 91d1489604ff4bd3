package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

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

func scanReservation(row pgx.Row) (Reservation, error) {
	var r Reservation
	var s string
	err := row.Scan(&r.OrderID, &r.ReservationID, &s, &r.CreatedAt, &r.UpdatedAt, &r.CancelledAt, &r.CancelReason)
	r.Status = stock.Status(s)
	return r, err
}

// Claim is an order a batch of events may start the reservation of: its
// first event in the batch is an OrderPlaced (Status reserved, with the
// order's merged Lines) or an OrderCancelled (Status cancelled, the record
// of a cancellation that came first, without lines). The claim inserts
// the row unless the order has one already.
type Claim struct {
	OrderID       string
	ReservationID string
	Status        stock.Status
	Lines         []stock.Line
}

// Locked is what Lock found, its rows locked until the transaction ends.
type Locked struct {
	// Claimed holds the orders whose claim inserted their reservation:
	// they had none before.
	Claimed map[string]bool
	// Reservations holds the reservation of every order that has one
	// (claimed ones as inserted), by order id.
	Reservations map[string]Reservation
	// Held holds, by order, the lines of the settled orders'
	// reservations that hold stock (status reserved), in SKU order.
	Held map[string][]stock.Line
	// Levels holds the locked stock rows by SKU; a SKU without a row is
	// absent.
	Levels map[string]stock.Level
}

// Lock takes every lock a batch of order events needs, and reads what
// the events need to know, in one round trip (a pipelined batch): it sets
// the lock timeout (if lockTimeout > 0); inserts the claims (in order-id
// order) and the lines of those that win; locks the reservation rows of
// orders (every order the batch concerns) in order-id order and reads
// them; reads the lines of the reservations of settle (the orders
// confirmed or cancelled in the batch) that hold stock; and locks the
// stock rows of skus (the lines of the placed orders) and of those held
// lines together, in SKU order. It locks in the package's order (claims,
// then reservation rows, then stock by SKU, each set in one fixed order),
// so concurrent batches queue instead of deadlocking.
func Lock(ctx context.Context, tx pgx.Tx, claims []Claim, orders, settle, skus []string, lockTimeout time.Duration) (lk Locked, err error) {
	claims = slices.Clone(claims)
	slices.SortFunc(claims, func(a, b Claim) int { return cmp.Compare(a.OrderID, b.OrderID) })
	var (
		ids, resIDs, statuses       = make([]string, len(claims)), make([]string, len(claims)), make([]string, len(claims))
		lineIDs, lineSKUs, lineRIDs []string
		lineOrders                  []string
		lineQs                      []int64
	)
	for i, c := range claims {
		ids[i], resIDs[i], statuses[i] = c.OrderID, c.ReservationID, string(c.Status)
		if len(c.Lines) > 0 {
			lineOrders, lineRIDs = append(lineOrders, c.OrderID), append(lineRIDs, c.ReservationID)
		}
		for _, l := range c.Lines {
			lineIDs, lineSKUs, lineQs = append(lineIDs, c.OrderID), append(lineSKUs, l.SKU), append(lineQs, l.Quantity)
		}
	}
	b := &pgx.Batch{}
	if lockTimeout > 0 {
		b.Queue(setLockTimeout, lockTimeoutValue(lockTimeout))
	}
	if len(claims) > 0 {
		// unnest keeps the arrays' order, so the rows are inserted (and
		// a concurrent claim of the same order waited for) in order-id
		// order.
		b.Queue(`INSERT INTO reservations (order_id, reservation_id, status)
SELECT o, r, s FROM unnest($1::text[], $2::uuid[], $3::text[]) WITH ORDINALITY AS u(o, r, s, n) ORDER BY n
ON CONFLICT (order_id) DO NOTHING
RETURNING order_id`, ids, resIDs, statuses)
	}
	if len(lineIDs) > 0 {
		b.Queue(`INSERT INTO reservation_lines (order_id, sku, quantity)
SELECT l.o, l.sku, l.q FROM unnest($1::text[], $2::text[], $3::bigint[]) AS l(o, sku, q)
JOIN unnest($4::text[], $5::uuid[]) AS u(o, r) ON u.o = l.o
WHERE EXISTS (SELECT 1 FROM reservations WHERE order_id = u.o AND reservation_id = u.r)`, lineIDs, lineSKUs, lineQs, lineOrders, lineRIDs)
	}
	b.Queue(`SELECT order_id, reservation_id::text, status, created_at, updated_at, cancelled_at, cancel_reason
FROM reservations WHERE order_id = ANY($1) ORDER BY order_id COLLATE "C" FOR UPDATE`, orders)
	// The lines of the orders to settle, read by order id alone (the
	// primary key): which of them hold stock is decided below from the
	// statuses of the rows locked above. A status condition here let a
	// planner short of statistics (a young table) scan every reservation
	// in that status instead, a cost growing with the table: up to 1 s a
	// batch under shop load.
	if len(settle) > 0 {
		b.Queue(`SELECT order_id, sku, quantity FROM reservation_lines WHERE order_id = ANY($1)
ORDER BY order_id, sku COLLATE "C"`, settle)
	}
	// The stock rows of the placed lines and of every line of the orders
	// to settle (a superset of those that hold stock: locking a few more
	// rows of the batch's own SKUs is harmless). ARRAY(...) runs once: as
	// a subquery beside "sku = ANY($1) OR", a planner short of statistics
	// may run it per stock row.
	b.Queue(`SELECT `+levelColumns+` FROM stock
WHERE sku = ANY($1::text[] || ARRAY(SELECT sku FROM reservation_lines WHERE order_id = ANY($2)))
ORDER BY sku COLLATE "C" FOR UPDATE`, skus, settle)

	br := tx.SendBatch(ctx, b)
	defer func() {
		if cerr := br.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("lock %d orders: %w", len(orders), cerr)
		}
	}()
	if lockTimeout > 0 {
		if _, err := br.Exec(); err != nil {
			return Locked{}, fmt.Errorf("lock %d orders: lock timeout: %w", len(orders), err)
		}
	}
	lk.Claimed = make(map[string]bool, len(claims))
	if len(claims) > 0 {
		rows, err := br.Query()
		if err != nil {
			return Locked{}, fmt.Errorf("claim %d reservations: %w", len(claims), err)
		}
		won, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return Locked{}, fmt.Errorf("claim %d reservations: %w", len(claims), err)
		}
		for _, id := range won {
			lk.Claimed[id] = true
		}
	}
	if len(lineIDs) > 0 {
		if _, err := br.Exec(); err != nil {
			return Locked{}, fmt.Errorf("insert lines of %d reservations: %w", len(lineOrders), err)
		}
	}
	rows, err := br.Query()
	if err != nil {
		return Locked{}, fmt.Errorf("lock %d reservations: %w", len(orders), err)
	}
	rs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Reservation, error) { return scanReservation(r) })
	if err != nil {
		return Locked{}, fmt.Errorf("lock %d reservations: %w", len(orders), err)
	}
	lk.Reservations = make(map[string]Reservation, len(rs))
	for _, r := range rs {
		lk.Reservations[r.OrderID] = r
	}
	lk.Held = map[string][]stock.Line{}
	if len(settle) > 0 {
		rows, err := br.Query()
		if err != nil {
			return Locked{}, fmt.Errorf("read held lines: %w", err)
		}
		var (
			order string
			l     stock.Line
		)
		_, err = pgx.ForEachRow(rows, []any{&order, &l.SKU, &l.Quantity}, func() error {
			if lk.Reservations[order].Status == stock.StatusReserved {
				lk.Held[order] = append(lk.Held[order], l)
			}
			return nil
		})
		if err != nil {
			return Locked{}, fmt.Errorf("read held lines: %w", err)
		}
	}
	rows, err = br.Query()
	if err != nil {
		return Locked{}, fmt.Errorf("lock stock: %w", err)
	}
	lk.Levels, err = collectLevels(rows)
	if err != nil {
		return Locked{}, err
	}
	return lk, nil
}

// Change is what a batch of events does to one reservation row: its new
// status and, if CancelledAt is not nil, the order's cancellation, which
// is recorded unless one is already (the first is kept).
type Change struct {
	OrderID      string
	Status       stock.Status
	CancelledAt  *time.Time
	CancelReason string
}

// QueueChanges adds to b the statement that applies changes to their
// reservations (rows the transaction has locked or inserted), one
// statement however many.
func QueueChanges(b *pgx.Batch, changes []Change) {
	ids, statuses, reasons := make([]string, len(changes)), make([]string, len(changes)), make([]string, len(changes))
	ats := make([]*time.Time, len(changes))
	for i, c := range changes {
		ids[i], statuses[i], ats[i], reasons[i] = c.OrderID, string(c.Status), c.CancelledAt, c.CancelReason
	}
	const q = `UPDATE reservations r SET status = c.s,
	cancelled_at = coalesce(r.cancelled_at, c.at),
	cancel_reason = CASE WHEN r.cancelled_at IS NULL AND c.at IS NOT NULL THEN c.why ELSE r.cancel_reason END,
	updated_at = now()
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[]) AS c(o, s, at, why) WHERE r.order_id = c.o`
	queue(b, fmt.Sprintf("update %d reservations", len(changes)), func(tag pgconn.CommandTag) error {
		if n := tag.RowsAffected(); n != int64(len(changes)) {
			return fmt.Errorf("updated %d reservations, want %d", n, len(changes))
		}
		return nil
	}, q, ids, statuses, ats, reasons)
}
