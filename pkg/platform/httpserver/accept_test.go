package httpserver

import (
	"net/http/httptest"
	"testing"
)

func TestPrefersHTML(t *testing.T) {
	for _, c := range []struct {
		accept string
		want   bool
	}{
		{"", false},
		{"*/*", false}, // fetch, curl
		{"application/json", false},
		{"application/problem+json, application/json;q=0.9", false},
		{"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8", true}, // Chromium
		{"text/html;q=0.5, application/json", false},
		{"TEXT/HTML", true},
		{"text/*, application/json;q=0.5", true},
		{"text/html;q=0, */*", false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		if c.accept != "" {
			r.Header.Set("Accept", c.accept)
		}
		if got := PrefersHTML(r); got != c.want {
			t.Errorf("PrefersHTML(Accept: %q) = %v, want %v", c.accept, got, c.want)
		}
	}
}
