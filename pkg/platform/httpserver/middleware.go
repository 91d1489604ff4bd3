package httpserver

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

// RequestIDHeader carries the request id in requests and responses.
const RequestIDHeader = "X-Request-Id"

// unmatchedRoute labels requests no route matched, so metrics never carry
// raw paths.
const unmatchedRoute = "unmatched"

// request is the per-request state the middleware share.
type request struct {
	id        string
	log       *slog.Logger
	unmatched bool      // set by the 404/405 handlers
	deadline  *deadline // set by withDeadline
	retrySafe bool      // set by RetrySafe
	// tokenFailures are the server's (RequireToken).
	tokenFailures *tokenFailures
	lifecycle     string // set by the answers of a starting or stopping server (lifecycleOf)
}

type requestKey struct{}

func requestFrom(ctx context.Context) *request {
	r, _ := ctx.Value(requestKey{}).(*request)
	return r
}

// RequestID returns the id of the request ctx belongs to, or "".
func RequestID(ctx context.Context) string {
	if r := requestFrom(ctx); r != nil {
		return r.id
	}
	return ""
}

// Logger returns the server's logger with the request's id attached, or
// slog.Default() outside a request.
func Logger(ctx context.Context) *slog.Logger {
	if r := requestFrom(ctx); r != nil {
		return r.log
	}
	return slog.Default()
}

// requestID keeps a sane incoming X-Request-Id or makes one, echoes it,
// and stores it (also where chi's middleware.GetReqID finds it), in the
// request's state, which also holds the server's tokenFailures.
func requestID(log *slog.Logger, failures *tokenFailures) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id := r.Header.Get(RequestIDHeader)
			if !validRequestID(id) {
				id = rand.Text()
			}
			w.Header().Set(RequestIDHeader, id)
			ctx := context.WithValue(r.Context(), requestKey{}, &request{id: id, log: log.With("request_id", id), tokenFailures: failures})
			ctx = context.WithValue(ctx, middleware.RequestIDKey, id)
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// validRequestID accepts up to 128 visible ASCII characters, so a client
// cannot inject log lines or oversized headers.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := range len(id) {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// noSniff sets X-Content-Type-Options: nosniff on every answer, so a
// browser never runs a response as another type than it is declared
// (a JSON snapshot, a passed-on label or a script).
func noSniff(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}

// wrap returns w as a status-recording writer, reusing the one an outer
// middleware installed.
func wrap(w http.ResponseWriter, r *http.Request) middleware.WrapResponseWriter {
	if ww, ok := w.(middleware.WrapResponseWriter); ok {
		return ww
	}
	return middleware.NewWrapResponseWriter(w, r.ProtoMajor)
}

// routeOf is the matched chi route pattern; call it after the handler ran.
func routeOf(r *http.Request) string {
	if req := requestFrom(r.Context()); req != nil && req.unmatched {
		return unmatchedRoute
	}
	if rctx := chi.RouteContext(r.Context()); rctx != nil {
		if p := rctx.RoutePattern(); p != "" {
			return p
		}
	}
	return unmatchedRoute
}

// StatusClientClosedRequest is nginx's 499, "client closed request": what
// the access log and the metrics record for a request whose client went
// away before it was answered.
const StatusClientClosedRequest = 499

// outcome is the status the access log and the metrics record for r once
// its handler returned: the status written (200 if none was), or 499 when
// the client went away before its answer (nothing written, or a 5xx its
// handler wrote for the request cancelled under it). A client that gave
// up is not a server error: counted as a 500, it would page as one
// (ShopOrderHTTPErrors) when clients time out on a slow database. The
// middleware that calls it sits outside the request's deadline, so r's
// context ends only with the client (or the server closing).
func outcome(ww middleware.WrapResponseWriter, r *http.Request) int {
	status := ww.Status()
	if clientGone(r.Context()) && (status == 0 || status >= 500) {
		return StatusClientClosedRequest
	}
	if status == 0 {
		return http.StatusOK
	}
	return status
}

// operational routes are logged at debug: probes and scrapes would drown
// the rest.
var operational = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

func accessLog(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ww := wrap(w, r)
			start := time.Now()
			defer func() {
				route := routeOf(r)
				level := slog.LevelInfo
				if operational[route] {
					level = slog.LevelDebug
				}
				status := outcome(ww, r)
				log.LogAttrs(r.Context(), level, "http request",
					slog.String("method", r.Method),
					slog.String("route", route),
					slog.String("path", r.URL.Path),
					slog.Int("status", status),
					slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
					slog.Int("bytes", ww.BytesWritten()),
					slog.String("client_ip", middleware.GetClientIP(r.Context())),
					slog.String("request_id", RequestID(r.Context())),
				)
			}()
			next.ServeHTTP(ww, r)
		})
	}
}

// recoverer turns a handler panic into a logged error and a 500, so one
// bad request cannot take the service down. http.ErrAbortHandler is the
// deliberate way to abort a response and passes through.
func recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			rec := recover()
			if rec == nil {
				return
			}
			if err, ok := rec.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(rec)
			}
			Logger(r.Context()).Error("panic serving request",
				"panic", fmt.Sprint(rec), "method", r.Method, "path", r.URL.Path, "stack", string(debug.Stack()))
			if ww, ok := w.(middleware.WrapResponseWriter); ok && ww.Status() != 0 {
				return // too late for a clean answer; the client sees a cut response
			}
			WriteProblem(w, r, Problem{Status: http.StatusInternalServerError,
				Detail: "internal error; quote the request id when reporting it"})
		}()
		next.ServeHTTP(w, r)
	})
}

// limitBody caps request bodies; reading past the cap fails with
// *http.MaxBytesError, which DecodeJSON answers with 413.
func limitBody(max int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Body != nil && r.Body != http.NoBody {
				r.Body = http.MaxBytesReader(w, r.Body, max)
			}
			next.ServeHTTP(w, r)
		})
	}
}

func notFound(w http.ResponseWriter, r *http.Request) { NotFoundPage(nil)(w, r) }

// NotFoundPage is the 404 handler for a router that also serves pages:
// a browser (PrefersHTML) gets page, anyone else the 404 problem. Either
// way the request counts as unmatched in the metrics (no raw paths). A
// nil page answers everyone with the problem.
func NotFoundPage(page http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if req := requestFrom(r.Context()); req != nil {
			req.unmatched = true
		}
		if page != nil && PrefersHTML(r) {
			page(w, r)
			return
		}
		WriteProblem(w, r, Problem{Status: http.StatusNotFound,
			Detail: fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path)})
	}
}

// allMethods are the methods chi routes, in the order Allow lists them.
var allMethods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace,
}

// methodNotAllowed answers 405 with the Allow header RFC 9110 requires;
// chi hands a custom handler no method list, so it asks the router.
func methodNotAllowed(mux *chi.Mux) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if req := requestFrom(r.Context()); req != nil {
			req.unmatched = true
		}
		path := r.URL.RawPath
		if path == "" {
			path = r.URL.Path
		}
		var allowed []string
		for _, m := range allMethods {
			// GetHead answers HEAD wherever GET is routed.
			if mux.Match(chi.NewRouteContext(), m, path) ||
				(m == http.MethodHead && slices.Contains(allowed, http.MethodGet)) {
				allowed = append(allowed, m)
			}
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		WriteProblem(w, r, Problem{Status: http.StatusMethodNotAllowed,
			Detail: fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path)})
	}
}
