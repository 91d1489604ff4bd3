package inbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// idAt is a UUIDv7 made at t.
func idAt(t time.Time) string {
	u, floor := uuid.Must(uuid.NewV7()), events.IDFloor(t)
	copy(u[:6], floor[:6]) // the time; the rest stays a UUIDv7's
	return u.String()
}

// TestPruneDeletesOnlyRowsPastRetention: the consumer's rows of events
// made and applied before the retention go, in batches; rows applied
// within it stay, whatever their id says, as do ids that do not carry
// their time and other consumers' rows; a second run finds nothing.
func TestPruneDeletesOnlyRowsPastRetention(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	ctx := context.Background()
	now := time.Now()
	const week = 7 * 24 * time.Hour
	add := func(consumer, id string, applied time.Duration) {
		t.Helper()
		_, err := f.pool.Exec(ctx, `
INSERT INTO inbox (consumer, event_id, event_type, topic, kpartition, koffset, processed_at)
VALUES ($1, $2, 'shop.order.confirmed.v1', 't', 0, 0, now() - $3::interval)`, consumer, id, applied)
		if err != nil {
			t.Fatal(err)
		}
	}
	for range 12 {
		add("g", idAt(now.Add(-30*24*time.Hour)), 30*24*time.Hour) // old: pruned
	}
	add("g", idAt(now.Add(-week-time.Minute)), week+time.Minute) // just past: pruned
	kept := []struct {
		consumer, id string
		applied      time.Duration
	}{
		{"g", idAt(now.Add(-week + time.Minute)), week - time.Minute}, // just within
		{"g", idAt(now), 0}, // new
		{"g", idAt(now.Add(-30 * 24 * time.Hour)), time.Hour},               // made long ago, applied lately
		{"g", "ffffffff-ffff-4fff-bfff-ffffffffffff", 30 * 24 * time.Hour},  // an id without its time
		{"other", idAt(now.Add(-30 * 24 * time.Hour)), 30 * 24 * time.Hour}, // another consumer's
	}
	for _, k := range kept {
		add(k.consumer, k.id, k.applied)
	}
	n, err := inbox.Prune(ctx, f.pool, "g", week, 5) // batches of 5, 5, 3
	if err != nil {
		t.Fatal(err)
	}
	if n != 13 {
		t.Errorf("pruned %d rows, want 13", n)
	}
	for _, k := range kept {
		if f.count(`SELECT count(*) FROM inbox WHERE consumer = $1 AND event_id = $2`, k.consumer, k.id) != 1 {
			t.Errorf("row %s/%s (applied %v ago) was pruned", k.consumer, k.id, k.applied)
		}
	}
	if all := f.count(`SELECT count(*) FROM inbox`); all != len(kept) {
		t.Errorf("%d rows left in all, want %d", all, len(kept))
	}
	if n, err := inbox.Prune(ctx, f.pool, "g", week, 5); err != nil || n != 0 {
		t.Errorf("second prune: %d rows, %v; want 0, nil", n, err)
	}
	if _, err := inbox.Prune(ctx, f.pool, "g", 0, 5); err == nil {
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
	old.ID = idAt(time.Now().Add(-48 * time.Hour)) // an event made two days ago...
	f.produce(message(t, f.topic, old), message(t, f.topic, recent))
	c := f.consumer(recordEffect, func(cfg *inbox.Config) {
		cfg.Retention = 24 * time.Hour
		cfg.PruneInterval = 50 * time.Millisecond
	})
	f.run(c)
	f.waitEffects(2)
	// ... and applied then, as far as its row says.
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
	// The counter is added once Prune returns, just after the row goes.
	testenv.Eventually(t, 10*time.Second, "one row counted as pruned", func() bool { return c.Stats().Pruned == 1 })
	// A redelivery within the retention is still a duplicate.
	f.produce(message(t, f.topic, recent), message(t, f.topic, confirmed("order-last")))
	f.waitEffects(3)
	testenv.Eventually(t, 10*time.Second, "duplicate skipped", func() bool { return c.Stats().Duplicates == 1 })
	if n := f.count(`SELECT count(*) FROM effects WHERE event_id = $1`, recent.ID); n != 1 {
		t.Errorf("recent event applied %d times, want 1", n)
	}
}
