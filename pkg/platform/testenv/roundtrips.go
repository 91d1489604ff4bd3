package testenv

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// CountingTx is a pgx.Tx that counts the round trips made through it:
// each Exec, Query, QueryRow, SendBatch and CopyFrom is one. Tests use it
// to pin how many a batch handler makes, whatever the batch's size.
type CountingTx struct {
	pgx.Tx
	Trips int
}

func (c *CountingTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	c.Trips++
	return c.Tx.Exec(ctx, sql, args...)
}

func (c *CountingTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	c.Trips++
	return c.Tx.Query(ctx, sql, args...)
}

func (c *CountingTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	c.Trips++
	return c.Tx.QueryRow(ctx, sql, args...)
}

func (c *CountingTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	c.Trips++
	return c.Tx.SendBatch(ctx, b)
}

func (c *CountingTx) CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error) {
	c.Trips++
	return c.Tx.CopyFrom(ctx, table, cols, src)
}
