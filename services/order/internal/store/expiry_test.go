package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/shopflow/shopflow/services/order/internal/store"
)

// WatchFlow: the events flow since the first look that saw them flow,
// through looks close enough together (from any replica, a restart
// between them), and start again after a hold-up or a gap in the looking.
func TestWatchFlow(t *testing.T) {
	t.Parallel()
	pool := ordersPool(t)
	ctx := context.Background()
	t0 := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	const gap = 3 * time.Minute
	look := func(at time.Duration, flowing bool, want time.Duration, what string) {
		t.Helper()
		since, err := store.WatchFlow(ctx, pool, t0.Add(at), flowing, gap)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case want < 0 && !since.IsZero():
			t.Errorf("%s: flowing since %s, want not flowing", what, since)
		case want >= 0 && !since.Equal(t0.Add(want)):
			t.Errorf("%s: flowing since %s, want %s", what, since, t0.Add(want))
		}
	}
	look(0, true, 0, "the first look")
	look(time.Minute, true, 0, "a minute later")
	look(150*time.Second, true, 0, "a look after a restart 90 s long")
	look(120*time.Second, true, 0, "another replica's look, its clock 30 s behind")
	// 2m50s after the latest look (2m30s), within the gap; measured from
	// the replica's (2m00s) it would not be.
	look(320*time.Second, true, 0, "a look 2m50s after the latest")
	look(6*time.Minute, false, -1, "a hold-up")
	look(7*time.Minute, true, 7*time.Minute, "flowing again")
	look(11*time.Minute, true, 11*time.Minute, "after four minutes without a look (every replica down)")
	look(11*time.Minute+time.Second, true, 11*time.Minute, "a second later")
}
