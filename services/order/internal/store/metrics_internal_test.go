package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestStatusCounterWaitGivesUp: a caller behind a count in progress (the
// slow first one) gives up when its context ends instead of holding its
// scrape past the deadline.
func TestStatusCounterWaitGivesUp(t *testing.T) {
	c := NewStatusCounter(nil)
	c.busy <- struct{}{} // a count in progress
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := c.Counts(ctx, nil) // never reaches the database
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Counts behind a busy counter: %v, want the context's deadline", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Counts still waiting after its context ended")
	}
}
