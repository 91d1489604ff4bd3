package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopflow/shopflow/pkg/platform/httpserver"
	"github.com/shopflow/shopflow/services/inventory/internal/stock"
)

// fake is an in-memory Stocker with the store's rules.
type fake struct{ levels map[string]stock.Level }

func (f *fake) Stock(_ context.Context, sku string) (stock.Level, error) {
	l, ok := f.levels[sku]
	if !ok {
		return stock.Level{}, fmt.Errorf("sku %s: %w", sku, stock.ErrNotFound)
	}
	return l, nil
}

func (f *fake) SetOnHand(_ context.Context, sku string, n int64, pre stock.Precondition) (stock.Level, bool, error) {
	l, found := f.levels[sku]
	if err := pre.Check(sku, l, found); err != nil {
		return l, false, err
	}
	if err := stock.CheckOnHand(l, n); err != nil {
		return l, false, err
	}
	if found && l.OnHand == n {
		return l, false, nil
	}
	l.SKU, l.OnHand, l.UpdatedAt = sku, n, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	l.Version++
	f.levels[sku] = l
	return l, !found, nil
}

func server(t *testing.T, token string) *httptest.Server {
	t.Helper()
	f := &fake{levels: map[string]stock.Level{"SKU-0001": {SKU: "SKU-0001", OnHand: 10, Reserved: 4, Version: 41}}}
	h := httpserver.New(httpserver.Config{}, nil, prometheus.NewRegistry(), nil, New(f, token).Routes).Handler()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func TestEndpoints(t *testing.T) {
	t.Parallel()
	srv := server(t, "s3cret")
	const auth = "Bearer s3cret"
	for _, tc := range []struct {
		name, method, path, auth, body string
		status                         int
		field                          string // the field a problem must name
		want                           map[string]any
	}{
		{"get", "GET", "/v1/stock/SKU-0001", "", "", 200, "",
			map[string]any{"sku": "SKU-0001", "on_hand": 10.0, "reserved": 4.0, "available": 6.0}},
		{"get unknown", "GET", "/v1/stock/SKU-404", "", "", 404, "", nil},
		{"get bad sku", "GET", "/v1/stock/sku-lower", "", "", 400, "sku", nil},
		{"get escaped sku", "GET", "/v1/stock/SKU%2D0001", "", "", 200, "", map[string]any{"sku": "SKU-0001"}},
		{"put without token", "PUT", "/v1/stock/SKU-0002", "", `{"on_hand":5}`, 401, "", nil},
		{"put wrong token", "PUT", "/v1/stock/SKU-0002", "Bearer nope", `{"on_hand":5}`, 401, "", nil},
		{"put token prefix", "PUT", "/v1/stock/SKU-0002", "Bearer s3cre", `{"on_hand":5}`, 401, "", nil},
		{"put basic scheme", "PUT", "/v1/stock/SKU-0002", "Basic s3cret", `{"on_hand":5}`, 401, "", nil},
		{"put creates", "PUT", "/v1/stock/SKU-0002", auth, `{"on_hand":5}`, 201, "",
			map[string]any{"sku": "SKU-0002", "on_hand": 5.0, "reserved": 0.0, "available": 5.0}},
		{"put lower-case scheme", "PUT", "/v1/stock/SKU-0002", "bearer s3cret", `{"on_hand":6}`, 200, "", nil},
		{"put zero", "PUT", "/v1/stock/SKU-0003", auth, `{"on_hand":0}`, 201, "", map[string]any{"available": 0.0}},
		{"put max", "PUT", "/v1/stock/SKU-0003", auth, `{"on_hand":1000000000}`, 200, "", nil},
		{"put below reserved", "PUT", "/v1/stock/SKU-0001", auth, `{"on_hand":3}`, 409, "on_hand", nil},
		{"put bad sku", "PUT", "/v1/stock/-SKU", auth, `{"on_hand":1}`, 400, "sku", nil},
		{"put missing on_hand", "PUT", "/v1/stock/SKU-0002", auth, `{}`, 400, "on_hand", nil},
		{"put null on_hand", "PUT", "/v1/stock/SKU-0002", auth, `{"on_hand":null}`, 400, "on_hand", nil},
		{"put negative", "PUT", "/v1/stock/SKU-0002", auth, `{"on_hand":-1}`, 400, "on_hand", nil},
		{"put too many", "PUT", "/v1/stock/SKU-0002", auth, `{"on_hand":1000000001}`, 400, "on_hand", nil},
		{"put fraction", "PUT", "/v1/stock/SKU-0002", auth, `{"on_hand":1.5}`, 400, "on_hand", nil},
		{"put string", "PUT", "/v1/stock/SKU-0002", auth, `{"on_hand":"5"}`, 400, "on_hand", nil},
		{"put unknown field", "PUT", "/v1/stock/SKU-0002", auth, `{"on_hand":5,"reserved":1}`, 400, "reserved", nil},
		{"put empty body", "PUT", "/v1/stock/SKU-0002", auth, ``, 400, "", nil},
		{"put malformed", "PUT", "/v1/stock/SKU-0002", auth, `{"on_hand":`, 400, "", nil},
		{"post not allowed", "POST", "/v1/stock/SKU-0001", auth, `{}`, 405, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var header []string
			if tc.auth != "" {
				header = []string{"Authorization", tc.auth}
			}
			res, body := call(t, srv, tc.method, tc.path, tc.body, header...)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %v", res.StatusCode, tc.status, body)
			}
			if tc.status >= 400 {
				if ct := res.Header.Get("Content-Type"); ct != httpserver.ProblemContentType {
					t.Errorf("Content-Type %q, want problem+json", ct)
				}
				if tc.status == 401 && res.Header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
				if tc.field != "" && !namesField(body, tc.field) {
					t.Errorf("problem does not name field %q: %v", tc.field, body)
				}
				return
			}
			for k, v := range tc.want {
				if body[k] != v {
					t.Errorf("%s = %v, want %v (%v)", k, body[k], v, body)
				}
			}
			if _, ok := body["updated_at"].(string); !ok {
				t.Errorf("no updated_at: %v", body)
			}
		})
	}
}

// call sends a request to srv with body (JSON, when there is one or the
// method is PUT) and the header name/value pairs, and returns the answer
// with its JSON body.
func call(t *testing.T, srv *httptest.Server, method, path, body string, header ...string) (*http.Response, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if body != "" || method == "PUT" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(res.Body).Decode(&m); err != nil {
		t.Fatalf("body is not JSON: %v", err)
	}
	return res, m
}

func namesField(problem map[string]any, field string) bool {
	errs, _ := problem["errors"].([]any)
	for _, e := range errs {
		if m, _ := e.(map[string]any); m["field"] == field {
			return true
		}
	}
	return false
}

func TestAdminDisabledWithoutToken(t *testing.T) {
	t.Parallel()
	srv := server(t, "")
	for _, auth := range []string{"", "Bearer ", "Bearer anything"} {
		req, _ := http.NewRequest("PUT", srv.URL+"/v1/stock/SKU-0001", strings.NewReader(`{"on_hand":5}`))
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		_ = json.NewDecoder(res.Body).Decode(&body)
		res.Body.Close()
		if res.StatusCode != http.StatusForbidden || res.Header.Get("Content-Type") != httpserver.ProblemContentType ||
			!strings.Contains(fmt.Sprint(body["detail"]), "ADMIN_TOKEN is not set") {
			t.Errorf("auth %q: %d %v, want 403 problem saying ADMIN_TOKEN is not set", auth, res.StatusCode, body)
		}
	}
	// Reading stays open.
	res, err := http.Get(srv.URL + "/v1/stock/SKU-0001")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("GET = %d, want 200", res.StatusCode)
	}
}

// TestConditionalPut: GET gives the level's ETag (a successful PUT does
// not: RFC 9110 9.3.4); PUT honours If-Match and If-None-Match (412
// problem+json with the current ETag when they fail, nothing changed) and
// refuses malformed ones (400 naming the header).
func TestConditionalPut(t *testing.T) {
	srv := server(t, "s3cret")
	do := func(method, sku, body string, header ...string) (*http.Response, map[string]any) {
		t.Helper()
		return call(t, srv, method, "/v1/stock/"+sku, body, append([]string{"Authorization", "Bearer s3cret"}, header...)...)
	}
	if res, _ := do("GET", "SKU-0001", ""); res.Header.Get("ETag") != `"41"` {
		t.Fatalf(`GET ETag %q, want "41"`, res.Header.Get("ETag"))
	}
	for _, tc := range []struct {
		name    string
		sku     string
		body    string
		header  []string
		status  int
		etag    string
		onHand  float64
		problem string // a field the 400 names
	}{
		{"stale If-Match", "SKU-0001", `{"on_hand":12}`, []string{"If-Match", `"40"`}, 412, `"41"`, 0, ""},
		{"weak If-Match never matches", "SKU-0001", `{"on_hand":12}`, []string{"If-Match", `W/"41"`}, 412, `"41"`, 0, ""},
		{"current in a list", "SKU-0001", `{"on_hand":12}`, []string{"If-Match", `"7", "41"`}, 200, "", 12, ""},
		{"list over two lines", "SKU-0001", `{"on_hand":13}`, []string{"If-Match", `"7"`, "If-Match", `"42"`}, 200, "", 13, ""},
		{"foreign tag", "SKU-0001", `{"on_hand":14}`, []string{"If-Match", `"xyzzy"`}, 412, `"43"`, 0, ""},
		{"leading zero", "SKU-0001", `{"on_hand":14}`, []string{"If-Match", `"043"`}, 412, `"43"`, 0, ""},
		{"If-Match * on a missing SKU", "SKU-0009", `{"on_hand":1}`, []string{"If-Match", "*"}, 412, "", 0, ""},
		{"If-None-Match * on a new SKU", "SKU-0009", `{"on_hand":1}`, []string{"If-None-Match", "*"}, 201, "", 1, ""},
		{"If-None-Match * on an existing SKU", "SKU-0009", `{"on_hand":2}`, []string{"If-None-Match", "*"}, 412, `"1"`, 0, ""},
		{"If-None-Match weak current", "SKU-0009", `{"on_hand":2}`, []string{"If-None-Match", `W/"1"`}, 412, `"1"`, 0, ""},
		{"If-None-Match other", "SKU-0009", `{"on_hand":2}`, []string{"If-None-Match", `"5"`}, 200, "", 2, ""},
		{"unquoted", "SKU-0001", `{"on_hand":15}`, []string{"If-Match", `43`}, 400, "", 0, "If-Match"},
		{"unclosed", "SKU-0001", `{"on_hand":15}`, []string{"If-Match", `"43`}, 400, "", 0, "If-Match"},
		{"no comma", "SKU-0001", `{"on_hand":15}`, []string{"If-None-Match", `"1" "2"`}, 400, "", 0, "If-None-Match"},
		{"empty list", "SKU-0001", `{"on_hand":15}`, []string{"If-Match", ` , `}, 400, "", 0, "If-Match"},
	} {
		res, body := do("PUT", tc.sku, tc.body, tc.header...)
		if res.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d: %v", tc.name, res.StatusCode, tc.status, body)
			continue
		}
		if got := res.Header.Get("ETag"); got != tc.etag {
			t.Errorf("%s: ETag %q, want %q", tc.name, got, tc.etag)
		}
		if tc.status >= 400 {
			if ct := res.Header.Get("Content-Type"); ct != httpserver.ProblemContentType {
				t.Errorf("%s: Content-Type %q, want problem+json", tc.name, ct)
			}
			if tc.problem != "" && !namesField(body, tc.problem) {
				t.Errorf("%s: problem does not name %s: %v", tc.name, tc.problem, body)
			}
			continue
		}
		if body["on_hand"] != tc.onHand {
			t.Errorf("%s: on_hand %v, want %v", tc.name, body["on_hand"], tc.onHand)
		}
	}
	if _, body := do("GET", "SKU-0001", ""); body["on_hand"] != 13.0 {
		t.Errorf("after the refused PUTs on_hand = %v, want 13", body["on_hand"])
	}
}
