package inbox

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shopflow/shopflow/pkg/events"
)

// pruneBatch bounds the rows one pruning statement deletes, and
// prunePause separates full batches, so pruning a large backlog holds no
// lock for long and spreads its WAL instead of stalling the consumers
// beside it.
const (
	pruneBatch = 5000
	prunePause = 50 * time.Millisecond
)

// Execer is what Prune needs of a pool or connection.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Prune deletes consumer's inbox rows of events applied more than
// retention ago, at most batch rows per statement, until none is left,
// and returns how many it deleted.
//
// It finds them through the primary key (consumer, event_id): ce_id is a
// UUIDv7, which sorts by the time the event was made, and an event is
// applied after it is made, so every row to delete has an event id below
// the first UUIDv7 of (now - retention). processed_at decides: a row is
// deleted only if it was also applied more than retention ago (by the
// database's clock, which stamped it), so an id that does not carry its
// time is never deleted early. Rows other replicas are deleting are
// skipped, not waited for.
func Prune(ctx context.Context, db Execer, consumer string, retention time.Duration, batch int) (int64, error) {
	if retention <= 0 {
		return 0, fmt.Errorf("inbox: prune: retention %s is not positive", retention)
	}
	if batch <= 0 {
		batch = pruneBatch
	}
	const q = `
DELETE FROM inbox WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM inbox
    WHERE consumer = $1 AND event_id < $2 AND processed_at < now() - $3::interval
    LIMIT $4 FOR UPDATE SKIP LOCKED))`
	below := events.IDFloor(time.Now().Add(-retention)).String()
	var total int64
	for {
		tag, err := db.Exec(ctx, q, consumer, below, retention, batch)
		if err != nil {
			return total, fmt.Errorf("inbox: prune: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(batch) {
			return total, nil
		}
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-time.After(prunePause):
		}
	}
}

// pruneLoop prunes at start and then every PruneInterval until ctx ends.
func (c *Consumer) pruneLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.PruneInterval)
	defer t.Stop()
	for {
		n, err := Prune(ctx, c.pool, c.cfg.Group, c.cfg.Retention, pruneBatch)
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
