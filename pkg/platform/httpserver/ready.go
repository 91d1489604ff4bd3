package httpserver

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// readyTimeout bounds all of /readyz: a probe must answer before the
// orchestrator's own timeout.
const readyTimeout = 2 * time.Second

// readyz runs every check in parallel and answers 200 when all pass, 503
// problem+json naming the failures otherwise (and while shutting down).
func (s *Server) readyz(checks []ReadyCheck) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			markLifecycle(r, lifecycleStopping)
			notReady(w, r, "shutting down", nil)
			return
		}
		checkAll(w, r, checks)
	}
}

// startingReadyz answers 503 problem+json, in the form of a failing
// check's answer, saying what start-up is doing (starting's word) and the
// last error it met: "starting: waiting for PostgreSQL (last error:
// connection refused)", with the stage and the error as members too.
func (s *Server) startingReadyz(starting func() StartStatus) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			markLifecycle(r, lifecycleStopping)
			notReady(w, r, "shutting down", nil)
			return
		}
		markLifecycle(r, lifecycleStarting)
		st := starting()
		detail := "starting: " + st.Doing
		ext := map[string]any{"stage": st.Stage}
		if st.LastError != "" {
			detail += " (last error: " + st.LastError + ")"
			ext["last_error"] = st.LastError
		}
		notReady(w, r, detail, ext)
	}
}

// startingRoute answers a request for the service's own routes while it
// starts: 503 with Retry-After, as for a database that is down (the
// request was fine, nothing was done, and it can be sent again), not the
// 404 of a route unknown (the routes are not known yet) nor a connection
// left unanswered. A browser (PrefersHTML: the order service's pages)
// gets a page that loads again by itself (Refresh), as those pages do
// when their database is down, rather than JSON to read.
func startingRoute(starting func() StartStatus) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if req := requestFrom(r.Context()); req != nil {
			req.unmatched = true // no raw paths in the metrics
		}
		markLifecycle(r, lifecycleStarting)
		doing := starting().Doing
		w.Header().Set("Retry-After", strconv.Itoa(RetryAfterUnavailable))
		if PrefersHTML(r) {
			w.Header().Set("Refresh", strconv.Itoa(RetryAfterUnavailable))
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Starting</title></head>
<body><h1>Starting</h1><p>The service is starting (`+html.EscapeString(doing)+`).
This page loads again by itself in a few seconds.</p></body></html>
`)
			return
		}
		WriteProblem(w, r, Problem{Status: http.StatusServiceUnavailable,
			Detail: "the service is starting (" + doing + ") and did nothing with the request; " + sendAgain})
	}
}

// notReady is /readyz's 503.
func notReady(w http.ResponseWriter, r *http.Request, detail string, ext map[string]any) {
	WriteProblem(w, r, Problem{Status: http.StatusServiceUnavailable, Title: "Not Ready", Detail: detail, Extensions: ext})
}

func checkAll(w http.ResponseWriter, r *http.Request, checks []ReadyCheck) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()

	results := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() { results[i] = runCheck(ctx, c) })
	}
	wg.Wait()

	// The answer says which checks fail, and whether they fail or do
	// not answer, but not their errors: those name hosts, ports,
	// database and SASL users, and /readyz is served on the API's port,
	// to anyone who can reach it. The log gets the errors.
	report := make(map[string]string, len(checks))
	reasons := make(map[string]string, len(checks))
	var failing []string
	for i, c := range checks {
		var public *publicError
		switch err := results[i]; {
		case err == nil:
			report[c.Name] = "ok"
			continue
		case errors.Is(err, errNoAnswer):
			report[c.Name] = err.Error()
		case errors.As(err, &public):
			report[c.Name] = public.Error() // not what wraps it, which may name a host

		default:
			report[c.Name] = "failing"
		}
		reasons[c.Name] = results[i].Error()
		failing = append(failing, c.Name)
	}
	if len(failing) > 0 {
		slices.Sort(failing)
		Logger(r.Context()).Warn("not ready", "checks", reasons)
		notReady(w, r, "failing checks: "+strings.Join(failing, ", ")+" (the service log says why)", map[string]any{"checks": report})
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"status": "ready", "checks": report})
}

// Public marks a check's error as one the /readyz answer may show as it
// is (it names no host, port, user or secret: a missing topic, say),
// instead of "failing". Nil stays nil.
func Public(err error) error {
	if err == nil {
		return nil
	}
	return &publicError{err}
}

type publicError struct{ err error }

func (e *publicError) Error() string { return e.err.Error() }
func (e *publicError) Unwrap() error { return e.err }

// errNoAnswer is a check's verdict when it did not answer within
// readyTimeout.
var errNoAnswer = fmt.Errorf("no answer within %s", readyTimeout)

// runCheck returns the check's verdict, or a timeout when it does not
// answer in time (a check that ignores its context is left behind rather
// than holding the probe), or the panic it raised.
func runCheck(ctx context.Context, c ReadyCheck) error {
	if c.Check == nil {
		return nil
	}
	done := make(chan error, 1)
	go func() {
		defer func() {
			if rec := recover(); rec != nil {
				done <- fmt.Errorf("check panicked: %v", rec)
			}
		}()
		done <- c.Check(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return errNoAnswer
	}
}
