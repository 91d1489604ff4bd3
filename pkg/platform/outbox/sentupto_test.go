package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/shopflow/shopflow/pkg/platform/outbox"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// SentUpTo: an unsent event written before t says no, one written after
// t does not count, and once the relay has published it says yes.
func TestSentUpTo(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	sentUpTo := func(at time.Time) bool {
		t.Helper()
		ok, err := outbox.SentUpTo(ctx, pool, at)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !sentUpTo(time.Now().Add(time.Hour)) {
		t.Error("an empty outbox: want everything sent")
	}
	before := time.Now().Add(-time.Second) // the database's clock may be a little behind
	writeTx(t, pool, testenv.Topic(t, "sent", 1), event("order-1", 1))
	if sentUpTo(time.Now().Add(time.Second)) {
		t.Error("an unsent event written before t: want not sent up to t")
	}
	if !sentUpTo(before) {
		t.Error("the unsent event was written after t: want sent up to t")
	}
	startRelay(t, pool)
	testenv.Eventually(t, 30*time.Second, "the relay publishes the event", func() bool { return sentUpTo(time.Now().Add(time.Second)) })
}
