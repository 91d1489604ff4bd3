package httpserver

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"
)

// MinTokenLength is the shortest token CheckToken accepts: NIST SP
// 800-63B-4 (2025, 3.1.1.2) wants 15 characters of a password that is
// the only factor, as the token is. Length is no proof of strength, but
// it refuses the placeholders ("a", "admin", "changeme") that guessed at
// thousands a second (RequireToken has no throttle) fall within minutes.
const MinTokenLength = 15

// CheckToken reports why token cannot guard RequireToken's endpoints: a
// client can send only printable ASCII without space in a Bearer
// credential, and RequireToken trims what it gets, so a token with a
// trailing newline (a secret file's) would refuse every request; and a
// token shorter than MinTokenLength is too easily guessed. Services check
// ADMIN_TOKEN with it at start-up; empty (disabled) is fine. The error
// never shows the token.
func CheckToken(token string) error {
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c >= 0x7f {
			what := fmt.Sprintf("character %q", c)
			if c == '\n' && i == len(token)-1 {
				what = "newline at the end (a secret file's?)"
			}
			return fmt.Errorf("has a %s at byte %d; a Bearer token is printable ASCII without spaces", what, i+1)
		}
	}
	if token != "" && len(token) < MinTokenLength {
		return fmt.Errorf("is too short (length %d, want at least %d): a short token is soon guessed; "+
			"make a random one, e.g. with openssl rand -base64 24", len(token), MinTokenLength)
	}
	return nil
}

// RequireToken lets a request through only with Authorization: Bearer
// token (the scheme is case-insensitive, RFC 7235). A missing or wrong
// token is 401 with a WWW-Authenticate challenge for realm; an empty token
// disables the endpoints (403 saying that ADMIN_TOKEN, the services'
// setting for it, is not set). Tokens are compared as SHA-256 digests in
// constant time, so neither their content nor their length leaks through
// timing.
func RequireToken(token, realm string) func(http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if token == "" {
				WriteProblem(w, r, Problem{Status: http.StatusForbidden,
					Detail: "admin endpoints are disabled: ADMIN_TOKEN is not set on this service"})
				return
			}
			scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
			sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
			if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`"`)
				WriteProblem(w, r, Problem{Status: http.StatusUnauthorized,
					Detail: "admin endpoint: send Authorization: Bearer <ADMIN_TOKEN>"})
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
