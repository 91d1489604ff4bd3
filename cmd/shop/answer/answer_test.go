package answer

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shopflow/shopflow/pkg/platform/httpserver"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, tc := range []struct {
		header string
		want   time.Duration
		ok     bool
	}{
		{"", 0, false},
		{"1", time.Second, true},
		{" 120 ", 2 * time.Minute, true},
		{"0", 0, false},
		{"-3", 0, false},
		{"soon", 0, false},
		{now.Add(5 * time.Second).Format(http.TimeFormat), 5 * time.Second, true},
		{now.Add(-5 * time.Second).Format(http.TimeFormat), 0, false},
	} {
		h := http.Header{}
		if tc.header != "" {
			h.Set("Retry-After", tc.header)
		}
		if got, ok := RetryAfter(h, now); got != tc.want || ok != tc.ok {
			t.Errorf("Retry-After %q: %v, %v; want %v, %v", tc.header, got, ok, tc.want, tc.ok)
		}
	}
}

// A problem reads as its title and detail, as the services write it
// (json escapes < and > as \u003c and \u003e); any other body as its
// text, on one line and bounded.
func TestText(t *testing.T) {
	problem := func(p httpserver.Problem) []byte {
		rec := httptest.NewRecorder()
		httpserver.WriteProblem(rec, httptest.NewRequest("PUT", "/v1/products/SKU-0001", nil), p)
		return rec.Body.Bytes()
	}
	for _, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"problem", problem(httpserver.Problem{Status: 401, Detail: "admin endpoint: send Authorization: Bearer <ADMIN_TOKEN>"}),
			"Unauthorized: admin endpoint: send Authorization: Bearer <ADMIN_TOKEN>"},
		{"fields", problem(httpserver.Problem{Status: 400, Detail: "invalid fields", Errors: []httpserver.FieldError{
			{Field: "name", Message: "is required"}, {Field: "price_cents", Message: "must be 0 or more"}}}),
			"Bad Request: invalid fields (name: is required; price_cents: must be 0 or more)"},
		{"title only", []byte(`{"type":"about:blank","title":"Service Unavailable","status":503}`), "Service Unavailable"},
		{"not a problem", []byte("  <html>\r\n<h1>502 Bad Gateway</h1>\n</html>\n"), "<html>  <h1>502 Bad Gateway</h1> </html>"},
		{"JSON, no problem", []byte(`{"error":"nope"}`), `{"error":"nope"}`},
		{"escapes", []byte("\x1b[31mred\x1b[0m"), " [31mred [0m"},
		{"empty", nil, ""},
		{"long", []byte(strings.Repeat("é", 200)), strings.Repeat("é", 150) + "…"},
	} {
		if got := Text(tc.body); got != tc.want {
			t.Errorf("%s: Text(%q) = %q, want %q", tc.name, tc.body, got, tc.want)
		}
	}
}
