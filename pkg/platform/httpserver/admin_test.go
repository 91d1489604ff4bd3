package httpserver

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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
