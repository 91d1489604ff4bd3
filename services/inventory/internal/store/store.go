// Package store is the inventory's PostgreSQL access: the queries beside
// the code that runs them, pgx errors turned into the stock package's
// errors. Functions that change stock take a pgx.Tx: the caller (the app
// package) owns the transaction, so a state change, its inbox row and its
// outbox events commit together.
//
// Locking discipline, which keeps concurrent batches of events free of
// deadlocks: a transaction first claims the reservations it may create
// (inserts, in order-id order), then locks the existing reservation rows
// of its orders (in order-id order), then the stock rows it touches, in
// ascending SKU order (Lock does all three in one round trip, each with
// ORDER BY below FOR UPDATE; LockStock the last), before changing any of
// them; and it changes only rows it has locked or inserted.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shopflow/shopflow/services/inventory/internal/stock"
)

// Querier is what reads need: a pool, a connection or a transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// SetLockTimeout bounds, for the rest of tx, how long a statement waits
// for a row lock. A reservation stuck behind a long admin transaction then
// fails with 55P03, which the inbox retries with backoff, instead of
// holding the partition until the consumer's own deadline.
func SetLockTimeout(ctx context.Context, tx pgx.Tx, d time.Duration) error {
	_, err := tx.Exec(ctx, setLockTimeout, lockTimeoutValue(d))
	return err
}

const setLockTimeout = `SELECT set_config('lock_timeout', $1, true)`

func lockTimeoutValue(d time.Duration) string { return fmt.Sprintf("%dms", max(d.Milliseconds(), 1)) }

// GetStock returns the level of sku, or stock.ErrNotFound.
func GetStock(ctx context.Context, db Querier, sku string) (stock.Level, error) {
	const q = `SELECT ` + levelColumns + ` FROM stock WHERE sku = $1`
	l, err := scanLevel(db.QueryRow(ctx, q, sku))
	if errors.Is(err, pgx.ErrNoRows) {
		return stock.Level{}, fmt.Errorf("sku %s: %w", sku, stock.ErrNotFound)
	}
	return l, err
}

// levelColumns are the columns scanLevel reads. xmin, the transaction
// that wrote the row's current version, changes with every update and
// so serves as the level's Version.
const levelColumns = `sku, on_hand, reserved, updated_at, xmin`

func scanLevel(row pgx.Row) (stock.Level, error) {
	var l stock.Level
	err := row.Scan(&l.SKU, &l.OnHand, &l.Reserved, &l.UpdatedAt, &l.Version)
	return l, err
}

// LockStock locks the stock rows of skus in ascending SKU order and returns
// their levels by SKU; SKUs without a row are absent from the map. The
// ORDER BY sits below the row locking in the plan, so every transaction
// takes its locks in the same order and two orders on overlapping SKUs
// wait for each other instead of deadlocking.
func LockStock(ctx context.Context, tx pgx.Tx, skus []string) (map[string]stock.Level, error) {
	rows, err := tx.Query(ctx, lockStock, skus)
	if err != nil {
		return nil, fmt.Errorf("lock stock: %w", err)
	}
	return collectLevels(rows)
}

const lockStock = `SELECT ` + levelColumns + ` FROM stock WHERE sku = ANY($1) ORDER BY sku COLLATE "C" FOR UPDATE`

func collectLevels(rows pgx.Rows) (map[string]stock.Level, error) {
	levels, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (stock.Level, error) { return scanLevel(r) })
	if err != nil {
		return nil, fmt.Errorf("lock stock: %w", err)
	}
	out := make(map[string]stock.Level, len(levels))
	for _, l := range levels {
		out[l.SKU] = l
	}
	return out, nil
}

// SetOnHand sets the on-hand quantity of sku to n, creating the row if it
// is new, and returns the level after the change and whether the row was
// created. n must pass stock.CheckOnHand against the locked current
// level, and that level must meet pre (a *stock.PreconditionError
// otherwise, and nothing changes). Setting the value it already has
// changes nothing (updated_at and version included), so seeding is
// idempotent. Every change (a creation included) is recorded in tx in
// the stock_adjustments ledger, which shop check holds on hand to.
func SetOnHand(ctx context.Context, tx pgx.Tx, sku string, n int64, pre stock.Precondition) (l stock.Level, created bool, err error) {
	if err := stock.CheckOnHand(stock.Level{}, n); err != nil {
		return stock.Level{}, false, err
	}
	if pre.IfMatch == nil && pre.IfNoneMatch != nil && pre.IfNoneMatch.Any {
		// Create only: no lock needed (and none taken, so a seed does
		// not wait behind reservations): the insert either makes the
		// row or finds one, and rows are never deleted.
		return create(ctx, tx, sku, n)
	}
	if pre.Conditional() {
		// The precondition is checked against the locked row, so no
		// change can come between the check and the update.
		levels, err := LockStock(ctx, tx, []string{sku})
		if err != nil {
			return stock.Level{}, false, err
		}
		cur, found := levels[sku]
		if err := pre.Check(sku, cur, found); err != nil {
			return cur, false, err
		}
		if found {
			return setOnHand(ctx, tx, cur, n)
		}
	}
	if l, inserted, err := insertLevel(ctx, tx, sku, n); err != nil || inserted {
		return l, inserted, err
	}
	levels, err := LockStock(ctx, tx, []string{sku})
	if err != nil {
		return stock.Level{}, false, err
	}
	cur, ok := levels[sku]
	if !ok { // cannot happen: the row existed a statement ago and is never deleted
		return stock.Level{}, false, fmt.Errorf("set on hand %s: row vanished", sku)
	}
	if err := pre.Check(sku, cur, true); err != nil { // created since the check above
		return cur, false, err
	}
	return setOnHand(ctx, tx, cur, n)
}

// create inserts the level of sku with n on hand, or fails with a
// *stock.PreconditionError naming the level that exists.
func create(ctx context.Context, tx pgx.Tx, sku string, n int64) (stock.Level, bool, error) {
	if l, inserted, err := insertLevel(ctx, tx, sku, n); err != nil || inserted {
		return l, inserted, err
	}
	cur, err := GetStock(ctx, tx, sku)
	if err != nil {
		return stock.Level{}, false, err
	}
	return cur, false, &stock.PreconditionError{SKU: sku, Current: cur, Found: true}
}

// insertLevel inserts the level of sku with n on hand, unless sku has
// one: then it reports inserted false, and changes nothing.
func insertLevel(ctx context.Context, tx pgx.Tx, sku string, n int64) (l stock.Level, inserted bool, err error) {
	insert := adjusted(`INSERT INTO stock (sku, on_hand) VALUES ($1, $2) ON CONFLICT (sku) DO NOTHING`)
	l, err = scanLevel(tx.QueryRow(ctx, insert, sku, n, 0))
	switch {
	case err == nil:
		return l, true, nil
	case errors.Is(err, pgx.ErrNoRows):
		return stock.Level{}, false, nil
	}
	return stock.Level{}, false, fmt.Errorf("set on hand %s: %w", sku, err)
}

// setOnHand sets the on-hand quantity of the locked level cur to n.
func setOnHand(ctx context.Context, tx pgx.Tx, cur stock.Level, n int64) (stock.Level, bool, error) {
	if err := stock.CheckOnHand(cur, n); err != nil {
		return cur, false, err
	}
	if cur.OnHand == n {
		return cur, false, nil
	}
	update := adjusted(`UPDATE stock SET on_hand = $2, updated_at = now() WHERE sku = $1`)
	l, err := scanLevel(tx.QueryRow(ctx, update, cur.SKU, n, cur.OnHand))
	if err != nil {
		return stock.Level{}, false, fmt.Errorf("set on hand %s: %w", cur.SKU, err)
	}
	return l, false, nil
}

// adjustmentSource is the source of the stock_adjustments rows SetOnHand
// writes (the migration that made the ledger wrote "opening balance").
const adjustmentSource = "set on hand"

// adjusted turns change, an INSERT or UPDATE of one stock row that sets
// on_hand to $2, into a statement that also records the change in
// stock_adjustments, with $3 the on hand before it (0 for a new row), and
// returns the row's level. No row changed, no adjustment: one round trip
// either way. Sales are not adjustments (QueueMoves writes none): on hand
// is the ledger's sum less the committed reservations' lines.
func adjusted(change string) string {
	return `WITH changed AS (` + change + ` RETURNING ` + levelColumns + `),
adjustment AS (INSERT INTO stock_adjustments (sku, delta, on_hand_after, source)
    SELECT sku, on_hand - $3::bigint, on_hand, '` + adjustmentSource + `' FROM changed)
SELECT ` + levelColumns + ` FROM changed`
}

// Move is what a batch of events does to one SKU's stock: deltas of on
// hand and reserved.
type Move struct {
	SKU              string
	OnHand, Reserved int64
}

// QueueMoves adds to b the statement that changes the stock of every
// SKU by its deltas, one statement however many. The rows must already be
// locked (by Lock, or LockStock).
func QueueMoves(b *pgx.Batch, moves []Move) {
	skus, onHand, reserved := make([]string, len(moves)), make([]int64, len(moves)), make([]int64, len(moves))
	for i, m := range moves {
		skus[i], onHand[i], reserved[i] = m.SKU, m.OnHand, m.Reserved
	}
	const q = `UPDATE stock s SET on_hand = s.on_hand + m.h, reserved = s.reserved + m.r, updated_at = now()
FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS m(sku, h, r) WHERE s.sku = m.sku`
	queue(b, "move stock", func(tag pgconn.CommandTag) error {
		if n := tag.RowsAffected(); n != int64(len(moves)) {
			return fmt.Errorf("updated %d stock rows, want %d", n, len(moves))
		}
		return nil
	}, q, skus, onHand, reserved)
}

// queue adds q to b for callers that send a use case's writes (and its
// outbox insert) in one round trip. When b is sent, an error of q is
// wrapped with what, and check, if not nil, judges q's command tag.
func queue(b *pgx.Batch, what string, check func(pgconn.CommandTag) error, q string, args ...any) {
	b.Queue(q, args...).Fn = func(br pgx.BatchResults) error {
		tag, err := br.Exec()
		if err == nil && check != nil {
			err = check(tag)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
}
