package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// StatusCounts returns how many orders are in each status.
func StatusCounts(ctx context.Context, db DB) (map[string]int64, error) {
	rows, err := db.Query(ctx, `SELECT status, count(*) FROM orders GROUP BY status`)
	if err != nil {
		return nil, fmt.Errorf("count orders by status: %w", err)
	}
	out := map[string]int64{"pending": 0, "confirmed": 0, "cancelled": 0}
	var status string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&status, &n}, func() error {
		out[status] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count orders by status: %w", err)
	}
	return out, nil
}
