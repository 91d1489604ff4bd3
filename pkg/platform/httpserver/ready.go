package httpserver

import (
	"context"
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

	report := make(map[string]string, len(s.checks))
	var failing []string
	for i, c := range s.checks {
		if results[i] != nil {
			report[c.Name] = results[i].Error()
			failing = append(failing, c.Name)
			continue
		}
		report[c.Name] = "ok"
	}
	if len(failing) > 0 {
		slices.Sort(failing)
		Logger(r.Context()).Warn("not ready", "checks", report)
		WriteProblem(w, r, Problem{
			Status:     http.StatusServiceUnavailable,
			Title:      "Not Ready",
			Detail:     "failing checks: " + strings.Join(failing, ", "),
			Extensions: map[string]any{"checks": report},
		})
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"status": "ready", "checks": report})
}

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
		return fmt.Errorf("no answer within %s", readyTimeout)
	}
}
