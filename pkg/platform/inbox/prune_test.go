package inbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// TestPruneDeletesOnlyRowsPastRetention: rows applied before the
// retention go, in batches; younger rows stay; a second run finds nothing.
func TestPruneDeletesOnlyRowsPastRetention(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	ctx := context.Background()
	const insert = `
INSERT INTO inbox (consumer, event_id, event_type, topic, kpartition, koffset, processed_at)
SELECT 'g', $1 || i, 'shop.order.confirmed.v1', 't', 0, i, now() - $2::interval
FROM generate_series(1, $3) AS i`
	for _, rows := range []struct {
		prefix string
		age    time.Duration
		n      int
	}{{"old-", 30 * 24 * time.Hour, 12}, {"edge-", 7*24*time.Hour + time.Minute, 1}, {"young-", 7*24*time.Hour - time.Minute, 2}, {"new-", 0, 3}} {
		if _, err := f.pool.Exec(ctx, insert, rows.prefix, rows.age, rows.n); err != nil {
			t.Fatal(err)
		}
	}
	n, err := inbox.Prune(ctx, f.pool, 7*24*time.Hour, 5) // batches of 5, 5, 3
	if err != nil {
		t.Fatal(err)
	}
	if n != 13 {
		t.Errorf("pruned %d rows, want 13", n)
	}
	if left := f.count(`SELECT count(*) FROM inbox WHERE event_id LIKE 'young-%' OR event_id LIKE 'new-%'`); left != 5 {
		t.Errorf("%d rows within the retention left, want 5", left)
	}
	if all := f.count(`SELECT count(*) FROM inbox`); all != 5 {
		t.Errorf("%d rows left in all, want 5", all)
	}
	if n, err := inbox.Prune(ctx, f.pool, 7*24*time.Hour, 5); err != nil || n != 0 {
		t.Errorf("second prune: %d rows, %v; want 0, nil", n, err)
	}
	if _, err := inbox.Prune(ctx, f.pool, 0, 5); err == nil {
		t.Error("prune with no retention: no error")
	}
}

// TestConsumerPrunesItsInbox: a consumer with a retention deletes the rows
// older than it while it runs, and still skips a redelivery of an event
// within it.
func TestConsumerPrunesItsInbox(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	old, recent := confirmed("order-old"), confirmed("order-recent")
	f.produce(message(t, f.topic, old), message(t, f.topic, recent))
	c := f.consumer(recordEffect, func(cfg *inbox.Config) {
		cfg.Retention = 24 * time.Hour
		cfg.PruneInterval = 50 * time.Millisecond
	})
	f.run(c)
	f.waitEffects(2)
	// Make one event's row look applied two days ago.
	if _, err := f.pool.Exec(context.Background(),
		`UPDATE inbox SET processed_at = now() - interval '48 hours' WHERE event_id = $1`, old.ID); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "old inbox row pruned", func() bool {
		return f.count(`SELECT count(*) FROM inbox WHERE event_id = $1`, old.ID) == 0
	})
	if n := f.count(`SELECT count(*) FROM inbox WHERE event_id = $1`, recent.ID); n != 1 {
		t.Fatalf("recent event's inbox row: %d, want 1", n)
	}
	if s := c.Stats(); s.Pruned != 1 {
		t.Errorf("stats %+v, want 1 pruned", s)
	}
	// A redelivery within the retention is still a duplicate.
	f.produce(message(t, f.topic, recent), message(t, f.topic, confirmed("order-last")))
	f.waitEffects(3)
	testenv.Eventually(t, 10*time.Second, "duplicate skipped", func() bool { return c.Stats().Duplicates == 1 })
	if n := f.count(`SELECT count(*) FROM effects WHERE event_id = $1`, recent.ID); n != 1 {
		t.Errorf("recent event applied %d times, want 1", n)
	}
}
