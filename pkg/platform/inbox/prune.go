package inbox

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// pruneBatch bounds the rows one pruning transaction deletes, so pruning
// a large backlog holds no lock and writes no WAL burst long enough to
// stall the consumers beside it.
const pruneBatch = 5000

// Execer is what Prune needs of a pool or connection.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Prune deletes the inbox rows of events applied more than retention ago
// (by the database's clock, which stamped processed_at), at most batch
// rows per statement, until none is left, and returns how many it deleted.
// It uses the BRIN index on processed_at: rows arrive in processed_at
// order, so the old ones sit in the table's first block ranges.
func Prune(ctx context.Context, db Execer, retention time.Duration, batch int) (int64, error) {
	if retention <= 0 {
		return 0, fmt.Errorf("inbox: prune: retention %s is not positive", retention)
	}
	if batch <= 0 {
		batch = pruneBatch
	}
	const q = `
DELETE FROM inbox WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM inbox WHERE processed_at < now() - $1::interval LIMIT $2))`
	var total int64
	for {
		tag, err := db.Exec(ctx, q, retention, batch)
		if err != nil {
			return total, fmt.Errorf("inbox: prune: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(batch) {
			return total, nil
		}
	}
}

// pruneLoop prunes at start and then every PruneInterval until ctx ends.
func (c *Consumer) pruneLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.PruneInterval)
	defer t.Stop()
	for {
		n, err := Prune(ctx, c.pool, c.cfg.Retention, pruneBatch)
		c.pruned.Add(n)
		switch {
		case err != nil && ctx.Err() == nil:
			c.log.Warn("pruning the inbox failed; trying again later", "err", err)
		case n > 0:
			c.log.Info("pruned the inbox", "rows", n, "older_than", c.cfg.Retention)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
