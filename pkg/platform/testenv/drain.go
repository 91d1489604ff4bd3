package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/shopflow/shopflow/pkg/platform/inbox"
)

// Drain is a consumer benchmark's timed part: with b's timer stopped, it
// starts c, times it until c has processed n records, stops it and
// returns its counters. It fails b if c dead-letters a record, has not
// processed n records within 5 minutes, or fails to stop cleanly.
func Drain(b *testing.B, c *inbox.Consumer, n int64) inbox.Stats {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	b.StartTimer()
	go func() { done <- c.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Minute)
	for c.Stats().Processed < n {
		if st := c.Stats(); st.DeadLettered > 0 || time.Now().After(deadline) {
			b.Fatalf("consumer stuck: %+v, want %d processed", st, n)
		}
		time.Sleep(5 * time.Millisecond) // polling a counter; the deadline bounds it
	}
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return c.Stats()
}
