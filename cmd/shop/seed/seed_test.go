package seed

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopflow/shopflow/cmd/shop/answer"
	"github.com/shopflow/shopflow/pkg/platform/httpserver"
)

// fakeAdmin is the order and inventory services' admin PUTs as Seed uses
// them: If-None-Match: * creates (201) what is missing and refuses (412)
// what exists. Like the services' router, it answers 404 to a path such
// as "//v1/products/...".
func fakeAdmin(t *testing.T) *httptest.Server {
	t.Helper()
	var mu sync.Mutex
	have := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut || strings.Contains(r.URL.Path, "//") ||
			!(strings.HasPrefix(r.URL.Path, "/v1/products/") || strings.HasPrefix(r.URL.Path, "/v1/stock/")) {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if have[r.URL.Path] && r.Header.Get("If-None-Match") == "*" {
			w.WriteHeader(http.StatusPreconditionFailed)
			return
		}
		have[r.URL.Path] = true
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// Base URLs with a trailing slash are the same URLs: they used to make
// every path "//v1/...", which the services answer with 404.
func TestSeedTrimsTheBaseURLs(t *testing.T) {
	srv := fakeAdmin(t)
	res, err := Seed(context.Background(), srv.URL+"/", srv.URL+"//", "token", nil)
	if err != nil {
		t.Fatalf("Seed: %v", err)
	}
	if n := len(Catalog); res != (Result{Products: n, StockSet: n}) {
		t.Errorf("Seed: %+v, want every product and every SKU's stock created", res)
	}
}

// scripted answers each request with the next of answers, as the
// services write them (problem+json, with a Retry-After when given), and
// 201 once they are used up; it counts the requests.
type scripted struct {
	mu      sync.Mutex
	answers []scriptedAnswer
	got     int
}

type scriptedAnswer struct {
	status     int
	retryAfter string
	detail     string
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got++
	if len(s.answers) == 0 {
		w.WriteHeader(http.StatusCreated)
		return
	}
	a := s.answers[0]
	s.answers = s.answers[1:]
	if a.retryAfter != "" {
		w.Header().Set("Retry-After", a.retryAfter)
	}
	httpserver.WriteProblem(w, r, httpserver.Problem{Status: a.status, Detail: a.detail})
}

func (s *scripted) requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got
}

const throttled = "too many wrong admin tokens from your address: admin requests are refused, the token unchecked, for 60 s more (Retry-After)"

// An error answer is said as its problem's title and detail, in plain
// text: it was the raw body, "send Authorization: Bearer
// \u003cADMIN_TOKEN\u003e" and all.
func TestSeedSaysTheProblem(t *testing.T) {
	srv := httptest.NewServer(&scripted{answers: []scriptedAnswer{
		{status: http.StatusUnauthorized, detail: "admin endpoint: send Authorization: Bearer <ADMIN_TOKEN>"}}})
	t.Cleanup(srv.Close)
	_, err := Seed(context.Background(), srv.URL, srv.URL, "wrong-token", nil)
	want := "catalog SKU-0001: PUT " + srv.URL + "/v1/products/SKU-0001: 401 Unauthorized: admin endpoint: send Authorization: Bearer <ADMIN_TOKEN>"
	if err == nil || err.Error() != want {
		t.Errorf("Seed: %v, want %s", err, want)
	}
}

// A 429 (the admin token's throttle) is waited out and sent again, and
// the wait said; Seed then goes on. It failed at once with the 429.
func TestSeedWaitsOutATooManyRequests(t *testing.T) {
	s := &scripted{answers: []scriptedAnswer{{status: http.StatusTooManyRequests, retryAfter: "1", detail: throttled}}}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	var waits bytes.Buffer
	res, err := Seed(context.Background(), srv.URL, srv.URL, "token", &waits)
	if n := len(Catalog); err != nil || res != (Result{Products: n, StockSet: n}) {
		t.Fatalf("Seed: %+v, %v; want every product and every SKU's stock created", res, err)
	}
	want := "seed: PUT " + srv.URL + "/v1/products/SKU-0001: 429 Too Many Requests: " + throttled + "; sending it again in 1s\n"
	if waits.String() != want {
		t.Errorf("waits said %q, want %q", waits.String(), want)
	}
	if got := s.requests(); got != 2*len(Catalog)+1 {
		t.Errorf("%d requests, want %d: each PUT once, the refused one twice", got, 2*len(Catalog)+1)
	}
}

// The waits of 429s and 503s: a Retry-After's, at most answer.MaxWait,
// else a growing backoff; a few attempts in all, then the last answer.
// Other refusals are not sent again.
func TestSeedRetriesBounded(t *testing.T) {
	tooMany := scriptedAnswer{status: http.StatusTooManyRequests, retryAfter: "3600", detail: throttled}
	for _, tc := range []struct {
		name     string
		answers  []scriptedAnswer
		waits    []time.Duration
		requests int
		err      string
	}{
		{"waited out", []scriptedAnswer{tooMany, {status: http.StatusServiceUnavailable, retryAfter: "2", detail: "starting"},
			{status: http.StatusServiceUnavailable, detail: "starting"}},
			[]time.Duration{30 * time.Second, 2 * time.Second, 4 * time.Second}, 4, ""},
		{"given up", []scriptedAnswer{tooMany, tooMany, tooMany, tooMany, tooMany, tooMany},
			[]time.Duration{30 * time.Second, 30 * time.Second, 30 * time.Second, 30 * time.Second}, 5,
			"gave up after 5 attempts: PUT /: 429 Too Many Requests: " + throttled},
		{"refused", []scriptedAnswer{{status: http.StatusForbidden, detail: "admin endpoints are disabled"}}, nil, 1,
			"PUT /: 403 Forbidden: admin endpoints are disabled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &scripted{answers: tc.answers}
			srv := httptest.NewServer(s)
			t.Cleanup(srv.Close)
			var waited []time.Duration
			c := &client{http: srv.Client(), token: "token", sleep: func(_ context.Context, d time.Duration) bool {
				waited = append(waited, d)
				return true
			}}
			status, err := c.do(context.Background(), "PUT", srv.URL+"/", nil, nil, http.StatusCreated)
			msg := ""
			if err != nil {
				msg = strings.ReplaceAll(err.Error(), srv.URL, "")
			}
			if msg != tc.err || (tc.err == "" && status != http.StatusCreated) {
				t.Errorf("do: %d, %q; want %q", status, msg, tc.err)
			}
			if !slices.Equal(waited, tc.waits) || s.requests() != tc.requests {
				t.Errorf("waited %v in %d requests, want %v in %d", waited, s.requests(), tc.waits, tc.requests)
			}
		})
	}
}

// A stop while waiting ends the wait, saying which answer it waited for.
func TestSeedStopsWaitingWhenStopped(t *testing.T) {
	srv := httptest.NewServer(&scripted{answers: []scriptedAnswer{{status: http.StatusTooManyRequests, retryAfter: "30", detail: throttled}}})
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	c := &client{http: srv.Client(), token: "token", sleep: func(ctx context.Context, d time.Duration) bool {
		cancel()
		return answer.Sleep(ctx, d)
	}}
	start := time.Now()
	_, err := c.do(ctx, "PUT", srv.URL+"/", nil, nil, http.StatusCreated)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "429 Too Many Requests") || time.Since(start) > 10*time.Second {
		t.Errorf("do, stopped while waiting: %v after %s; want the 429 and the stop, at once", err, time.Since(start))
	}
}
