package testenv

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"
)

// Serve runs run (a service's Run, given a callback to report its HTTP
// address through service.OnStarted) in the background and returns the
// address once the service is up, and stop, which cancels it and waits
// for Run to return; stop is also called when the test ends. The test
// fails if Run returns before starting, does not start within a minute,
// returns an error after the cancel, or takes over 30 s to return.
func Serve(t testing.TB, run func(ctx context.Context, started func(addr string)) error) (addr string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, func(a string) { addrc <- a }) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run after cancel = %v, want nil", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("Run did not return within 30 s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	select {
	case addr = <-addrc:
		return addr, stop
	case err := <-done:
		cancel()
		t.Fatalf("Run returned before starting: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("the service did not start within a minute")
	}
	return "", stop
}

// SyncBuffer is a log sink the service's goroutines may write to while
// the test reads it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
