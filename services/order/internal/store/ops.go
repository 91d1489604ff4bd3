package store

// This file holds the read-only queries of the web pages (live order
// status, ops dashboard).

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/services/order/internal/order"
)

// PlacedSince counts the orders placed at or after since. Order ids are
// UUIDv7, which sort by creation time, so the primary key bounds the scan
// to the recent ids instead of reading the whole table.
func PlacedSince(ctx context.Context, db DB, since time.Time) (int64, error) {
	const q = `SELECT count(*) FROM orders WHERE id >= $1 AND placed_at >= $2`
	var n int64
	if err := db.QueryRow(ctx, q, events.IDFloor(since), since).Scan(&n); err != nil {
		return 0, fmt.Errorf("count recent orders: %w", err)
	}
	return n, nil
}

// OutboxBacklog counts the service's outbox rows not yet published.
func OutboxBacklog(ctx context.Context, db DB) (int64, error) {
	var n int64
	if err := db.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count outbox backlog: %w", err)
	}
	return n, nil
}

// GetOrderRow reads an order without its lines: what a status poll needs,
// in one query.
func GetOrderRow(ctx context.Context, db DB, id string) (order.Order, error) {
	var o order.Order
	err := scanOrder(db.QueryRow(ctx, `SELECT `+orderColumns+` FROM orders WHERE id = $1`, id), &o)
	if errors.Is(err, pgx.ErrNoRows) {
		return o, ErrNotFound
	}
	if err != nil {
		return o, fmt.Errorf("read order %s: %w", id, err)
	}
	return o, nil
}

// GetOrderRows reads the rows of the orders ids (without their lines) in
// one query, by id: what the order pages' shared status poll needs. Ids
// not found are missing from the map.
func GetOrderRows(ctx context.Context, db DB, ids []string) (map[string]order.Order, error) {
	rows, err := db.Query(ctx, `SELECT `+orderColumns+` FROM orders WHERE id = ANY($1::uuid[])`, ids)
	if err != nil {
		return nil, fmt.Errorf("read %d orders: %w", len(ids), err)
	}
	defer rows.Close()
	out := make(map[string]order.Order, len(ids))
	for rows.Next() {
		var o order.Order
		if err := scanOrder(rows, &o); err != nil {
			return nil, fmt.Errorf("read %d orders: %w", len(ids), err)
		}
		out[o.ID] = o
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read %d orders: %w", len(ids), err)
	}
	return out, nil
}
