package service

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// ErrForced is in the error Run returns when its stop was forced
// (WithForce; with Signals, a second SIGINT or SIGTERM): it skipped what
// was left of SHUTDOWN_DRAIN_DELAY and of the shutdown's waits, so work
// in flight may have been cut off (nothing is lost: offsets not committed
// are consumed again, events not marked sent are published again).
var ErrForced = errors.New("stop forced by a second signal: the drain and the shutdown's waits were cut short")

// SignalError is the cause (context.Cause) of the context Signals returns
// once a signal has ended it.
type SignalError struct{ Signal os.Signal }

func (e *SignalError) Error() string { return e.Signal.String() + " signal received" }

// Signals returns a context that ends at the first SIGINT, SIGTERM or
// SIGHUP (its cause a *SignalError naming it): the graceful stop, for Run
// or a command. SIGHUP, whose default action ends a Go program at once,
// is what a closed terminal sends the programs it ran (shop dev's
// private PostgreSQL was then left running, and its record of the suite
// in place); a program started with SIGHUP ignored (nohup) keeps
// ignoring it. The second SIGINT or SIGTERM forces that stop (the
// context carries the force, WithForce): an operator pressing Ctrl-C
// again, or a supervisor signalling again, wants it over now, not after
// SHUTDOWN_DRAIN_DELAY and SHUTDOWN_TIMEOUT. A SIGHUP never forces: a
// closing terminal sends two at once (the shell passes one on, the
// kernel sends another). A third SIGINT or SIGTERM takes the signal's
// default action, ending the process at once. stop releases the
// signals, as signal.NotifyContext's does; call it once the program is
// done with the context.
func Signals(parent context.Context) (ctx context.Context, stop context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	// Never cancelled but by the second signal: a context of Background
	// that is not cancelled holds nothing.
	force, forceNow := context.WithCancelCause(context.Background())
	got := make(chan os.Signal, 4) // a burst, if it comes before the goroutine reads the first
	sigs := []os.Signal{os.Interrupt, syscall.SIGTERM}
	if !signal.Ignored(syscall.SIGHUP) {
		sigs = append(sigs, syscall.SIGHUP)
	}
	signal.Notify(got, sigs...)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-got:
			cancel(&SignalError{Signal: s})
		case <-done:
			return
		}
		for {
			select {
			case s := <-got:
				if s == syscall.SIGHUP {
					continue
				}
				signal.Reset(os.Interrupt, syscall.SIGTERM) // the third takes the default action
				forceNow(&SignalError{Signal: s})
				return
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	return WithForce(ctx, force), func() {
		once.Do(func() {
			signal.Stop(got)
			close(done)
			cancel(context.Canceled)
		})
	}
}

type forceKey struct{}

// WithForce returns a context that makes Run force its stop once force
// ends (after ctx has ended, which begins the stop): Run skips what is
// left of SHUTDOWN_DRAIN_DELAY and of the shutdown's waits, tells every
// stage to stop at once and gives them a second all told (what has not
// stopped by then is left running), then a second to the database pool,
// and returns an error wrapping ErrForced. Whoever runs services in-process
// (shop dev) passes it through each service's Run; Signals sets it.
func WithForce(ctx, force context.Context) context.Context {
	return context.WithValue(ctx, forceKey{}, force)
}

// Forced reports whether ctx's force (WithForce) has ended.
func Forced(ctx context.Context) bool {
	return forceOf(ctx).Err() != nil
}

// forceOf is ctx's force, or a context that never ends.
func forceOf(ctx context.Context) context.Context {
	if f, ok := ctx.Value(forceKey{}).(context.Context); ok {
		return f
	}
	return context.Background()
}
