package httpserver

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestAllowedHosts: with Config.AllowedHosts, a request for a Host the
// list does not allow is refused 421 problem+json naming it, whatever its
// route, but for the operational endpoints. Without it a page on a name
// rebound to 127.0.0.1 was answered as if it were the service's own.
func TestAllowedHosts(t *testing.T) {
	t.Parallel()
	s := New(Config{AllowedHosts: []string{"localhost", "*.example.com"}}, nil, nil, nil, testRoutes)
	open := New(Config{}, nil, nil, nil, testRoutes)
	for _, c := range []struct {
		host, path string
		want       int
	}{
		{"localhost:8080", "/v1/orders/o-1", 200},
		{"shop.example.com", "/v1/orders/o-1", 200},
		{"evil.example:8080", "/v1/orders/o-1", 421},
		{"evil.example", "/nope", 421},
		{"", "/v1/orders/o-1", 421},
		{"evil.example", "/healthz", 200},
		{"10.1.2.3:8080", "/readyz", 200},
		{"evil.example", "/metrics", 200},
	} {
		r := httptest.NewRequest("GET", c.path, nil)
		r.Host = c.host
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, r)
		if w.Code != c.want {
			t.Errorf("GET %s with Host %q: %d %s; want %d", c.path, c.host, w.Code, w.Body, c.want)
			continue
		}
		if w.Code == http.StatusMisdirectedRequest && (w.Header().Get("Content-Type") != ProblemContentType ||
			!strings.Contains(w.Body.String(), `does not answer for host \"`+c.host+`\"`)) {
			t.Errorf("Host %q: 421 %s %s; want problem+json naming the host", c.host, w.Header().Get("Content-Type"), w.Body)
		}
		w = httptest.NewRecorder()
		open.Handler().ServeHTTP(w, r)
		if w.Code == http.StatusMisdirectedRequest {
			t.Errorf("without AllowedHosts, Host %q: 421; want any host allowed", c.host)
		}
	}
}
