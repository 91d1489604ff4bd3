package service_test

import (
	"context"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/shopflow/shopflow/pkg/platform/service"
)

// TestSignalsHangup: SIGHUP (a closed terminal) begins the graceful stop
// and never forces it, however many come (a closing terminal sends two
// at once: forced, shop dev's stop skipped its services' shutdown); a
// second SIGINT then does. Not parallel: it signals its own process.
func TestSignalsHangup(t *testing.T) {
	ctx, stop := service.Signals(context.Background())
	defer stop()
	hangup := func() {
		t.Helper()
		if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	hangup()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("SIGHUP did not end the context")
	}
	if se, ok := context.Cause(ctx).(*service.SignalError); !ok || se.Signal != syscall.SIGHUP {
		t.Errorf("cause %v, want SIGHUP's SignalError", context.Cause(ctx))
	}
	// One at a time: the runtime delivers a signal that comes again
	// before the first is read only once.
	for i := range 2 {
		hangup()
		time.Sleep(200 * time.Millisecond) // what it would do, it would do by now
		if service.Forced(ctx) {
			t.Fatalf("SIGHUP %d forced the stop; want a graceful one", i+2)
		}
	}
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !service.Forced(ctx) {
		if time.Now().After(deadline) {
			t.Fatal("a SIGINT after the SIGHUP did not force the stop")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSignalsNohup: a program started with SIGHUP ignored (nohup) keeps
// ignoring it: Signals' Notify would otherwise have turned nohup's
// protection off, and a closed terminal stopped the program. Not
// parallel: it signals its own process.
func TestSignalsNohup(t *testing.T) {
	signal.Ignore(syscall.SIGHUP)
	defer signal.Reset(syscall.SIGHUP)
	ctx, stop := service.Signals(context.Background())
	defer stop()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// What the SIGHUP would do, it would do by now.
	time.Sleep(200 * time.Millisecond)
	if ctx.Err() != nil {
		t.Fatalf("SIGHUP under nohup ended the context: %v", context.Cause(ctx))
	}
}
