package service

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/platform/httpserver"
)

// stage is one step of start-up, as /readyz and the metric name it.
type stage struct{ name, doing string }

// The stages in their order; the metric has a series for each.
var (
	stagePostgres   = stage{"postgres", "waiting for PostgreSQL"}
	stageMigrations = stage{"migrations", "migrating the schema"}
	stageKafka      = stage{"kafka", "waiting for Kafka to create the topics"}
	stageSetup      = stage{"setup", "setting up the service"}
	stages          = []stage{stagePostgres, stageMigrations, stageKafka, stageSetup}
)

// starting is where a service's start-up is, for its /readyz
// (httpserver.NewStarting) and its shop_service_starting while it
// starts.
type starting struct {
	gauge *prometheus.GaugeVec

	mu      sync.Mutex
	stage   stage
	lastErr string // publicCause's words
}

func newStarting(service string) *starting {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "shop_service_starting",
		Help: "1 for the stage of start-up the service is in (postgres: waiting for PostgreSQL; migrations; " +
			"kafka: waiting for Kafka, creating the topics; setup), 0 for the others; all 0 once it has started.",
		ConstLabels: prometheus.Labels{"service": service},
	}, []string{"stage"})
	for _, st := range stages {
		g.WithLabelValues(st.name) // every stage at 0, not absent
	}
	return &starting{gauge: g}
}

// enter makes st the stage start-up is in, with no error met yet.
func (s *starting) enter(st stage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.set(st)
	s.lastErr = ""
}

// done says start-up is over.
func (s *starting) done() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.set(stage{})
}

// set moves the gauge's 1 from the current stage to st; s.mu is held.
func (s *starting) set(st stage) {
	if s.stage.name != "" {
		s.gauge.WithLabelValues(s.stage.name).Set(0)
	}
	if st.name != "" {
		s.gauge.WithLabelValues(st.name).Set(1)
	}
	s.stage = st
}

func (s *starting) status() httpserver.StartStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return httpserver.StartStatus{Stage: s.stage.name, Doing: s.stage.doing, LastError: s.lastErr}
}

// tap returns log, also keeping the error of each warning it logs as the
// stage's last: pg.Connect and kafkatopics log every failed attempt
// that way while they wait ("postgres not ready, retrying", "err"), and
// /readyz shows the last one.
func (s *starting) tap(log *slog.Logger) *slog.Logger {
	return slog.New(tapHandler{next: log.Handler(), s: s})
}

type tapHandler struct {
	next slog.Handler
	s    *starting
}

func (h tapHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.next.Enabled(ctx, l) // whatever LOG_LEVEL leaves out
}

func (h tapHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		r.Attrs(func(a slog.Attr) bool {
			if err, ok := a.Value.Any().(error); ok && a.Key == "err" {
				cause := publicCause(err)
				h.s.mu.Lock()
				h.s.lastErr = cause
				h.s.mu.Unlock()
				return false
			}
			return true
		})
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h tapHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return tapHandler{next: h.next.WithAttrs(as), s: h.s}
}

func (h tapHandler) WithGroup(name string) slog.Handler {
	return tapHandler{next: h.next.WithGroup(name), s: h.s}
}

// pgConditions name the SQLSTATEs a server that is starting, stopping or
// full answers a connection with (pg.Transient's), which start-up waits
// out.
var pgConditions = map[string]string{
	"57P01": "the server is shutting down",
	"57P02": "the server is shutting down",
	"57P03": "the server is starting up",
	"53300": "too many connections",
	"53100": "disk full",
}

// publicCause says what err is in words fit for /readyz, which anyone who
// reaches the port reads: the kind of failure, never the hosts, ports,
// users or databases its text names (the log has those).
func publicCause(err error) string {
	var pgErr *pgconn.PgError
	var kafkaErr kafka.Error
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "no route to host"
	case errors.As(err, &dnsErr):
		if dnsErr.IsNotFound {
			return "host not found"
		}
		return "host name lookup failed"
	case errors.As(err, &pgErr):
		if c, ok := pgConditions[pgErr.Code]; ok {
			return c + " (SQLSTATE " + pgErr.Code + ")"
		}
		return "SQLSTATE " + pgErr.Code
	case errors.As(err, &kafkaErr): // before net.Error, which it also is
		return kafkaErr.Title()
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return "no answer in time"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	}
	return "failing (the service log says why)"
}
