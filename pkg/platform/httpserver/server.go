// Package httpserver is the HTTP runtime the four services share: a chi
// router with the standard middleware, the operational endpoints, metrics,
// RFC 9457 problem details and strict JSON decoding, so each service only
// mounts its own routes.
//
// Every request passes, in order: request id (an incoming X-Request-Id is
// kept, otherwise one is generated; either way it is echoed in the
// response) → client IP (from the TCP peer, or X-Forwarded-For when the
// peer is a trusted proxy and the header names a client) → access log (method, route pattern, status,
// duration, request id; operational endpoints at debug) → panic recovery
// (logged with its stack, answered 500 problem+json; the process keeps
// serving) → body size limit → metrics → host allow-list (if
// Config.AllowedHosts: 421 Misdirected Request for a Host it does not
// list, against DNS rebinding; the operational endpoints are exempt) →
// deadline → the route.
//
// Once routed, a request to the service's routes (not the operational
// endpoints, all GET) is refused 403 if it changes state and a browser
// sent it from another origin (crossOrigin: a page elsewhere could
// otherwise cancel an order by a form).
//
// The deadline (Config.RequestTimeout, 25 s by default) ends the request's
// context, so that a handler waiting on a stalled or locked database
// gives up and still answers, 503 with Retry-After (WriteError), before
// the server's WriteTimeout (30 s) would close the connection with no
// answer at all. A handler that runs longer by design (a server-sent
// event stream) lifts it with LiftDeadline. A request whose client went
// away before its answer counts as 499 (nginx's "client closed request")
// in the access log and the metrics, not as the 5xx its handler wrote:
// a client's timeout is not a server error.
//
// Every server answers GET /healthz (alive), GET /readyz (the service's
// ReadyChecks, in parallel, within 2 s) and GET /metrics (Prometheus, with
// shop_http_request_duration_seconds{method,route,code,lifecycle},
// shop_http_requests_in_flight and shop_http_admin_throttled_total, the
// admin requests RequireToken refused to a client guessing tokens;
// lifecycle marks the 503s of a starting or stopping server,
// lifecycleOf). Unknown routes and methods are answered 404 and 405 (with
// Allow) as problem+json, like every other error.
//
// A service serves from the start of its start-up (NewStarting), before
// its routes and checks exist: /healthz and /metrics answer as always,
// /readyz 503 saying what start-up waits for, and every other request
// 503 with Retry-After, until Started puts the service's own in place.
//
// Shutdown (Run, once its context ends) stops intake and waits for the
// requests in flight; those still running when its time runs out are
// ended (their context's cause a *ShutdownError, which WriteError answers
// 503), with the work they Detach-ed, rather than cut off without an
// answer.
//
// Handlers read bodies with DecodeJSON and answer with WriteJSON,
// WriteProblem or WriteError.
package httpserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/shopflow/shopflow/pkg/platform/internal/hostlist"
	"github.com/shopflow/shopflow/pkg/platform/tracing"
)

// Config tunes the server. Zero fields take the defaults noted.
type Config struct {
	// Addr is the listen address (default ":8080"); port 0 picks a free
	// port, reported by Server.Addr.
	Addr string
	// Listener, if set, is served instead of listening on Addr (whoever
	// runs services in-process binds their ports up front, see
	// service.WithListener). Run closes it.
	Listener net.Listener
	// ReadHeaderTimeout bounds reading request headers (default 5s).
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request (default 30s).
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a response (default 30s), counted from
	// the end of the request's headers: a handler still at work then
	// loses its connection without an answer.
	WriteTimeout time.Duration
	// RequestTimeout bounds each handler (default WriteTimeout less 5 s,
	// or less a quarter of it when that is shorter: 25 s for the default
	// 30 s; one not below WriteTimeout is taken as the default): its
	// request's context ends then, with a *DeadlineError as its cause,
	// leaving the handler time to answer (see LiftDeadline).
	RequestTimeout time.Duration
	// IdleTimeout bounds keep-alive idleness (default 120s).
	IdleTimeout time.Duration
	// ShutdownTimeout bounds the graceful shutdown of Run (default 20s).
	ShutdownTimeout time.Duration
	// MaxBodyBytes caps request bodies (default 1 MiB); DecodeJSON answers
	// 413 beyond it.
	MaxBodyBytes int64
	// TrustedProxies are the networks whose X-Forwarded-For is believed
	// for the client IP; empty means the TCP peer is the client.
	TrustedProxies []netip.Prefix
	// AllowedHosts, if any, are the names the server answers for
	// (localhost, 127.0.0.1, ::1, *.example.com: see config's
	// HTTP_ALLOWED_HOSTS): a request for any other Host is answered 421,
	// but for /healthz, /readyz and /metrics. Empty allows every host.
	AllowedHosts []string
	// TracerProvider traces requests (a span per request, continuing an
	// incoming W3C traceparent); nil means no tracing.
	TracerProvider trace.TracerProvider
}

func (c Config) withDefaults() Config {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.Addr == "" {
		c.Addr = ":8080"
	}
	set(&c.ReadHeaderTimeout, 5*time.Second)
	set(&c.ReadTimeout, 30*time.Second)
	set(&c.WriteTimeout, 30*time.Second)
	if c.RequestTimeout <= 0 || c.RequestTimeout >= c.WriteTimeout {
		c.RequestTimeout = c.WriteTimeout - min(5*time.Second, c.WriteTimeout/4)
	}
	set(&c.IdleTimeout, 120*time.Second)
	set(&c.ShutdownTimeout, 20*time.Second)
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 20
	}
	return c
}

// ReadyCheck is one dependency /readyz checks, e.g. the database.
type ReadyCheck struct {
	// Name labels the check in the /readyz answer.
	Name string
	// Check returns nil when the dependency is usable. Its context ends
	// after 2 s.
	Check func(ctx context.Context) error
}

// Server is one service's HTTP server. Build it with New (or NewStarting
// and Started); run it with Run, or mount Handler in a test server.
type Server struct {
	cfg       Config
	log       *slog.Logger
	metrics   *metrics
	scrape    http.Handler // /metrics
	handler   http.Handler // serves current's router, traced if configured
	current   atomic.Pointer[http.Handler]
	srv       *http.Server
	ran       atomic.Bool
	draining  atomic.Bool
	addr      atomic.Value // string
	listening chan struct{}
	// base is every request's context's root (http.Server.BaseContext),
	// holding the server (serverOf); endRequests ends it, and so every
	// request still running and every Detach-ed context, when the
	// shutdown gives up on them.
	base        context.Context
	endRequests context.CancelCauseFunc
	stopping    chan struct{} // closed as the shutdown begins (Stopping)
	active      atomic.Int64  // requests in their handlers
	// tokenFailures are the wrong admin tokens its clients sent, for
	// every RequireToken it serves.
	tokenFailures *tokenFailures
	hosts         *hostlist.List // Config.AllowedHosts; nil allows every host
}

// New builds the server: the middleware stack, /healthz, /readyz,
// /metrics (for reg, to which it adds the HTTP metrics and, unless already
// there, the Go and process collectors; nil means a fresh registry) and the
// service's routes. routes receives a group of the root router, so it may
// call Use for middleware of its own (before its routes, as chi requires)
// without affecting the operational endpoints.
func New(cfg Config, log *slog.Logger, reg *prometheus.Registry, checks []ReadyCheck, routes func(r chi.Router)) *Server {
	s := newServer(cfg, log, reg)
	s.Started(checks, routes)
	return s
}

// StartStatus is where a starting service is, as its /readyz tells it.
type StartStatus struct {
	// Stage names the step for programs (a metric's label): "postgres".
	Stage string
	// Doing says it for people: "waiting for PostgreSQL".
	Doing string
	// LastError is the last error the step met, if any, in words fit
	// for the public port (no host, user or secret, unlike the log's):
	// "connection refused".
	LastError string
}

// NewStarting builds the server of a service that has only begun to
// start, to be run at once so that probes and scrapes get answers while
// the service waits for its dependencies: until Started, /healthz answers
// 200 (the process is alive), /metrics serves reg (as for New), /readyz
// answers 503 saying what starting reports, and every other request 503
// with Retry-After (not the 404 of an unknown route: the service's routes
// are not known yet). Its requests pass the same middleware as New's.
func NewStarting(cfg Config, log *slog.Logger, reg *prometheus.Registry, starting func() StartStatus) *Server {
	s := newServer(cfg, log, reg)
	var h http.Handler = s.router(s.startingReadyz(starting), startingRoute(starting), nil)
	s.current.Store(&h)
	return s
}

// Started puts the service's ready checks and routes in place of the
// start-up answers of NewStarting, whether Run serves already or not:
// requests from then on get what New builds; those in flight finish with
// the start-up answers.
func (s *Server) Started(checks []ReadyCheck, routes func(r chi.Router)) {
	var h http.Handler = s.router(s.readyz(checks), notFound, routes)
	s.current.Store(&h)
}

func newServer(cfg Config, log *slog.Logger, reg *prometheus.Registry) *Server {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := newMetrics(reg)
	s := &Server{cfg: cfg, log: log, metrics: m, scrape: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		listening: make(chan struct{}), stopping: make(chan struct{}), tokenFailures: newTokenFailures(m.adminThrottled),
		hosts: hostlist.New(cfg.AllowedHosts)}
	base, end := context.WithCancelCause(context.Background())
	s.base, s.endRequests = context.WithValue(base, serverKey{}, s), end
	s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.active.Add(1)
		defer s.active.Add(-1)
		(*s.current.Load()).ServeHTTP(w, r)
	})
	if cfg.TracerProvider != nil {
		s.handler = otelhttp.NewHandler(s.handler, "http", otelhttp.WithTracerProvider(cfg.TracerProvider),
			otelhttp.WithPropagators(tracing.Propagator),
			otelhttp.WithFilter(func(r *http.Request) bool { return !operational[r.URL.Path] }))
	}
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return s.base },
	}
	return s
}

// router is the middleware stack and the operational endpoints, with
// readyz for /readyz, notFound for unknown routes, and routes, if any.
func (s *Server) router(readyz, notFound http.HandlerFunc, routes func(r chi.Router)) *chi.Mux {
	cfg, log := s.cfg, s.log
	r := chi.NewRouter()
	r.Use(requestID(log, s.tokenFailures))
	r.Use(noSniff)
	if len(cfg.TrustedProxies) > 0 {
		prefixes := make([]string, len(cfg.TrustedProxies))
		for i, p := range cfg.TrustedProxies {
			prefixes[i] = p.String()
		}
		r.Use(middleware.ClientIPFromXFF(prefixes...), peerIfNoClient)
	} else {
		r.Use(middleware.ClientIPFromRemoteAddr)
	}
	r.Use(accessLog(log))
	r.Use(recoverer)
	r.Use(limitBody(cfg.MaxBodyBytes))
	r.Use(s.metrics.instrument)
	r.Use(allowHosts(s.hosts))
	r.Use(withDeadline(cfg.RequestTimeout))
	// HEAD is answered wherever GET is (RFC 9110 9.3.2; a HEAD of a label
	// or a health check was 405).
	r.Use(middleware.GetHead)
	r.NotFound(notFound)
	r.MethodNotAllowed(methodNotAllowed(r))

	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", readyz)
	r.Method(http.MethodGet, "/metrics", s.scrape)
	if routes != nil {
		// The service's routes refuse a browser's cross-origin writes
		// (crossOrigin), after routing so that they count by route.
		r.Group(func(r chi.Router) {
			r.Use(crossOrigin)
			routes(r)
		})
	}
	return r
}

// Drain makes /readyz answer 503 "shutting down" from now on, while
// everything else is served as before: what a stopping service does for a
// while before Run's shutdown (SHUTDOWN_DRAIN_DELAY), so that a load
// balancer checking /readyz sends no more requests to a port about to
// close, while those it still sends are served.
func (s *Server) Drain() { s.draining.Store(true) }

// peerIfNoClient takes the TCP peer for the client when X-Forwarded-For
// named none: a trusted proxy's own request (its health check) has no
// header, and a header with an entry that is not an address is not
// believed left of it. The peer is a trusted proxy then: a real address,
// never one a client chose, and more use in the access log than none.
func peerIfNoClient(next http.Handler) http.Handler {
	withPeer := middleware.ClientIPFromRemoteAddr(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if middleware.GetClientIPAddr(r.Context()).IsValid() {
			next.ServeHTTP(w, r)
			return
		}
		withPeer.ServeHTTP(w, r)
	})
}

// Handler is the complete handler (middleware, operational endpoints and
// routes), for httptest.
func (s *Server) Handler() http.Handler { return s.handler }

// Listening is closed once Run has bound its address; Addr is then valid.
// If Run fails to listen it stays open, so wait on Run's result too.
func (s *Server) Listening() <-chan struct{} { return s.listening }

// Addr is the address Run listens on (the real port when Config.Addr asked
// for port 0), or "" before it listens.
func (s *Server) Addr() string {
	a, _ := s.addr.Load().(string)
	return a
}

// Run listens on Config.Addr and serves until ctx ends, then shuts down
// gracefully: /readyz starts answering 503, intake stops (Stopping's
// channel closes), and in-flight requests get ShutdownTimeout to finish.
// The requests still running then were given ShutdownTimeout less a
// moment (a quarter of it, at most 1 s): their contexts end, with a
// *ShutdownError as the cause, and so does the work they Detach-ed, so
// that a handler waiting on the database answers 503 (WriteError) in the
// moment left; the connections of those that do not are closed. That is
// the shutdown's bound working, not a failure: it is logged as a warning
// with the number of requests ended and of those cut off without an
// answer, and Run returns nil, as after a clean shutdown. It returns an
// error if it cannot listen or serving fails. Run may be called once.
func (s *Server) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("httpserver: Run called twice")
	}
	ln := s.cfg.Listener
	if ln == nil {
		var lc net.ListenConfig
		var err error
		if ln, err = lc.Listen(ctx, "tcp", s.cfg.Addr); err != nil {
			return fmt.Errorf("httpserver: listen on %s: %w", s.cfg.Addr, err)
		}
	}
	s.addr.Store(ln.Addr().String())
	close(s.listening)
	s.log.Info("http listening", "addr", ln.Addr().String())

	served := make(chan error, 1)
	go func() { served <- s.srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("httpserver: serve: %w", err)
	case <-ctx.Done():
	}

	s.Drain()
	close(s.stopping)
	answer := min(endAnswerTime, s.cfg.ShutdownTimeout/4)
	wait := s.cfg.ShutdownTimeout - answer
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wait)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		s.endStillRunning(ctx, wait, answer)
		err = nil
	}
	if err != nil {
		_ = s.srv.Close()
		<-served
		return fmt.Errorf("httpserver: shutdown: %w", err)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("httpserver: serve: %w", err)
	}
	s.log.Info("http stopped", "addr", ln.Addr().String())
	return nil
}

// endStillRunning ends the requests still running after the shutdown
// waited for them (their contexts' cause a *ShutdownError), gives them
// answer to answer, then closes the connections of those that did not,
// and says so.
func (s *Server) endStillRunning(ctx context.Context, waited, answer time.Duration) {
	running := s.active.Load()
	s.endRequests(&ShutdownError{After: waited})
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), answer)
	defer cancel()
	cut := int64(0)
	if err := s.srv.Shutdown(actx); err != nil {
		cut = s.active.Load()
		_ = s.srv.Close()
	}
	s.log.Warn("shutdown: requests still running when HTTP's share of SHUTDOWN_TIMEOUT ran out were ended",
		"after", waited.String(), "requests", running, "answered", max(running-cut, 0), "cut_unanswered", cut)
}
