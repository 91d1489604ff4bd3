package httpserver

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/trace"
)

// metrics are the HTTP metrics every service exports.
type metrics struct {
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
	// adminThrottled counts the admin requests RequireToken's throttle
	// refused.
	adminThrottled prometheus.Counter
}

// newMetrics registers the HTTP metrics on reg, reusing ones a previous
// server registered there, and adds the Go and process collectors unless
// present.
func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		duration: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "shop_http_request_duration_seconds",
			Help: "HTTP request latency by method, chi route pattern and status code (499: the client went away before its answer); " +
				"lifecycle is starting or stopping for the answers the service's start-up or shutdown gave in place of its handlers (503s), else empty.",
			Buckets: prometheus.DefBuckets,
		}, []string{"method", "route", "code", "lifecycle"})),
		inFlight: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shop_http_requests_in_flight",
			Help: "HTTP requests being served.",
		})),
		adminThrottled: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shop_http_admin_throttled_total",
			Help: "Admin requests (ADMIN_TOKEN) answered 429 without their token checked: their client sent too many wrong tokens.",
		})),
	}
	register(reg, collectors.NewGoCollector())
	register(reg, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// register adds c to reg, or returns the equal collector already there.
// Any other conflict leaves c unregistered: metrics must not stop a
// service from starting.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

// knownMethods bounds the method label; anything else counts as "other".
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

// instrument observes every request. It sits inside the recoverer, so a
// panicking handler is counted as a 500 and the panic passed on.
func (m *metrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ww := wrap(w, r)
		m.inFlight.Inc()
		start := time.Now()
		defer func() {
			m.inFlight.Dec()
			rec := recover()
			status := outcome(ww, r)
			if rec != nil {
				status = http.StatusInternalServerError
			}
			method := r.Method
			if !knownMethods[method] {
				method = "other"
			}
			route := routeOf(r)
			m.duration.WithLabelValues(method, route, strconv.Itoa(status), lifecycleOf(r, status)).Observe(time.Since(start).Seconds())
			// Name the request's span (if traced) by its route, not its
			// path: one name per endpoint, not per order id.
			trace.SpanFromContext(r.Context()).SetName(method + " " + route)
			if rec != nil {
				panic(rec)
			}
		}()
		next.ServeHTTP(ww, r)
	})
}

// The lifecycle label's values: the service's start-up or its shutdown,
// not its handlers, gave the answer. An alert on server errors leaves
// them out: a restart's 503s are no fault of the service's code or its
// database, and ShopServiceNotStarted watches a start-up that does not
// end.
const (
	lifecycleStarting = "starting"
	lifecycleStopping = "stopping"
)

// lifecycleOf is the lifecycle label of r's answer, status: "starting"
// for a starting server's 503s (its /readyz, and every route in place of
// the service's), "stopping" for /readyz's 503 while the server drains
// and for a server error of a request the shutdown ended (its context's
// cause a *ShutdownError: WriteError's 503, or the 500 of a request not
// safe to send again), "" for every other answer.
func lifecycleOf(r *http.Request, status int) string {
	if req := requestFrom(r.Context()); req != nil && req.lifecycle != "" {
		return req.lifecycle
	}
	if status >= 500 {
		if _, ok := endedByServer(r.Context()).(*ShutdownError); ok {
			return lifecycleStopping
		}
	}
	return ""
}

// markLifecycle labels r's answer as the lifecycle's (lifecycleOf).
func markLifecycle(r *http.Request, lifecycle string) {
	if req := requestFrom(r.Context()); req != nil {
		req.lifecycle = lifecycle
	}
}
