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

func scan(row pgx.Row) (*payment.Payment, error) {
	var p payment.Payment
	var status string
	err := row.Scan(&p.OrderID, &p.PaymentID, &status, &p.AmountCents, &p.Currency, &p.ChargeID,
		&p.AuthorizationCode, &p.Reason, &p.CreatedAt, &p.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	p.Status = payment.Status(status)
	return &p, nil
}

// Lock returns the order's payment, locked until tx ends so events about
// one order apply one after the other, or nil when there is none.
func Lock(ctx context.Context, tx pgx.Tx, orderID string) (*payment.Payment, error) {
	const q = `SELECT ` + columns + ` FROM payments WHERE order_id = $1 FOR UPDATE`
	p, err := scan(tx.QueryRow(ctx, q, orderID))
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lock payment %s: %w", orderID, err)
	}
	return p, nil
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

// QueueInsert adds to b the statement that records a new payment (or a
// cancelled tombstone) and its first history entry. Callers send it with
// the result event's outbox insert (outbox.Queue) in one round trip, so
// the payment and its event commit together. A second insert for the
// order violates the primary key: a concurrent delivery won, and the error
// makes this one roll back and retry into the duplicate path.
func QueueInsert(b *pgx.Batch, p *payment.Payment, e Entry) {
	const q = `
WITH p AS (
    INSERT INTO payments (order_id, payment_id, status, amount_cents, currency, charge_id, authorization_code, reason, created_at, updated_at)
    VALUES ($1, nullif($2, ''), $3, $4, $5, $6, $7, $8, $9, $9)
)
INSERT INTO payment_history (order_id, status, event_id, event_type, detail, at)
VALUES ($1, $3, $10, $11, $12, $9)`
	b.Queue(q, p.OrderID, p.PaymentID, string(p.Status), p.AmountCents, p.Currency,
		p.ChargeID, p.AuthorizationCode, p.Reason, p.CreatedAt, e.EventID, e.EventType, e.Detail)
}

// QueueSetStatus adds to b the statement that moves the order's payment to
// e.Status and appends e to its history; see QueueInsert. When the order
// has no payment, sending b fails with ErrNotFound.
func QueueSetStatus(b *pgx.Batch, orderID string, e Entry) {
	const q = `
WITH p AS (
    UPDATE payments SET status = $2, updated_at = $6 WHERE order_id = $1 RETURNING order_id
)
INSERT INTO payment_history (order_id, status, event_id, event_type, detail, at)
SELECT order_id, $2, $3, $4, $5, $6 FROM p`
	b.Queue(q, orderID, string(e.Status), e.EventID, e.EventType, e.Detail, e.At).Exec(func(tag pgconn.CommandTag) error {
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("set payment %s %s: %w", orderID, e.Status, ErrNotFound)
		}
		return nil
	})
}

// Send sends the statements queued in b inside tx, in one round trip;
// orderID names the payment they change in the error.
func Send(ctx context.Context, tx pgx.Tx, orderID string, b *pgx.Batch) error {
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("save payment %s: %w", orderID, err)
	}
	return nil
}

// Record appends an entry to the order's history without changing its
// payment (a recorded no-op).
func Record(ctx context.Context, tx pgx.Tx, orderID string, e Entry) error {
	const q = `
INSERT INTO payment_history (order_id, status, event_id, event_type, detail, at)
VALUES ($1, $2, $3, $4, $5, $6)`
	if _, err := tx.Exec(ctx, q, orderID, string(e.Status), e.EventID, e.EventType, e.Detail, e.At); err != nil {
		return fmt.Errorf("record history of %s: %w", orderID, err)
	}
	return nil
}

// History returns the order's history, oldest first.
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
