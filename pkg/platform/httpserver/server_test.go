package httpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

type order struct {
	CustomerID string `json:"customer_id"`
	Items      []struct {
		SKU      string `json:"sku"`
		Quantity int    `json:"quantity"`
	} `json:"items"`
}

// testRoutes are a miniature service.
func testRoutes(r chi.Router) {
	r.Use(func(next http.Handler) http.Handler { // a service's own middleware
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Service", "orders")
			next.ServeHTTP(w, r)
		})
	})
	r.Route("/v1/stock", func(r chi.Router) {
		r.Get("/{sku}", func(w http.ResponseWriter, r *http.Request) { WriteJSON(w, 200, chi.URLParam(r, "sku")) })
		r.Put("/{sku}", func(w http.ResponseWriter, r *http.Request) { WriteJSON(w, 200, chi.URLParam(r, "sku")) })
	})
	r.Get("/v1/orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"id": chi.URLParam(r, "id")})
	})
	r.Post("/v1/orders", func(w http.ResponseWriter, r *http.Request) {
		var o order
		if err := DecodeJSON(w, r, &o); err != nil {
			WriteError(w, r, err)
			return
		}
		WriteJSON(w, http.StatusCreated, o)
	})
	r.Get("/boom", func(http.ResponseWriter, *http.Request) { panic("kaboom") })
	r.Get("/fail", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, r, errors.New("pq: password authentication failed for user shop"))
	})
}

type fixture struct {
	srv  *Server
	url  string
	logs *testenv.SyncBuffer
}

func newFixture(t *testing.T, checks ...ReadyCheck) fixture {
	t.Helper()
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := New(Config{}, log, prometheus.NewRegistry(), checks, testRoutes)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return fixture{srv: s, url: ts.URL, logs: logs}
}

type response struct {
	status int
	header http.Header
	body   string
}

func (f fixture) do(t *testing.T, method, path, contentType string, body io.Reader, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, f.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: string(b)}
}

// problemOf decodes and sanity-checks a problem+json answer.
func problemOf(t *testing.T, res response) map[string]any {
	t.Helper()
	if ct := res.header.Get("Content-Type"); ct != ProblemContentType {
		t.Fatalf("Content-Type = %q, want %q; body %s", ct, ProblemContentType, res.body)
	}
	var p map[string]any
	if err := json.Unmarshal([]byte(res.body), &p); err != nil {
		t.Fatalf("problem body %q: %v", res.body, err)
	}
	if int(p["status"].(float64)) != res.status {
		t.Errorf("problem status %v != response status %d", p["status"], res.status)
	}
	if p["type"] != "about:blank" || p["title"] == "" || p["request_id"] != res.header.Get(RequestIDHeader) {
		t.Errorf("problem %v lacks type, title or the request id %q", p, res.header.Get(RequestIDHeader))
	}
	return p
}

func TestEndpoints(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		encoding    string // Content-Encoding
		body        string
		wantStatus  int
		wantBody    string // substring of the body
		wantProblem bool
		wantAllow   string
	}{
		{name: "healthz", method: "GET", path: "/healthz", wantStatus: 200, wantBody: `{"status":"ok"}`},
		{name: "route", method: "GET", path: "/v1/orders/o-1", wantStatus: 200, wantBody: `{"id":"o-1"}`},
		{name: "unknown route", method: "GET", path: "/nope", wantStatus: 404, wantProblem: true, wantBody: `"detail":"no route for GET /nope"`},
		{name: "unknown method", method: "DELETE", path: "/v1/orders", wantStatus: 405, wantProblem: true, wantAllow: "POST"},
		{name: "unknown method on a GET route", method: "PUT", path: "/healthz", wantStatus: 405, wantProblem: true, wantAllow: "GET, HEAD"},
		{name: "mounted route", method: "GET", path: "/v1/stock/SKU-1", wantStatus: 200, wantBody: `"SKU-1"`},
		{name: "unknown method on a mounted route", method: "PATCH", path: "/v1/stock/SKU-1", wantStatus: 405, wantProblem: true, wantAllow: "GET, HEAD, PUT"},
		{name: "unknown route under a mount", method: "GET", path: "/v1/stock/a/b", wantStatus: 404, wantProblem: true},
		// instance is a URI reference (RFC 9457): the path as sent, its
		// escapes kept, not decoded into a space and a slash.
		{name: "unknown route with escapes", method: "GET", path: "/no%20such%2Froute", wantStatus: 404, wantProblem: true},
		{name: "decoded", method: "POST", path: "/v1/orders", contentType: "application/json; charset=utf-8",
			body: `{"customer_id":"c","items":[{"sku":"S","quantity":2}]}`, wantStatus: 201, wantBody: `"quantity":2`},
		{name: "wrong content type", method: "POST", path: "/v1/orders", contentType: "text/plain",
			body: `{}`, wantStatus: 415, wantProblem: true, wantBody: `Content-Type must be application/json`},
		{name: "no content type", method: "POST", path: "/v1/orders", body: `{}`, wantStatus: 415, wantProblem: true},
		{name: "a charset other than UTF-8", method: "POST", path: "/v1/orders", contentType: "application/json;charset=latin1",
			body: "{\"customer_id\":\"Jos\xe9\"}", wantStatus: 415, wantProblem: true, wantBody: `charset \"latin1\" is not supported: JSON is UTF-8`},
		{name: "charset UTF-8 in capitals", method: "POST", path: "/v1/orders", contentType: "application/json; charset=UTF-8",
			body: `{"customer_id":"c"}`, wantStatus: 201},
		{name: "charset utf8, an alias", method: "POST", path: "/v1/orders", contentType: "application/json; charset=utf8",
			body: `{"customer_id":"c"}`, wantStatus: 201},
		{name: "charset US-ASCII, a subset", method: "POST", path: "/v1/orders", contentType: `application/json; charset="US-ASCII"`,
			body: `{"customer_id":"c"}`, wantStatus: 201},
		{name: "a byte-order mark", method: "POST", path: "/v1/orders", contentType: "application/json",
			body: "\ufeff{\"customer_id\":\"c\"}", wantStatus: 400, wantProblem: true, wantBody: `starts with a byte-order mark (U+FEFF)`},
		{name: "compressed body", method: "POST", path: "/v1/orders", contentType: "application/json", encoding: "gzip",
			body: "\x1f\x8b\x08\x00", wantStatus: 415, wantProblem: true, wantBody: `Content-Encoding \"gzip\" is not supported`},
		{name: "identity encoding", method: "POST", path: "/v1/orders", contentType: "application/json", encoding: "identity",
			body: `{"customer_id":"c"}`, wantStatus: 201},
		{name: "malformed JSON names the position", method: "POST", path: "/v1/orders", contentType: "application/json",
			body: "{\n  \"customer_id\": \"c\",\n  }", wantStatus: 400, wantProblem: true, wantBody: `malformed JSON at line 3, column 3 (offset 26)`},
		{name: "truncated JSON", method: "POST", path: "/v1/orders", contentType: "application/json",
			body: `{"customer_id":`, wantStatus: 400, wantProblem: true, wantBody: `ends early`},
		{name: "unknown field", method: "POST", path: "/v1/orders", contentType: "application/json",
			body: `{"customer_id":"c","price":1}`, wantStatus: 400, wantProblem: true,
			wantBody: `"errors":[{"field":"price","message":"unknown field"}]`},
		{name: "unknown field in an array's object", method: "POST", path: "/v1/orders", contentType: "application/json",
			body:       `{"items":[{"sku":"S","quantity":1},{"sku":"T","color":"red","Quantity":1,"size":"L"}],"coupon":"x"}`,
			wantStatus: 400, wantProblem: true,
			wantBody: `"errors":[{"field":"items.1.color","message":"unknown field"},{"field":"items.1.size","message":"unknown field"},{"field":"coupon","message":"unknown field"}]`},
		{name: "a byte that is not UTF-8", method: "POST", path: "/v1/orders", contentType: "application/json",
			body: "{\"customer_id\":\"c\",\"items\":[{\"sku\":\"S\xff\",\"quantity\":1}]}", wantStatus: 400, wantProblem: true,
			wantBody: `text that is not Unicode at line 1, column 38 (offset 37): a byte that is not UTF-8","instance":"/v1/orders","errors":[{"field":"items.0.sku"`},
		{name: "half a surrogate pair", method: "POST", path: "/v1/orders", contentType: "application/json",
			body: `{"customer_id":"Ada \ud800"}`, wantStatus: 400, wantProblem: true,
			wantBody: `(offset 20): \\ud800, half of a surrogate pair","instance":"/v1/orders","errors":[{"field":"customer_id"`},
		{name: "a lone low surrogate", method: "POST", path: "/v1/orders", contentType: "application/json",
			body: `{"customer_id":"\udc00\ud83d\ude00"}`, wantStatus: 400, wantProblem: true, wantBody: `\\udc00, half`},
		{name: "a surrogate pair, an escaped backslash and real UTF-8 are text", method: "POST", path: "/v1/orders",
			contentType: "application/json", body: `{"customer_id":"\ud83d\ude00 \\ud800 Łódź €"}`, wantStatus: 201, wantBody: `Łódź €`},
		{name: "wrong type names the field", method: "POST", path: "/v1/orders", contentType: "application/json",
			body: `{"items":[{"sku":"S","quantity":"two"}]}`, wantStatus: 400, wantProblem: true,
			wantBody: `"errors":[{"field":"items.0.quantity","message":"must be an integer, not string"}]`},
		{name: "wrong type names the array index", method: "POST", path: "/v1/orders", contentType: "application/json",
			body: `{"items":[{"sku":"S","quantity":1}, {"sku":"T","quantity":{"n":2}}]}`, wantStatus: 400, wantProblem: true,
			wantBody: `"errors":[{"field":"items.1.quantity","message":"must be an integer, not object"}]`},
		{name: "wrong type, then more", method: "POST", path: "/v1/orders", contentType: "application/json",
			body: `{"items":[{"sku":"S","quantity":"two"}]}]`, wantStatus: 400, wantProblem: true,
			wantBody: `"errors":[{"field":"items.0.quantity","message":"must be an integer, not string"}]`},
		{name: "repeated field", method: "POST", path: "/v1/orders", contentType: "application/json",
			body: `{"customer_id":"c","customer_id":"d"}`, wantStatus: 400, wantProblem: true,
			wantBody: `"errors":[{"field":"customer_id","message":"is given more than once"}]`},
		{name: "repeated field in an array's object", method: "POST", path: "/v1/orders", contentType: "application/json",
			body: `{"items":[{"sku":"S"},{"sku":"T","quantity":1,"sku":"U"}]}`, wantStatus: 400, wantProblem: true,
			wantBody: `"errors":[{"field":"items.1.sku","message":"is given more than once"}]`},
		{name: "repeated field in another case", method: "POST", path: "/v1/orders", contentType: "application/json",
			body: `{"customer_id":"c","Customer_ID":"d"}`, wantStatus: 400, wantProblem: true,
			wantBody: `"errors":[{"field":"Customer_ID","message":"is given more than once"}]`},
		{name: "null body", method: "POST", path: "/v1/orders", contentType: "application/json",
			body: ` null `, wantStatus: 400, wantProblem: true, wantBody: `request body must be an object, not null`},
		{name: "not an object", method: "POST", path: "/v1/orders", contentType: "application/json",
			body: `[1]`, wantStatus: 400, wantProblem: true, wantBody: `request body must be an object, not array`},
		{name: "trailing data", method: "POST", path: "/v1/orders", contentType: "application/json",
			body: `{"customer_id":"c"} {"customer_id":"d"}`, wantStatus: 400, wantProblem: true, wantBody: `single JSON value`},
		{name: "trailing garbage", method: "POST", path: "/v1/orders", contentType: "application/json",
			body: `{"customer_id":"c"} x`, wantStatus: 400, wantProblem: true, wantBody: `more follows at line 1, column 21 (offset 20)`},
		{name: "empty body", method: "POST", path: "/v1/orders", contentType: "application/json",
			wantStatus: 400, wantProblem: true, wantBody: `request body is empty`},
		{name: "2 MiB body", method: "POST", path: "/v1/orders", contentType: "application/json",
			body: `{"customer_id":"` + strings.Repeat("x", 2<<20) + `"}`, wantStatus: 413, wantProblem: true,
			wantBody: `request body exceeds 1048576 bytes`},
		{name: "internal error is not leaked", method: "GET", path: "/fail", wantStatus: 500, wantProblem: true,
			wantBody: `quote the request id`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			var header []string
			if tt.encoding != "" {
				header = []string{"Content-Encoding", tt.encoding}
			}
			res := f.do(t, tt.method, tt.path, tt.contentType, body, header...)
			if res.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", res.status, tt.wantStatus, res.body)
			}
			if !strings.Contains(res.body, tt.wantBody) {
				t.Errorf("body %s does not contain %s", res.body, tt.wantBody)
			}
			if tt.wantProblem {
				p := problemOf(t, res)
				if p["instance"] != tt.path {
					t.Errorf("instance = %v, want %s", p["instance"], tt.path)
				}
			}
			if tt.wantAllow != "" && res.header.Get("Allow") != tt.wantAllow {
				t.Errorf("Allow = %q, want %q", res.header.Get("Allow"), tt.wantAllow)
			}
			if strings.Contains(res.body, "password") {
				t.Errorf("body leaks internals: %s", res.body)
			}
		})
	}
	t.Cleanup(func() { // after the parallel subtests
		if !strings.Contains(f.logs.String(), "pq: password authentication failed") {
			t.Errorf("internal error was not logged:\n%s", f.logs.String())
		}
	})
}

// TestHeadWhereverGet: HEAD is answered like GET, without the body, on
// the platform's endpoints and a service's routes (RFC 9110 9.3.2); it
// was 405. Other methods stay 405.
func TestHeadWhereverGet(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, path := range []string{"/healthz", "/metrics", "/v1/orders/o-1", "/v1/stock/SKU-1"} {
		get := f.do(t, "GET", path, "", nil)
		head := f.do(t, "HEAD", path, "", nil)
		if head.status != get.status || head.body != "" || head.header.Get("Content-Type") != get.header.Get("Content-Type") {
			t.Errorf("HEAD %s = %d %q %q; GET = %d %q", path, head.status, head.header.Get("Content-Type"), head.body,
				get.status, get.header.Get("Content-Type"))
		}
	}
	if res := f.do(t, "DELETE", "/v1/orders/o-1", "", nil); res.status != http.StatusMethodNotAllowed {
		t.Errorf("DELETE = %d, want 405", res.status)
	}
}

func TestServiceMiddlewareScope(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if got := f.do(t, "GET", "/v1/orders/o-1", "", nil).header.Get("X-Service"); got != "orders" {
		t.Errorf("service route X-Service = %q, want orders", got)
	}
	if got := f.do(t, "GET", "/healthz", "", nil).header.Get("X-Service"); got != "" {
		t.Errorf("/healthz X-Service = %q, want none", got)
	}
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	ok := func(context.Context) error { return nil }
	down := func(context.Context) error {
		return errors.New("failed to connect to `user=shop_order database=shopflow`: 10.1.2.3:5432: connection refused")
	}
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) })
	hangs := func(context.Context) error { <-stuck; return nil } // ignores its context
	panics := func(context.Context) error { panic("check bug") }
	tests := []struct {
		name       string
		checks     []ReadyCheck
		wantStatus int
		wantChecks map[string]string
		wantDetail string
		inLogOnly  []string
		maxTime    time.Duration
	}{
		{name: "no checks", wantStatus: 200, wantChecks: map[string]string{}},
		{name: "all ok", checks: []ReadyCheck{{"postgres", ok}, {"kafka", ok}}, wantStatus: 200,
			wantChecks: map[string]string{"postgres": "ok", "kafka": "ok"}},
		{name: "one failing", checks: []ReadyCheck{{"postgres", ok}, {"kafka", down}}, wantStatus: 503,
			wantChecks: map[string]string{"postgres": "ok", "kafka": "failing"}, wantDetail: "failing checks: kafka (the service log says why)",
			inLogOnly: []string{"10.1.2.3:5432", "shop_order"}},
		{name: "a failure safe to show", checks: []ReadyCheck{{"postgres", ok}, {"kafka", func(context.Context) error {
			return fmt.Errorf("kafka 10.1.2.3:9092: %w", Public(errors.New("topics missing on the broker: shop.orders")))
		}}}, wantStatus: 503,
			wantChecks: map[string]string{"postgres": "ok", "kafka": "topics missing on the broker: shop.orders"},
			wantDetail: "failing checks: kafka (the service log says why)", inLogOnly: []string{"10.1.2.3:9092"}},
		{name: "hung and panicking checks", checks: []ReadyCheck{{"slow", hangs}, {"buggy", panics}, {"postgres", ok}}, wantStatus: 503,
			wantChecks: map[string]string{"slow": "no answer within 2s", "buggy": "failing", "postgres": "ok"},
			wantDetail: "failing checks: buggy, slow (the service log says why)", maxTime: 2 * readyTimeout,
			inLogOnly: []string{"check panicked: check bug"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, tt.checks...)
			start := time.Now()
			res := f.do(t, "GET", "/readyz", "", nil)
			if tt.maxTime > 0 && time.Since(start) > tt.maxTime {
				t.Errorf("readyz took %s, want under %s", time.Since(start), tt.maxTime)
			}
			if res.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", res.status, tt.wantStatus, res.body)
			}
			var body struct {
				Status any               `json:"status"` // "ready", or the problem's code
				Detail string            `json:"detail"`
				Checks map[string]string `json:"checks"`
			}
			if err := json.Unmarshal([]byte(res.body), &body); err != nil {
				t.Fatal(err)
			}
			if tt.wantStatus == 200 && body.Status != "ready" {
				t.Errorf("status member = %q, want ready", body.Status)
			}
			if tt.wantStatus != 200 {
				problemOf(t, res)
				if body.Detail != tt.wantDetail {
					t.Errorf("detail = %q, want %q", body.Detail, tt.wantDetail)
				}
			}
			if len(body.Checks) != len(tt.wantChecks) {
				t.Errorf("checks = %v, want %v", body.Checks, tt.wantChecks)
			}
			for k, v := range tt.wantChecks {
				if body.Checks[k] != v {
					t.Errorf("checks[%s] = %q, want %q", k, body.Checks[k], v)
				}
			}
			// A check's error names hosts and users: the log gets it,
			// the answer (served on the public port) does not.
			for _, secret := range tt.inLogOnly {
				if strings.Contains(res.body, secret) {
					t.Errorf("the answer shows %q: %s", secret, res.body)
				}
				if !strings.Contains(f.logs.String(), secret) {
					t.Errorf("the log does not say %q: %s", secret, f.logs.String())
				}
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.do(t, "GET", "/v1/orders/o-1", "", nil)
	f.do(t, "GET", "/v1/orders/o-2", "", nil)
	f.do(t, "GET", "/no/such/thing", "", nil)
	f.do(t, "DELETE", "/v1/orders/o-1", "", nil)
	f.do(t, "GET", "/boom", "", nil)
	f.do(t, "GET", "/v1/stock/SKU-1", "", nil)
	f.do(t, "GET", "/v1/stock/a/b", "", nil)
	f.do(t, "PATCH", "/v1/stock/SKU-1", "", nil)
	res := f.do(t, "GET", "/metrics", "", nil)
	if res.status != 200 {
		t.Fatalf("metrics status %d", res.status)
	}
	for _, want := range []string{
		`shop_http_request_duration_seconds_count{code="200",lifecycle="",method="GET",route="/v1/orders/{id}"} 2`,
		`shop_http_request_duration_seconds_count{code="404",lifecycle="",method="GET",route="unmatched"} 2`,
		`shop_http_request_duration_seconds_count{code="405",lifecycle="",method="DELETE",route="unmatched"} 1`,
		`shop_http_request_duration_seconds_count{code="405",lifecycle="",method="PATCH",route="unmatched"} 1`,
		`shop_http_request_duration_seconds_count{code="200",lifecycle="",method="GET",route="/v1/stock/{sku}"} 1`,
		`shop_http_request_duration_seconds_count{code="500",lifecycle="",method="GET",route="/boom"} 1`,
		`shop_http_requests_in_flight 1`, // the scrape itself
		`go_goroutines`,
		`process_cpu_seconds_total`,
	} {
		if !strings.Contains(res.body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(res.body, "o-1") || strings.Contains(res.body, "/no/such") || strings.Contains(res.body, "SKU-1") {
		t.Error("metrics carry raw paths")
	}
}

func TestNewTwiceOnOneRegistry(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	a := New(Config{}, nil, reg, nil, testRoutes)
	b := New(Config{}, nil, reg, nil, testRoutes)
	for _, s := range []*Server{a, b} {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	}
	rec := httptest.NewRecorder()
	b.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if want := `shop_http_request_duration_seconds_count{code="200",lifecycle="",method="GET",route="/healthz"} 2`; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("shared registry lacks %s", want)
	}
}

func TestPanicRecovered(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for range 2 {
		res := f.do(t, "GET", "/boom", "", nil)
		if res.status != 500 {
			t.Fatalf("status = %d, want 500", res.status)
		}
		problemOf(t, res)
		if strings.Contains(res.body, "kaboom") {
			t.Errorf("panic value leaked to the client: %s", res.body)
		}
	}
	if res := f.do(t, "GET", "/healthz", "", nil); res.status != 200 {
		t.Fatalf("after a panic /healthz = %d", res.status)
	}
	logs := f.logs.String()
	if !strings.Contains(logs, `"panic":"kaboom"`) || !strings.Contains(logs, "testRoutes") {
		t.Errorf("panic not logged with value and stack:\n%s", logs)
	}
}

// TestNoSniffEverywhere: every answer, whatever its type or status, says
// X-Content-Type-Options: nosniff.
func TestNoSniffEverywhere(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/nope"} {
		if res := f.do(t, "GET", path, "", nil); res.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s (%d): X-Content-Type-Options = %q, want nosniff", path, res.status, res.header.Get("X-Content-Type-Options"))
		}
	}
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	tests := []struct {
		name     string
		incoming string
		wantKept bool
	}{
		{name: "honoured", incoming: "req-123", wantKept: true},
		{name: "generated when absent"},
		{name: "replaced when unsafe", incoming: "bad id\twith spaces"},
		{name: "replaced when too long", incoming: strings.Repeat("a", 129)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var header []string
			if tt.incoming != "" {
				header = []string{RequestIDHeader, tt.incoming}
			}
			res := f.do(t, "GET", "/nope", "", nil, header...)
			got := res.header.Get(RequestIDHeader)
			if tt.wantKept && got != tt.incoming {
				t.Errorf("request id = %q, want %q", got, tt.incoming)
			}
			if !tt.wantKept && (got == "" || got == tt.incoming) {
				t.Errorf("request id = %q, want a generated one", got)
			}
			if p := problemOf(t, res); p["request_id"] != got {
				t.Errorf("problem request_id = %v, want %q", p["request_id"], got)
			}
			if !strings.Contains(f.logs.String(), `"request_id":"`+got+`"`) {
				t.Errorf("access log lacks request id %q", got)
			}
		})
	}
}

func TestAccessLogLevels(t *testing.T) {
	t.Parallel()
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := New(Config{}, log, nil, nil, testRoutes)
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/v1/orders/o-9"} {
		s.Handler().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", path, nil))
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 1 {
		t.Fatalf("got %d info lines, want only the API request:\n%s", len(lines), logs.String())
	}
	l := lines[0]
	if l["method"] != "GET" || l["route"] != "/v1/orders/{id}" || l["status"] != float64(200) ||
		l["request_id"] == "" || l["duration_ms"] == nil {
		t.Errorf("access log line %v", l)
	}
}

func TestProblemJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		p    Problem
		want string
	}{
		{name: "minimal", p: Problem{Type: "about:blank", Title: "Not Found", Status: 404},
			want: `{"type":"about:blank","title":"Not Found","status":404}`},
		{name: "extensions cannot override", p: Problem{Type: "about:blank", Title: "T", Status: 409,
			Extensions: map[string]any{"status": 200, "order_id": "o-1"}},
			want: `{"type":"about:blank","title":"T","status":409,"order_id":"o-1"}`},
		{name: "field errors", p: Problem{Type: "https://shopflow.dev/problems/validation", Title: "Invalid", Status: 422,
			Errors: []FieldError{{Field: "items", Message: "must not be empty"}}},
			want: `{"type":"https://shopflow.dev/problems/validation","title":"Invalid","status":422,"errors":[{"field":"items","message":"must not be empty"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := json.Marshal(tt.p)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("got  %s\nwant %s", b, tt.want)
			}
		})
	}
}

func TestWriteErrorWrappedProblem(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	err := errors.Join(errors.New("context"), &Problem{Status: http.StatusConflict, Detail: "in flight"})
	WriteError(rec, httptest.NewRequest("POST", "/v1/orders", nil), err)
	if rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), `"detail":"in flight"`) {
		t.Errorf("got %d %s", rec.Code, rec.Body.String())
	}
	if want := "409 Conflict: in flight"; (&Problem{Status: 409, Detail: "in flight"}).Error() != want {
		t.Errorf("Error() = %q, want %q", (&Problem{Status: 409, Detail: "in flight"}).Error(), want)
	}
}

// runServer runs s until cancel is called, returning once it listens; done
// has Run's result.
func runServer(t *testing.T, s *Server) (cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	select {
	case <-s.Listening():
	case err := <-ran:
		cancel()
		t.Fatalf("Run returned before listening: %v", err)
	}
	return cancel, ran
}

func TestRun(t *testing.T) {
	t.Parallel()
	s := New(Config{Addr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second}, nil, nil, nil, testRoutes)
	cancel, done := runServer(t, s)
	defer cancel()
	if strings.HasSuffix(s.Addr(), ":0") {
		t.Fatalf("Addr() = %q, want the real port", s.Addr())
	}
	res, err := http.Get("http://" + s.Addr() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("healthz = %d", res.StatusCode)
	}
	if err := s.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Run did not return within 3s of cancel")
	}
	if _, err := http.Get("http://" + s.Addr() + "/healthz"); err == nil {
		t.Error("still serving after shutdown")
	}
}

// TestRunServesAGivenListener: with Config.Listener, Run serves the
// listener it is given (bound by the caller) and closes it when it stops;
// Addr, which would be taken, is not listened on.
func TestRunServesAGivenListener(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{Addr: ln.Addr().String(), Listener: ln, ShutdownTimeout: 5 * time.Second}, nil, nil, nil, testRoutes)
	cancel, done := runServer(t, s)
	if s.Addr() != ln.Addr().String() {
		t.Errorf("Addr() = %q, want %q", s.Addr(), ln.Addr())
	}
	res, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel = %v", err)
	}
	if _, err := ln.Accept(); err == nil {
		t.Error("the listener is still open after Run returned")
	}
}

func TestRunListenError(t *testing.T) {
	t.Parallel()
	s := New(Config{Addr: "127.0.0.1:notaport"}, nil, nil, nil, nil)
	err := s.Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:notaport") {
		t.Fatalf("Run = %v, want a listen error naming the address", err)
	}
}

func TestRunShutdownWaitsForInFlight(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	release := make(chan struct{})
	s := New(Config{Addr: "127.0.0.1:0"}, nil, nil, nil, func(r chi.Router) {
		r.Get("/slow", func(w http.ResponseWriter, _ *http.Request) {
			close(started)
			<-release
			WriteJSON(w, 200, "done")
		})
	})
	cancel, done := runServer(t, s)
	defer cancel()
	got := make(chan string, 1)
	go func() {
		res, err := http.Get("http://" + s.Addr() + "/slow")
		if err != nil {
			got <- err.Error()
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		got <- string(b)
	}()
	<-started
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Run returned %v with a request in flight", err)
	case <-time.After(100 * time.Millisecond): // Run must still be waiting
	}
	close(release)
	if body := <-got; body != "\"done\"\n" {
		t.Errorf("in-flight request got %q", body)
	}
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}

// A request that failed because the database is unavailable is answered
// 503 with Retry-After, not 500: it was fine and can be sent again. It
// was "500 internal error" during a database outage.
func TestWriteErrorDatabaseUnavailable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("place order: %w", &pgconn.PgError{Code: "57P03", Message: "the database system is starting up"}), 503},
		{fmt.Errorf("place order: %w", &pgconn.PgError{Code: "23505", Message: "duplicate key"}), 500},
		// Not the database's, or its work may have been done: 500.
		{fmt.Errorf("reserve: %w", context.DeadlineExceeded), 500},
		{fmt.Errorf("call inventory: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}), 500},
	} {
		rec := httptest.NewRecorder()
		WriteError(rec, httptest.NewRequest("POST", "/v1/orders", nil), tc.err)
		body := rec.Body.String()
		if rec.Code != tc.want || (tc.want == 503 && (rec.Header().Get("Retry-After") != "5" ||
			!strings.Contains(body, "the database is unavailable") || strings.Contains(body, "starting up"))) {
			t.Errorf("%v: %d Retry-After %q %s, want %d (503: with Retry-After 5, without the cause)", tc.err, rec.Code,
				rec.Header().Get("Retry-After"), body, tc.want)
		}
	}
}
