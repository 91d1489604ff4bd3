package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/shopflow/shopflow/pkg/platform/outbox"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// Drained: an unsent event older than the age says no, a younger one does
// not count, and once the relay has published it the outbox is drained.
// The time it gives is when the database looked.
func TestDrained(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	drained := func(age time.Duration) bool {
		t.Helper()
		before := time.Now()
		ok, at, err := outbox.Drained(ctx, pool, age)
		if err != nil {
			t.Fatal(err)
		}
		// The database's clock is this machine's; its microseconds
		// truncate.
		if at.Before(before.Add(-time.Millisecond)) || at.After(time.Now()) {
			t.Errorf("looked at %s, want between %s and now", at, before)
		}
		return ok
	}
	if !drained(0) {
		t.Error("an empty outbox: want drained")
	}
	writeTx(t, pool, testenv.Topic(t, "sent", 1), event("order-1", 1))
	if !drained(time.Hour) {
		t.Error("the unsent event is younger than an hour: want drained of older ones")
	}
	time.Sleep(20 * time.Millisecond)
	if drained(10 * time.Millisecond) {
		t.Error("an unsent event older than 10 ms: want not drained")
	}
	startRelay(t, pool)
	testenv.Eventually(t, 30*time.Second, "the relay publishes the event", func() bool { return drained(0) })
}
