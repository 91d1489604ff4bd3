package httpserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// readyTimeout bounds all of /readyz: a probe must answer before the
// orchestrator's own timeout.
const readyTimeout = 2 * time.Second

// readyz runs every check in parallel and answers 200 when all pass, 503
// problem+json naming the failures otherwise (and while shutting down).
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		WriteProblem(w, r, Problem{Status: http.StatusServiceUnavailable, Title: "Not Ready", Detail: "shutting down"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()

	results := make([]error, len(s.checks))
	var wg sync.WaitGroup
	for i, c := range s.checks {
		wg.Go(func() { results[i] = runCheck(ctx, c) })
	}
	wg.Wait()

	// The answer says which checks fail, and whether they fail or do
	// not answer, but not their errors: those name hosts, ports,
	// database and SASL users, and /readyz is served on the API's port,
	// to anyone who can reach it. The log gets the errors.
	report := make(map[string]string, len(s.checks))
	reasons := make(map[string]string, len(s.checks))
	var failing []string
	for i, c := range s.checks {
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
		WriteProblem(w, r, Problem{
			Status:     http.StatusServiceUnavailable,
			Title:      "Not Ready",
			Detail:     "failing checks: " + strings.Join(failing, ", ") + " (the service log says why)",
			Extensions: map[string]any{"checks": report},
		})
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
