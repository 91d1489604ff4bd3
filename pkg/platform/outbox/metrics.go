package outbox

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics exports a schema's outbox as Prometheus metrics: the backlog and
// the age of its oldest row, read when scraped, and the events published,
// counted through the relay's OnPublish.
type Metrics struct {
	pool      *pgxpool.Pool
	log       *slog.Logger
	published prometheus.Counter
	backlog   *prometheus.Desc
	oldest    *prometheus.Desc
}

// NewMetrics returns the outbox metrics of the schema pool uses, labelled
// with service. Set the relay's OnPublish to m.OnPublish and register m.
func NewMetrics(pool *pgxpool.Pool, service string, log *slog.Logger) *Metrics {
	constLabels := prometheus.Labels{"service": service}
	return &Metrics{
		pool: pool,
		log:  log,
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "shop_outbox_published_total",
			Help: "Outbox events the relay published and the broker acknowledged.", ConstLabels: constLabels}),
		backlog: prometheus.NewDesc("shop_outbox_backlog", "Outbox events committed and not yet published.", nil, constLabels),
		oldest: prometheus.NewDesc("shop_outbox_oldest_unsent_seconds",
			"Age of the oldest outbox event not yet published (0 when none).", nil, constLabels),
	}
}

// OnPublish counts a published batch (for RelayConfig.OnPublish).
func (m *Metrics) OnPublish(n int, _ time.Duration) { m.published.Add(float64(n)) }

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.published.Describe(ch)
	ch <- m.backlog
	ch <- m.oldest
}

// Collect implements prometheus.Collector: one query per scrape, bounded
// to 2 s; when it fails the gauges are left out rather than wrong.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.published.Collect(ch)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var n int64
	var age float64
	err := m.pool.QueryRow(ctx, `SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 FROM outbox`).Scan(&n, &age)
	if err != nil {
		if m.log != nil {
			m.log.Warn("outbox metrics: read backlog", "err", err)
		}
		return
	}
	ch <- prometheus.MustNewConstMetric(m.backlog, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(m.oldest, prometheus.GaugeValue, age)
}
