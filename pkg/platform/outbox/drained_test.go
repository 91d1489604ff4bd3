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
func TestDrained(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	drained := func(age time.Duration) bool {
		t.Helper()
		ok, err := outbox.Drained(ctx, pool, age)
		if err != nil {
			t.Fatal(err)
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
