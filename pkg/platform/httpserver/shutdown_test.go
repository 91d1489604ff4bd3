package httpserver

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// TestShutdownEndsTheRequestsStillRunning: when HTTP's share of the
// shutdown runs out, the requests still running are ended rather than
// cut: a handler waiting on a locked table answers 503 with Retry-After
// ("shutting down", send it again), the work it detached from its
// request (Detach, as the order service's placement batch) ends too, and
// only a handler that ignores its context loses its connection without
// an answer. The log says so at WARN, and Run returns nil within its
// ShutdownTimeout. The server used to close every connection at once,
// so the client of a placement waiting on the database got no answer,
// and the placement's batch ran on to its own deadline, 25 s, holding
// the process.
func TestShutdownEndsTheRequestsStillRunning(t *testing.T) {
	t.Parallel()
	db := newStockDB(t)
	db.lock()
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	detached := make(chan error, 1)
	stuck, unblock := make(chan struct{}), make(chan struct{})
	defer close(unblock)
	const timeout = 2 * time.Second
	reg := prometheus.NewRegistry()
	s := New(Config{Addr: "127.0.0.1:0", ShutdownTimeout: timeout}, log, reg, nil, func(r chi.Router) {
		r.With(RetrySafe).Post("/v1/hold", func(w http.ResponseWriter, r *http.Request) {
			d, release := Detach(r.Context())
			go func() { // work for others besides this request, as a placement batch is
				defer release()
				_, err := db.pool.Exec(d, `SELECT count(*) FROM stock`)
				if err != nil {
					err = context.Cause(d)
				}
				detached <- err
			}()
			db.count(w, r)
		})
		r.Get("/v1/stuck", func(http.ResponseWriter, *http.Request) {
			close(stuck)
			<-unblock // ignores its context
		})
	})
	cancel, done := runServer(t, s)
	defer cancel()
	base := "http://" + s.Addr()

	type answer struct {
		res  *http.Response
		body string
		err  error
	}
	ask := func(method, path string) <-chan answer {
		ch := make(chan answer, 1)
		go func() {
			req, _ := http.NewRequest(method, base+path, nil)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				ch <- answer{err: err}
				return
			}
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			ch <- answer{res: res, body: string(b), err: err}
		}()
		return ch
	}
	hold := ask("POST", "/v1/hold")
	seen := map[int]bool{}
	db.waiter(seen) // the request's statement and the detached one
	db.waiter(seen)
	lost := ask("GET", "/v1/stuck")
	<-stuck

	start := time.Now()
	cancel()
	select {
	case err := <-done:
		took := time.Since(start)
		t.Logf("Run returned after %s", took.Round(time.Millisecond))
		if err != nil {
			t.Errorf("Run = %v, want nil: ending the requests still running is the shutdown's bound at work", err)
		}
	case <-time.After(timeout + 10*time.Second):
		t.Fatalf("Run still running %s after the stop, with ShutdownTimeout %s", timeout+10*time.Second, timeout)
	}

	a := <-hold
	if a.err != nil {
		t.Fatalf("the request waiting on the lock got no answer: %v; want 503", a.err)
	}
	var p map[string]any
	_ = json.Unmarshal([]byte(a.body), &p)
	if a.res.StatusCode != http.StatusServiceUnavailable || a.res.Header.Get("Retry-After") != "5" ||
		!strings.Contains(p["detail"].(string), "shutting down") {
		t.Errorf("the request waiting on the lock = %d, Retry-After %q: %s; want 503 with Retry-After 5 saying the service is shutting down",
			a.res.StatusCode, a.res.Header.Get("Retry-After"), a.body)
	}
	select {
	case err := <-detached:
		if _, ok := errors.AsType[*ShutdownError](err); !ok {
			t.Errorf("the detached work ended with %v, want a *ShutdownError", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the detached work still running 5 s after Run returned")
	}
	if a := <-lost; a.err == nil {
		t.Errorf("the handler that ignores its context answered %d %s; want its connection closed", a.res.StatusCode, a.body)
	}

	var warned bool
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["level"] == "WARN" && strings.HasPrefix(m["msg"].(string), "shutdown: requests still running") {
			warned = m["requests"] == float64(2) && m["answered"] == float64(1) && m["cut_unanswered"] == float64(1)
		}
		if m["level"] == "ERROR" {
			t.Errorf("logged at ERROR: %s", l)
		}
	}
	if !warned {
		t.Errorf("no WARN naming 2 requests ended, 1 answered, 1 cut:\n%s", logs.String())
	}
	// The ended request's 503 is the shutdown's (lifecycle), not a
	// server error for the HTTP-errors alert to count.
	if want := `shop_http_request_duration_seconds_count{code="503",lifecycle="stopping",method="POST",route="/v1/hold"} 1`; !strings.Contains(scrape(t, reg), want) {
		t.Errorf("metrics lack %s:\n%s", want, scrape(t, reg))
	}
}

// TestDrainingReadyzIsTheLifecycles: /readyz's 503 while the server
// drains is labelled lifecycle="stopping" in the metrics, as the
// start-up's are "starting"; a failing check's 503, and the routes'
// answers meanwhile, are not.
func TestDrainingReadyzIsTheLifecycles(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	failing := ReadyCheck{Name: "postgres", Check: func(context.Context) error { return errors.New("down") }}
	s := New(Config{}, nil, reg, []ReadyCheck{failing}, testRoutes)
	f := fixture{srv: s}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	f.url = ts.URL
	if res := f.do(t, "GET", "/readyz", "", nil); res.status != http.StatusServiceUnavailable {
		t.Fatalf("GET /readyz with a failing check = %d, want 503", res.status)
	}
	s.Drain()
	if res := f.do(t, "GET", "/readyz", "", nil); res.status != http.StatusServiceUnavailable || !strings.Contains(res.body, "shutting down") {
		t.Fatalf("GET /readyz while draining = %d %s, want 503 shutting down", res.status, res.body)
	}
	if res := f.do(t, "GET", "/v1/orders/o-1", "", nil); res.status != http.StatusOK {
		t.Fatalf("GET /v1/orders/o-1 while draining = %d, want 200", res.status)
	}
	metrics := scrape(t, reg)
	for _, want := range []string{
		`shop_http_request_duration_seconds_count{code="503",lifecycle="",method="GET",route="/readyz"} 1`,
		`shop_http_request_duration_seconds_count{code="503",lifecycle="stopping",method="GET",route="/readyz"} 1`,
		`shop_http_request_duration_seconds_count{code="200",lifecycle="",method="GET",route="/v1/orders/{id}"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s:\n%s", want, metrics)
		}
	}
}

// scrape renders reg's request counts as GET /metrics would.
func scrape(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	var counts []string
	for l := range strings.Lines(rec.Body.String()) {
		if strings.HasPrefix(l, "shop_http_request_duration_seconds_count") {
			counts = append(counts, l)
		}
	}
	return strings.Join(counts, "")
}
