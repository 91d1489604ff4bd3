package httpserver

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// TestStarting: a server built with NewStarting answers probes and
// scrapes while its service starts, and its routes with 503 and
// Retry-After, never 404; Started then puts the service's routes and
// checks in place on the same server.
func TestStarting(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	status := StartStatus{Stage: "postgres", Doing: "waiting for PostgreSQL", LastError: "connection refused"}
	starting := func() StartStatus {
		mu.Lock()
		defer mu.Unlock()
		return status
	}
	logs := &testenv.SyncBuffer{}
	reg := prometheus.NewRegistry()
	s := NewStarting(Config{}, slog.New(slog.NewJSONHandler(logs, nil)), reg, starting)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	f := fixture{srv: s, url: ts.URL, logs: logs}

	if res := f.do(t, "GET", "/healthz", "", nil); res.status != http.StatusOK {
		t.Errorf("GET /healthz while starting = %d %s, want 200", res.status, res.body)
	}
	res := f.do(t, "GET", "/readyz", "", nil)
	if res.status != http.StatusServiceUnavailable {
		t.Fatalf("GET /readyz while starting = %d %s, want 503", res.status, res.body)
	}
	p := problemOf(t, res)
	if p["title"] != "Not Ready" || p["detail"] != "starting: waiting for PostgreSQL (last error: connection refused)" ||
		p["stage"] != "postgres" || p["last_error"] != "connection refused" {
		t.Errorf("GET /readyz while starting = %s", res.body)
	}
	mu.Lock()
	status = StartStatus{Stage: "migrations", Doing: "migrating the schema"}
	mu.Unlock()
	res = f.do(t, "GET", "/readyz", "", nil)
	if p := problemOf(t, res); p["detail"] != "starting: migrating the schema" || p["stage"] != "migrations" || p["last_error"] != nil {
		t.Errorf("GET /readyz while migrating = %s, want no last_error", res.body)
	}

	// Routes the service will have, and one it will not: all 503 until
	// the routes are known.
	for _, r := range [][2]string{{"GET", "/v1/orders/o-1"}, {"POST", "/v1/orders"}, {"DELETE", "/nowhere"}} {
		res := f.do(t, r[0], r[1], "application/json", strings.NewReader(`{}`))
		if res.status != http.StatusServiceUnavailable || res.header.Get("Retry-After") != "5" {
			t.Errorf("%s %s while starting = %d (Retry-After %q) %s, want 503 with Retry-After 5",
				r[0], r[1], res.status, res.header.Get("Retry-After"), res.body)
			continue
		}
		if p := problemOf(t, res); !strings.Contains(p["detail"].(string), "starting (migrating the schema)") {
			t.Errorf("%s %s while starting: detail %q does not say what start-up does", r[0], r[1], p["detail"])
		}
	}
	// A browser's navigation: a page that loads again by itself.
	page := f.do(t, "GET", "/orders/o-1", "", nil, "Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	if page.status != http.StatusServiceUnavailable || !strings.HasPrefix(page.header.Get("Content-Type"), "text/html") ||
		page.header.Get("Refresh") != "5" || page.header.Get("Retry-After") != "5" || !strings.Contains(page.body, "migrating the schema") {
		t.Errorf("a browser's GET /orders/o-1 while starting = %d %v %s, want 503 text/html with Refresh and Retry-After 5",
			page.status, page.header, page.body)
	}
	if res := f.do(t, "POST", "/healthz", "", nil); res.status != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz while starting = %d, want 405", res.status)
	}

	s.Started([]ReadyCheck{{Name: "postgres", Check: func(context.Context) error { return nil }}}, testRoutes)
	if res := f.do(t, "GET", "/readyz", "", nil); res.status != http.StatusOK || !strings.Contains(res.body, `"postgres":"ok"`) {
		t.Errorf("GET /readyz once started = %d %s, want 200 with the checks", res.status, res.body)
	}
	if res := f.do(t, "GET", "/v1/orders/o-1", "", nil); res.status != http.StatusOK || res.header.Get("X-Service") != "orders" {
		t.Errorf("GET /v1/orders/o-1 once started = %d %s, want the route's 200", res.status, res.body)
	}
	if res := f.do(t, "DELETE", "/nowhere", "", nil); res.status != http.StatusNotFound {
		t.Errorf("DELETE /nowhere once started = %d, want 404", res.status)
	}

	// One set of metrics across the swap; no raw path as a route label.
	// The start-up's 503s, /readyz's included, say so (lifecycle), so
	// that an alert on server errors can leave a restart's out; the
	// answers once started do not.
	res = f.do(t, "GET", "/metrics", "", nil)
	for _, want := range []string{
		`shop_http_request_duration_seconds_count{code="503",lifecycle="starting",method="GET",route="unmatched"} 2`,
		`shop_http_request_duration_seconds_count{code="503",lifecycle="starting",method="POST",route="unmatched"} 1`,
		`shop_http_request_duration_seconds_count{code="503",lifecycle="starting",method="DELETE",route="unmatched"} 1`,
		`shop_http_request_duration_seconds_count{code="503",lifecycle="starting",method="GET",route="/readyz"} 2`,
		`shop_http_request_duration_seconds_count{code="200",lifecycle="",method="GET",route="/readyz"} 1`,
		`shop_http_request_duration_seconds_count{code="200",lifecycle="",method="GET",route="/v1/orders/{id}"} 1`,
		`shop_http_request_duration_seconds_count{code="404",lifecycle="",method="DELETE",route="unmatched"} 1`,
		"go_goroutines ",
	} {
		if !strings.Contains(res.body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(res.body, "/nowhere") || strings.Contains(res.body, "o-1") {
		t.Errorf("/metrics has a raw path as a label:\n%s", res.body)
	}
}
