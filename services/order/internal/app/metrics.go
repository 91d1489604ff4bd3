package app

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Collectors exports shop_orders{status}, counted when scraped, the
// histogram of how many orders each placement batch stored
// (shop_order_placement_group_size; see placer.go), the count of
// orders cancelled for waiting too long (shop_orders_expired_total) and
// that of results contradicting their step's recorded outcome
// (shop_order_conflicting_results_total{step}).
func (a *App) Collectors() []prometheus.Collector {
	return []prometheus.Collector{ordersCollector{a}, a.groupSizes, a.expired, a.conflicts}
}

func newConflicts() *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shop_order_conflicting_results_total",
		Help: "Results the order service left out because they contradict their step's recorded outcome (authorized, then declined; reserved, then rejected): one of the two answers is not the service's own. The log says which order (WARN).",
	}, []string{"step"})
	for _, step := range []string{"payment", "inventory", "shipping"} {
		c.WithLabelValues(step) // exported at 0, so an alert can see the first one
	}
	return c
}

func newExpired() prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{
		Name: "shop_orders_expired_total",
		Help: "Orders cancelled because a step had not answered within ORDER_PENDING_TIMEOUT: an event dead-lettered or lost (see shop dlq list), or a service down or held up for the whole timeout.",
	})
}

func newGroupSizes() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "shop_order_placement_group_size",
		Help:    "Orders stored by one placement batch (one transaction).",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64},
	})
}

var ordersDesc = prometheus.NewDesc("shop_orders", "Orders by status.", []string{"status"}, nil)

type ordersCollector struct{ a *App }

func (c ordersCollector) Describe(ch chan<- *prometheus.Desc) { ch <- ordersDesc }

func (c ordersCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts, err := c.a.StatusCounts(ctx)
	if err != nil {
		c.a.log.Warn("order metrics", "err", err)
		return
	}
	for status, n := range counts {
		ch <- prometheus.MustNewConstMetric(ordersDesc, prometheus.GaugeValue, float64(n), status)
	}
}
