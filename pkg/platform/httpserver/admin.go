package httpserver

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MinTokenLength is the shortest token CheckToken accepts: NIST SP
// 800-63B-4 (2025, 3.1.1.2) wants 15 characters of a password that is
// the only factor, as the token is. Length is no proof of strength, but
// it refuses the placeholders ("a", "admin", "changeme") that a list of
// common passwords tries first: RequireToken's throttle lets 10 guesses
// a minute through from each address, and an attacker may have many.
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
//
// Guessing is throttled: a client (ClientPrefix, so behind
// Config.TrustedProxies the address X-Forwarded-For names) that sent 10
// wrong tokens within a minute of its first is answered 429 with
// Retry-After for a minute from the last, without its token being
// looked at, so that the right token, guessed meanwhile, is refused too
// and tells nothing. The refusal's start is logged once (WARN), and every
// refused request counted (shop_http_admin_throttled_total). The
// failures are the Server's, shared by its admin routes, and bounded in
// memory (see tokenFailures); a handler served outside a Server (a test's
// recorder) counts them in a table of this RequireToken's own.
func RequireToken(token, realm string) func(http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	own := newTokenFailures(nil)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if token == "" {
				WriteProblem(w, r, Problem{Status: http.StatusForbidden,
					Detail: "admin endpoints are disabled: ADMIN_TOKEN is not set on this service"})
				return
			}
			failures := own
			if req := requestFrom(r.Context()); req != nil && req.tokenFailures != nil {
				failures = req.tokenFailures
			}
			client := ClientPrefix(r)
			if wait, shared := failures.refused(client); wait > 0 {
				refuseGuesses(w, r, wait, shared)
				return
			}
			scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
			sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
			if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
				if refusal, shared := failures.fail(client); refusal > 0 {
					logRefusal(r, failures, refusal, shared)
				}
				w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`"`)
				WriteProblem(w, r, Problem{Status: http.StatusUnauthorized,
					Detail: "admin endpoint: send Authorization: Bearer <ADMIN_TOKEN>"})
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// refuseGuesses answers a request from a client refused for wait: 429
// with Retry-After, in whole seconds rounded up.
func refuseGuesses(w http.ResponseWriter, r *http.Request, wait time.Duration, shared bool) {
	secs := int((wait + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	who := "your address"
	if shared {
		who = "more addresses than this service keeps track of"
	}
	WriteProblem(w, r, Problem{Status: http.StatusTooManyRequests,
		Detail: fmt.Sprintf("too many wrong admin tokens from %s: admin requests are refused, the token unchecked, for %d s more (Retry-After)", who, secs)})
}

// logRefusal says, once per refusal, that a client's guesses are refused
// from now on.
func logRefusal(r *http.Request, t *tokenFailures, refusal time.Duration, shared bool) {
	log := Logger(r.Context())
	if shared {
		log.Warn("admin token: wrong tokens from more clients than are kept track of; refusing every client not kept track of",
			"clients", t.max, "failures", t.limit, "within", t.window.String(), "refused_for", refusal.String(),
			"client_ip", ClientIP(r).String())
		return
	}
	log.Warn("admin token: too many wrong tokens from one client; refusing its admin requests",
		"client", ClientPrefix(r).String(), "client_ip", ClientIP(r).String(),
		"failures", t.limit, "within", t.window.String(), "refused_for", refusal.String())
}
