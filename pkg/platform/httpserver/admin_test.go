package httpserver

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

func TestRequireToken(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	tests := []struct {
		token, auth string
		want        int
		detail      string
	}{
		{"s3cret", "Bearer s3cret", 204, ""},
		{"s3cret", "bearer s3cret", 204, ""},
		{"s3cret", "", 401, "Authorization: Bearer"},
		{"s3cret", "Bearer nope", 401, "Authorization: Bearer"},
		{"s3cret", "Basic s3cret", 401, "Authorization: Bearer"},
		{"s3cret", "Bearer s3cre", 401, "Authorization: Bearer"},
		{"", "Bearer ", 403, "ADMIN_TOKEN is not set"},
		{"", "", 403, "ADMIN_TOKEN is not set"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("PUT", "/v1/x", nil)
		if tt.auth != "" {
			r.Header.Set("Authorization", tt.auth)
		}
		w := httptest.NewRecorder()
		RequireToken(tt.token, "test")(ok).ServeHTTP(w, r)
		if w.Code != tt.want || !strings.Contains(w.Body.String(), tt.detail) {
			t.Errorf("token %q, Authorization %q: %d %s; want %d mentioning %q", tt.token, tt.auth, w.Code, w.Body, tt.want, tt.detail)
		}
		if w.Code == 401 && w.Header().Get("WWW-Authenticate") != `Bearer realm="test"` {
			t.Errorf("401 without the challenge: %q", w.Header().Get("WWW-Authenticate"))
		}
		if w.Code >= 400 && w.Header().Get("Content-Type") != ProblemContentType {
			t.Errorf("%d is not problem+json", w.Code)
		}
	}
}

// TestCheckToken: ADMIN_TOKEN must be a sendable Bearer token of at
// least MinTokenLength characters; unset disables the endpoints. A
// one-character token started the services without a word, and guarded
// the admin endpoints against some 11,000 guesses a second.
func TestCheckToken(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		token, want string
	}{
		{"", ""},
		{"dev-admin-token", ""}, // 15, compose's default
		{"0123456789abcdefghijklmnopqrstuvwxyz", ""},
		{"a", "too short (length 1, want at least 15)"},
		{"changeme", "too short (length 8, want at least 15)"},
		{"fourteen-chars", "too short (length 14, want at least 15)"},
		{"s3cret token here", "character ' ' at byte 7"},
		{"a-long-enough-token\n", "newline at the end"},
	} {
		err := CheckToken(c.token)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("CheckToken(%q) = %v; want %q", c.token, err, c.want)
		}
		if err != nil && len(c.token) > 1 && strings.Contains(err.Error(), c.token) {
			t.Errorf("CheckToken's error shows the token: %v", err)
		}
	}
}

// adminServer is a Server with one admin route, PUT /v1/stock/{sku}
// (204 with the right token), whose throttle's clock is *now, and the
// JSON log it writes.
func adminServer(t *testing.T, cfg Config, now *time.Time) (*Server, *testenv.SyncBuffer) {
	t.Helper()
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	s := New(cfg, log, prometheus.NewRegistry(), nil, func(r chi.Router) {
		r.With(RequireToken(adminTestToken, "test")).Put("/v1/stock/{sku}", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		})
	})
	s.tokenFailures.now = func() time.Time { return *now }
	return s, logs
}

const adminTestToken = "a-token-long-enough"

// put sends PUT /v1/stock/S-1 with token from peer (host:port), and
// X-Forwarded-For xff if not empty, straight to s's handler.
func put(s *Server, peer, token, xff string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("PUT", "/v1/stock/S-1", nil)
	r.RemoteAddr = peer
	r.Header.Set("Authorization", "Bearer "+token)
	if xff != "" {
		r.Header.Set("X-Forwarded-For", xff)
	}
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	return w
}

// TestRequireTokenThrottlesGuesses: a client that sent tokenFailureLimit
// wrong tokens is refused 429 for a minute, the right token included, and
// no other client is; the refusal is logged once and every refused
// request counted. Without the throttle a client could try tokens as fast
// as the server answered (some 11,000 a second).
func TestRequireTokenThrottlesGuesses(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	s, logs := adminServer(t, Config{}, &now)
	const guesser, other = "198.51.100.7:4000", "198.51.100.8:4000"

	for i := range tokenFailureLimit {
		if i > 0 {
			now = now.Add(time.Second)
		}
		if w := put(s, guesser, fmt.Sprintf("guess-%d", i), ""); w.Code != http.StatusUnauthorized {
			t.Fatalf("wrong token %d: %d %s; want 401", i+1, w.Code, w.Body)
		}
	}
	// The last failure was at 12:00:09; the refusal lasts until 12:01:09.
	for _, token := range []string{"guess-x", adminTestToken} {
		w := put(s, guesser, token, "")
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "60" ||
			w.Header().Get("Content-Type") != ProblemContentType || !strings.Contains(w.Body.String(), "too many wrong admin tokens from your address") {
			t.Fatalf("token %q after %d wrong ones: %d Retry-After %q %s; want 429 problem, Retry-After 60",
				token, tokenFailureLimit, w.Code, w.Header().Get("Retry-After"), w.Body)
		}
	}
	// Another client is not held up, whatever it sends.
	if w := put(s, other, adminTestToken, ""); w.Code != http.StatusNoContent {
		t.Errorf("another client's right token: %d %s; want 204", w.Code, w.Body)
	}
	if w := put(s, other, "guess", ""); w.Code != http.StatusUnauthorized {
		t.Errorf("another client's wrong token: %d %s; want 401", w.Code, w.Body)
	}
	now = now.Add(59 * time.Second) // 12:01:08
	if w := put(s, guesser, adminTestToken, ""); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "1" {
		t.Errorf("right token a second before the refusal ends: %d Retry-After %q; want 429, 1", w.Code, w.Header().Get("Retry-After"))
	}
	now = now.Add(time.Second) // 12:01:09
	if w := put(s, guesser, adminTestToken, ""); w.Code != http.StatusNoContent {
		t.Errorf("right token once the refusal is over: %d %s; want 204", w.Code, w.Body)
	}
	// Its count starts again: one wrong token is one failure, not the 11th.
	if w := put(s, guesser, "guess-y", ""); w.Code != http.StatusUnauthorized {
		t.Errorf("wrong token once the refusal is over: %d; want 401", w.Code)
	}

	if n := strings.Count(logs.String(), "too many wrong tokens from one client"); n != 1 {
		t.Errorf("the refusal was logged %d times; want once:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), `"client_ip":"198.51.100.7"`) {
		t.Errorf("the refusal's WARN does not name the client:\n%s", logs)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if want := "shop_http_admin_throttled_total 3\n"; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("metrics lack %q", want)
	}
}

// TestRequireTokenThrottleClients: the throttle counts the client the
// server sees, X-Forwarded-For's behind a trusted proxy, and an IPv6
// client by its /64.
func TestRequireTokenThrottleClients(t *testing.T) {
	t.Parallel()
	now := time.Now()
	s, _ := adminServer(t, Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, &now)
	refuse := func(peer, xff string) {
		t.Helper()
		for range tokenFailureLimit {
			if w := put(s, peer, "guess", xff); w.Code != http.StatusUnauthorized {
				t.Fatalf("from %s (X-Forwarded-For %q): %d; want 401", peer, xff, w.Code)
			}
		}
	}
	for _, c := range []struct {
		name           string
		guessPeer, xff string
		peer, xffThen  string
		want           int
	}{
		// Behind the proxy, each client by its own address.
		{"the guesser behind the proxy", "10.0.0.2:1", "203.0.113.5", "10.0.0.3:1", "203.0.113.5", 429},
		{"another client behind the proxy", "10.0.0.2:1", "203.0.113.6", "10.0.0.2:1", "203.0.113.7", 204},
		// A peer that is not a trusted proxy cannot pass for another client.
		{"a forged X-Forwarded-For", "192.0.2.9:1", "203.0.113.8", "192.0.2.9:1", "203.0.113.9", 429},
		{"the address of the /64", "[2001:db8:1:2::1]:1", "", "[2001:db8:1:2:ffff::9]:1", "", 429},
		{"another /64", "[2001:db8:1:3::1]:1", "", "[2001:db8:1:4::1]:1", "", 204},
	} {
		refuse(c.guessPeer, c.xff)
		if w := put(s, c.peer, adminTestToken, c.xffThen); w.Code != c.want {
			t.Errorf("%s: right token from %s (X-Forwarded-For %q): %d; want %d", c.name, c.peer, c.xffThen, w.Code, c.want)
		}
	}
}

// TestTokenFailuresBounded: a flood of wrong tokens from distinct
// addresses keeps at most max clients, which count alone; the rest count
// together, and are refused together once they have limit failures
// between them. Records go once their window is over.
func TestTokenFailuresBounded(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	f := newTokenFailures(nil)
	f.limit, f.max, f.now = 3, 100, func() time.Time { return now }
	client := func(i int) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
	}
	tracked := func() int {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.clients)
	}

	for i := range f.max {
		f.fail(client(i))
	}
	if wait, _ := f.refused(client(f.max + 1)); wait != 0 {
		t.Fatalf("a client not kept, with the overflow below its limit: refused for %s", wait)
	}
	var began []int
	for i := f.max; i < 100_000; i++ {
		if refusal, shared := f.fail(client(i)); refusal > 0 {
			if !shared {
				t.Fatalf("client %d, beyond the %d kept: its refusal is not the shared one", i, f.max)
			}
			began = append(began, i)
		}
		if n := tracked(); n > f.max {
			t.Fatalf("after %d clients' failures, %d are kept; want at most %d", i+1, n, f.max)
		}
	}
	if want := []int{f.max + f.limit - 1}; !slices.Equal(began, want) {
		t.Errorf("the shared refusal began at failures %v; want once, at %v", began, want)
	}
	if wait, shared := f.refused(client(200_000)); wait != f.window || !shared {
		t.Errorf("a new client during the flood: refused for %s (shared %t); want %s, shared", wait, shared, f.window)
	}
	if wait, _ := f.refused(client(0)); wait != 0 {
		t.Errorf("a client kept, below its limit: refused for %s", wait)
	}

	now = now.Add(f.window)
	f.fail(client(300_000)) // the first failure of a new window sweeps
	if n := tracked(); n != 1 {
		t.Errorf("a window later, %d clients are kept; want 1, the one that just failed", n)
	}
	if wait, _ := f.refused(client(200_000)); wait != 0 {
		t.Errorf("a new client a window after the flood: refused for %s", wait)
	}
}
