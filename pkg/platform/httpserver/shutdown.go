package httpserver

import (
	"context"
	"fmt"
	"time"
)

// ShutdownError is the cause (context.Cause) of a request context the
// server's graceful shutdown ended: the request was still running when
// the shutdown's time for requests ran out (Config.ShutdownTimeout, less
// a moment left to answer). It wraps context.Canceled. WriteError answers
// such a request as one whose deadline passed: 503 with Retry-After where
// the request may be sent again.
type ShutdownError struct {
	// After is how long the shutdown waited for the requests.
	After time.Duration
}

func (e *ShutdownError) Error() string {
	return fmt.Sprintf("the service is shutting down: the request was still running %s after the shutdown began", e.After)
}

// Unwrap returns context.Canceled.
func (e *ShutdownError) Unwrap() error { return context.Canceled }

// endAnswerTime is the part of the shutdown's time kept, at its end, for
// the requests it ends to answer (at most a quarter of it): a handler
// waiting on the database gives up at once and answers 503, which its
// client can act on, rather than losing its connection without an answer.
const endAnswerTime = time.Second

type serverKey struct{}

// serverOf is the server ctx's request came through, or nil (a handler
// called from a test without one).
func serverOf(ctx context.Context) *Server {
	s, _ := ctx.Value(serverKey{}).(*Server)
	return s
}

// Detach returns a context with ctx's values that the end of ctx's
// request does not end (its client going away, its deadline), for work
// that must outlive the request: the order service's placement batch,
// stored for every request of its group, not only its leader's. The
// server's shutdown still ends it, as it ends the requests it gives up
// on (the cause a *ShutdownError), so that such work never holds a
// stopping service past its SHUTDOWN_TIMEOUT: a placement batch waiting
// on a lock held the process 22 s beyond it. Call release once the work
// is done. Outside a request served by Run it is context.WithoutCancel.
func Detach(ctx context.Context) (detached context.Context, release context.CancelFunc) {
	d, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	s := serverOf(ctx)
	if s == nil {
		return d, func() { cancel(nil) }
	}
	stop := context.AfterFunc(s.base, func() { cancel(context.Cause(s.base)) })
	return d, func() {
		stop()
		cancel(nil)
	}
}

// Stopping returns a channel that is closed when the server serving ctx's
// request begins its graceful shutdown (it stops taking connections), for
// a handler that runs until it is told to end (an event stream): the
// shutdown waits for handlers, and such a one would hold it to its
// deadline. Outside a request served by Run it is nil, which never
// closes.
func Stopping(ctx context.Context) <-chan struct{} {
	if s := serverOf(ctx); s != nil {
		return s.stopping
	}
	return nil
}

// endedByServer returns what ended ctx if the server did, its request
// deadline (*DeadlineError) or its shutdown (*ShutdownError), or nil
// (ctx has not ended, or its client went away).
func endedByServer(ctx context.Context) error {
	if ctx.Err() == nil {
		return nil
	}
	switch err := context.Cause(ctx).(type) {
	case *DeadlineError:
		return err
	case *ShutdownError:
		return err
	}
	return nil
}
