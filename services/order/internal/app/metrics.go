package app

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopflow/shopflow/services/order/internal/store"
)

// Collector exports shop_orders{status}, counted when scraped.
func (a *App) Collector() prometheus.Collector { return ordersCollector{a} }

var ordersDesc = prometheus.NewDesc("shop_orders", "Orders by status.", []string{"status"}, nil)

type ordersCollector struct{ a *App }

func (c ordersCollector) Describe(ch chan<- *prometheus.Desc) { ch <- ordersDesc }

func (c ordersCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	counts, err := store.StatusCounts(ctx, c.a.pool)
	if err != nil {
		c.a.log.Warn("order metrics", "err", err)
		return
	}
	for status, n := range counts {
		ch <- prometheus.MustNewConstMetric(ordersDesc, prometheus.GaugeValue, float64(n), status)
	}
}
