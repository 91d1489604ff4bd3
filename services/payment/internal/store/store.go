// Package store reads and writes the payment service's tables (payments and
// payment_history) with pgx. Writes take the caller's transaction, so they
// commit or roll back with the inbox row and the outbox events of the
// record being applied; reads for the HTTP API take the pool.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shopflow/shopflow/services/payment/internal/payment"
)

// Querier is what the store needs of a pgx.Tx or a pool.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ErrNotFound: no payment for the order.
var ErrNotFound = errors.New("payment not found")

// Entry is one line of a payment's status history.
type Entry struct {
	Status    payment.Status
	EventID   string
	EventType string
	Detail    string
	At        time.Time
}

const columns = `order_id, coalesce(payment_id, ''), status, amount_cents, currency, charge_id,
authorization_code, reason, created_at, updated_at`

// scan reads a row of columns, followed by the extra columns into extra.
func scan(row pgx.Row, extra ...any) (*payment.Payment, error) {
	var p payment.Payment
	var status string
	err := row.Scan(append([]any{&p.OrderID, &p.PaymentID, &status, &p.AmountCents, &p.Currency, &p.ChargeID,
		&p.AuthorizationCode, &p.Reason, &p.CreatedAt, &p.UpdatedAt}, extra...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	p.Status = payment.Status(status)
	return &p, nil
}

// LockAll locks the payments of several orders (distinct ids) in one
// statement, so events about one order apply one after the other: it
// returns them by order id (an order without one is absent), locked until
// tx ends. The rows are locked in order id order, so
// transactions locking overlapping sets of orders wait for one another
// instead of deadlocking.
func LockAll(ctx context.Context, tx pgx.Tx, orderIDs []string) (map[string]*payment.Payment, error) {
	const q = `SELECT ` + columns + ` FROM payments WHERE order_id = ANY($1::text[]) ORDER BY order_id FOR UPDATE`
	rows, err := tx.Query(ctx, q, orderIDs)
	if err != nil {
		return nil, fmt.Errorf("lock %d payments: %w", len(orderIDs), err)
	}
	ps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*payment.Payment, error) { return scan(r) })
	if err != nil {
		return nil, fmt.Errorf("lock %d payments: %w", len(orderIDs), err)
	}
	out := make(map[string]*payment.Payment, len(ps))
	for _, p := range ps {
		out[p.OrderID] = p
	}
	return out, nil
}

// Get returns the order's payment or ErrNotFound.
func Get(ctx context.Context, q Querier, orderID string) (*payment.Payment, error) {
	const sql = `SELECT ` + columns + ` FROM payments WHERE order_id = $1`
	p, err := scan(q.QueryRow(ctx, sql, orderID))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("get payment %s: %w", orderID, err)
	}
	return p, err
}

// Line is a history entry of the order OrderID.
type Line struct {
	OrderID string
	Entry
}

// Changes is what a batch of events did to payments, for QueueChanges:
// the payments created (each in its state after the batch), the status
// changes of payments that existed before it (locked by LockAll), and the
// history lines, in the order the events were applied.
type Changes struct {
	Inserts []*payment.Payment
	Updates []*payment.Payment
	History []Line
}

// QueueChanges adds to b the statements that write c, one per kind of
// change, however many payments it touches (orders distinct in Inserts,
// distinct in Updates): new payments, status changes and history lines.
// An update applies Status and UpdatedAt. The new rows are inserted in
// order id order; an order that has a row by then (a concurrent delivery
// won) fails the batch with a primary key violation, and the retry finds
// the winner's row.
func QueueChanges(b *pgx.Batch, c Changes) {
	if n := len(c.Inserts); n > 0 {
		ids, pids, statuses := make([]string, n), make([]string, n), make([]string, n)
		amounts, currencies := make([]int64, n), make([]string, n)
		charges, codes, reasons := make([]string, n), make([]string, n), make([]string, n)
		created, updated := make([]time.Time, n), make([]time.Time, n)
		for i, p := range c.Inserts {
			ids[i], pids[i], statuses[i] = p.OrderID, p.PaymentID, string(p.Status)
			amounts[i], currencies[i] = p.AmountCents, p.Currency
			charges[i], codes[i], reasons[i] = p.ChargeID, p.AuthorizationCode, p.Reason
			created[i], updated[i] = p.CreatedAt, p.UpdatedAt
		}
		const q = `
INSERT INTO payments (order_id, payment_id, status, amount_cents, currency, charge_id, authorization_code, reason, created_at, updated_at)
SELECT o, nullif(pid, ''), s, a, c, ch, code, r, cr, up
FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::timestamptz[], $10::timestamptz[])
    AS u(o, pid, s, a, c, ch, code, r, cr, up)
ORDER BY o`
		b.Queue(q, ids, pids, statuses, amounts, currencies, charges, codes, reasons, created, updated)
	}
	if n := len(c.Updates); n > 0 {
		ids, statuses, at := make([]string, n), make([]string, n), make([]time.Time, n)
		for i, p := range c.Updates {
			ids[i], statuses[i], at[i] = p.OrderID, string(p.Status), p.UpdatedAt
		}
		const q = `
UPDATE payments SET status = u.s, updated_at = u.at
FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(o, s, at)
WHERE payments.order_id = u.o`
		b.Queue(q, ids, statuses, at).Exec(func(tag pgconn.CommandTag) error {
			if tag.RowsAffected() != int64(n) {
				return fmt.Errorf("set status of %d payments, %d found: %w", n, tag.RowsAffected(), ErrNotFound)
			}
			return nil
		})
	}
	if n := len(c.History); n > 0 {
		ids, statuses, evIDs, types, details, at := make([]string, n), make([]string, n), make([]string, n),
			make([]string, n), make([]string, n), make([]time.Time, n)
		for i, l := range c.History {
			ids[i], statuses[i], evIDs[i], types[i], details[i], at[i] = l.OrderID, string(l.Status), l.EventID, l.EventType, l.Detail, l.At
		}
		const q = `
INSERT INTO payment_history (order_id, status, event_id, event_type, detail, at)
SELECT o, s, e, t, d, at
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[]) WITH ORDINALITY AS u(o, s, e, t, d, at, n)
ORDER BY n`
		b.Queue(q, ids, statuses, evIDs, types, details, at)
	}
}

// Read returns the order's payment and its status history, oldest
// first, or ErrNotFound. One statement reads both, so they come from one
// snapshot: read one after the other, a change committed in between
// could show in the history and not in the status.
func Read(ctx context.Context, q Querier, orderID string) (*payment.Payment, []Entry, error) {
	const sql = `SELECT ` + columns + `, h.statuses, h.event_ids, h.event_types, h.details, h.ats
FROM payments LEFT JOIN LATERAL (
	SELECT array_agg(ph.status ORDER BY ph.id) AS statuses, array_agg(ph.event_id ORDER BY ph.id) AS event_ids,
		array_agg(ph.event_type ORDER BY ph.id) AS event_types, array_agg(ph.detail ORDER BY ph.id) AS details,
		array_agg(ph.at ORDER BY ph.id) AS ats
	FROM payment_history ph WHERE ph.order_id = payments.order_id) h ON true
WHERE payments.order_id = $1`
	var status, eventID, eventType, detail []string
	var at []time.Time
	p, err := scan(q.QueryRow(ctx, sql, orderID), &status, &eventID, &eventType, &detail, &at)
	if errors.Is(err, ErrNotFound) {
		return nil, nil, err
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read payment %s: %w", orderID, err)
	}
	hist := make([]Entry, len(status))
	for i := range hist {
		hist[i] = Entry{Status: payment.Status(status[i]), EventID: eventID[i], EventType: eventType[i], Detail: detail[i], At: at[i]}
	}
	return p, hist, nil
}

// History returns the order's history, oldest first: also the lines of
// an order without a payment here (an event that changed nothing, such
// as a confirmation of an order never placed here, is recorded too).
func History(ctx context.Context, q Querier, orderID string) ([]Entry, error) {
	const sql = `
SELECT status, event_id, event_type, detail, at FROM payment_history
WHERE order_id = $1 ORDER BY id`
	rows, err := q.Query(ctx, sql, orderID)
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", orderID, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Entry, error) {
		var e Entry
		var status string
		err := r.Scan(&status, &e.EventID, &e.EventType, &e.Detail, &e.At)
		e.Status = payment.Status(status)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", orderID, err)
	}
	return out, nil
}
