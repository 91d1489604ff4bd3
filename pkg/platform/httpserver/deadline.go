package httpserver

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
)

// DeadlineError is the cause (context.Cause) of a request context ended
// by the server's RequestTimeout. It wraps context.DeadlineExceeded.
type DeadlineError struct {
	// Timeout is the RequestTimeout that passed.
	Timeout time.Duration
}

func (e *DeadlineError) Error() string {
	return fmt.Sprintf("the request did not finish within %s", e.Timeout)
}

// Unwrap returns context.DeadlineExceeded.
func (e *DeadlineError) Unwrap() error { return context.DeadlineExceeded }

// deadline is one request's RequestTimeout: a timer that cancels the
// request's context, which the handler may stop (LiftDeadline).
type deadline struct {
	at     time.Time
	timer  *time.Timer
	lifted atomic.Bool
}

// deadlineCtx is a request's context under its deadline. It reports the
// deadline while it stands, so that work sized to its caller's time (the
// order service's placement groups) sees it; context.WithTimeout cannot
// be used, as its deadline cannot be lifted.
type deadlineCtx struct {
	context.Context // a context.WithCancelCause of the request's
	d               *deadline
}

func (c deadlineCtx) Deadline() (time.Time, bool) {
	if c.d.lifted.Load() {
		return c.Context.Deadline()
	}
	if parent, ok := c.Context.Deadline(); ok && parent.Before(c.d.at) {
		return parent, true
	}
	return c.d.at, true
}

// withDeadline gives every request timeout to finish: then its context
// ends, with a *DeadlineError as its cause, and what the handler is
// waiting for (a query, a lock, a pool connection) gives up, so that the
// handler can still answer (WriteError: 503) before the server's
// WriteTimeout cuts the connection without one. A timer rather than
// context.WithTimeout, so that a handler that runs longer by design can
// lift it (LiftDeadline). It sits inside the access log and the metrics,
// whose request context ends only when the client goes.
func withDeadline(timeout time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithCancelCause(r.Context())
			defer cancel(nil)
			d := &deadline{at: time.Now().Add(timeout)}
			d.timer = time.AfterFunc(timeout, func() { cancel(&DeadlineError{Timeout: timeout}) })
			defer d.timer.Stop()
			if req := requestFrom(ctx); req != nil {
				req.deadline = d
			}
			next.ServeHTTP(w, r.WithContext(deadlineCtx{Context: ctx, d: d}))
		})
	}
}

// LiftDeadline takes the server's RequestTimeout off r, for a handler that
// runs longer by design and bounds its own lifetime (the order page's
// event stream, which lifts its write deadline too). Call it once the
// part the deadline should still cover (reading what the first answer
// needs) is done. It reports false when the deadline has passed already:
// r's context has ended, and the handler answers as for any other error.
func LiftDeadline(r *http.Request) bool {
	req := requestFrom(r.Context())
	if req == nil || req.deadline == nil {
		return true
	}
	d := req.deadline
	if d.lifted.Load() {
		return true
	}
	if !d.timer.Stop() {
		return false
	}
	d.lifted.Store(true)
	return true
}

// deadlinePassed returns the *DeadlineError that ended ctx, or nil.
func deadlinePassed(ctx context.Context) *DeadlineError {
	if ctx.Err() == nil {
		return nil
	}
	if de, ok := context.Cause(ctx).(*DeadlineError); ok {
		return de
	}
	return nil
}

// ClientGone reports whether r's client went away before it was answered
// (its connection closed, the request cancelled): nobody reads what the
// handler writes now. A request whose deadline passed, or that the
// server's shutdown ended, is not gone: it is answered 503.
func ClientGone(r *http.Request) bool {
	return clientGone(r.Context())
}

func clientGone(ctx context.Context) bool {
	return ctx.Err() != nil && endedByServer(ctx) == nil
}

// RetrySafe marks the routes it wraps as safe to send again whatever
// became of the first attempt, as GET, HEAD, PUT and DELETE are by their
// method (RFC 9110 9.2.2): a POST made idempotent by an Idempotency-Key,
// a cancellation that answers the same the second time. For such a
// request an error that leaves open whether its work was done (the
// request's deadline passed, the connection to the database lost
// mid-statement) is answered 503 with Retry-After (send it again), not
// 500.
func RetrySafe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if req := requestFrom(r.Context()); req != nil {
			req.retrySafe = true
		}
		next.ServeHTTP(w, r)
	})
}

// retrySafe reports whether r may be sent again whatever became of it:
// its method is idempotent, or its route is RetrySafe.
func retrySafe(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions, http.MethodTrace:
		return true
	}
	req := requestFrom(r.Context())
	return req != nil && req.retrySafe
}
