package web

// This file bounds what the order pages' event streams cost: how many may
// be open (streamLimits), and one database read per poll for all of them
// together (watcher) rather than one per stream.

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopflow/shopflow/pkg/platform/httpserver"
	"github.com/shopflow/shopflow/services/order/internal/store"
)

// Default stream limits, sized for the demo: a stream costs its
// connection, two goroutines and their buffers (some 70 KB: 500 streams
// took the service from 34 to 70 MB), and its order one id in the shared
// poll; one browser holds at most six streams to a host over HTTP/1.1.
const (
	DefaultMaxStreams          = 1000
	DefaultMaxStreamsPerClient = 20
)

// streamRetryAfter is the Retry-After of a refused stream, in seconds.
// EventSource cannot read it; the order page reopens a refused stream
// after 1 s, 2 s, 4 s... up to 30 s, and API clients can.
const streamRetryAfter = 10

// streamLimits bounds the open event streams, in all and per client (by
// httpserver.ClientPrefix: an IPv6 client by its /64).
type streamLimits struct {
	max, perClient int
	open           prometheus.Gauge
	refused        *prometheus.CounterVec

	mu       sync.Mutex
	total    int
	byClient map[netip.Prefix]int
}

func newStreamLimits(max, perClient int) *streamLimits {
	l := &streamLimits{
		max: max, perClient: perClient, byClient: map[netip.Prefix]int{},
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shop_order_streams_open",
			Help: "Order event streams (/orders/{id}/events) open now; at most ORDER_MAX_STREAMS.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shop_order_streams_refused_total",
			Help: "Order event streams refused, by the limit reached: total (ORDER_MAX_STREAMS, answered 503) or client (ORDER_MAX_STREAMS_PER_CLIENT, answered 429).",
		}, []string{"limit"}),
	}
	l.refused.WithLabelValues("total") // exported at 0, so an alert can see the first one
	l.refused.WithLabelValues("client")
	return l
}

// Collectors exports shop_order_streams_open and
// shop_order_streams_refused_total{limit}.
func (wb *Web) Collectors() []prometheus.Collector {
	return []prometheus.Collector{wb.streams.open, wb.streams.refused}
}

// acquire takes a stream for the request's client, or answers the
// refusal (503 when the service has ORDER_MAX_STREAMS open, 429 when
// the client has ORDER_MAX_STREAMS_PER_CLIENT) and returns false. A
// stream taken is given back by release.
func (l *streamLimits) acquire(w http.ResponseWriter, r *http.Request) (release func(), ok bool) {
	key := httpserver.ClientPrefix(r)
	l.mu.Lock()
	limit := ""
	switch {
	case l.byClient[key] >= l.perClient:
		limit = "client"
	case l.total >= l.max:
		limit = "total"
	default:
		l.total++
		l.byClient[key]++
	}
	l.mu.Unlock()
	if limit != "" {
		l.refused.WithLabelValues(limit).Inc()
		w.Header().Set("Retry-After", strconv.Itoa(streamRetryAfter))
		p := httpserver.Problem{Status: http.StatusServiceUnavailable,
			Detail: "too many order event streams are open on this service; try again later"}
		if limit == "client" {
			p = httpserver.Problem{Status: http.StatusTooManyRequests,
				Detail: "too many order event streams are open from your address; close some, or try again later"}
		}
		httpserver.WriteProblem(w, r, p)
		return nil, false
	}
	l.open.Inc()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			l.total--
			if l.byClient[key]--; l.byClient[key] <= 0 {
				delete(l.byClient, key)
			}
			l.mu.Unlock()
			l.open.Dec()
		})
	}, true
}

// watcher reads the rows of every order an open stream follows, each
// PollInterval, in one query (store.GetOrderRows), and hands each stream
// its order's: the database's load is one query per interval, however
// many streams are open (it was one query per stream per interval). Its
// loop runs while a stream follows an order, and ends with the last one.
type watcher struct {
	pool  store.DB
	every time.Duration
	log   *slog.Logger
	// failed throttles the log of failed reads.
	failed everyMinute

	mu    sync.Mutex
	watch map[string][]chan polled // order id → its streams' channels
	stop  context.CancelFunc       // ends the running loop; nil when none runs
}

func newWatcher(pool store.DB, every time.Duration, log *slog.Logger) *watcher {
	return &watcher{pool: pool, every: every, log: log, watch: map[string][]chan polled{}}
}

// follow subscribes to id's row: each read's outcome arrives on the
// channel (the latest replacing one not yet taken) until unfollow is
// called.
func (wt *watcher) follow(id string) (rows <-chan polled, unfollow func()) {
	c := make(chan polled, 1)
	wt.mu.Lock()
	wt.watch[id] = append(wt.watch[id], c)
	if wt.stop == nil {
		ctx, cancel := context.WithCancel(context.Background())
		wt.stop = cancel
		go wt.run(ctx)
	}
	wt.mu.Unlock()
	return c, func() {
		wt.mu.Lock()
		defer wt.mu.Unlock()
		cs := slices.DeleteFunc(wt.watch[id], func(x chan polled) bool { return x == c })
		if len(cs) == 0 {
			delete(wt.watch, id)
		} else {
			wt.watch[id] = cs
		}
		if len(wt.watch) == 0 && wt.stop != nil {
			// The last stream left: the loop ends, its read too, so
			// that no connection is held for nobody (the pool's close at
			// shutdown waits for those in use).
			wt.stop()
			wt.stop = nil
		}
	}
}

// run polls every interval until ctx ends.
func (wt *watcher) run(ctx context.Context) {
	tick := time.NewTicker(wt.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		wt.poll(ctx)
	}
}

// poll reads the followed orders once, bounded by pollTimeout, and sends
// each stream the outcome: its order's row, or the error.
func (wt *watcher) poll(ctx context.Context) {
	wt.mu.Lock()
	ids := make([]string, 0, len(wt.watch))
	for id := range wt.watch {
		ids = append(ids, id)
	}
	wt.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	readCtx, cancel := context.WithTimeout(ctx, pollTimeout)
	orders, err := store.GetOrderRows(readCtx, wt.pool, ids)
	cancel()
	if ctx.Err() != nil {
		return // the last stream left while it read
	}
	if err != nil && wt.failed.pass("poll") {
		wt.log.Warn("order streams: read the orders followed (logged once a minute while it fails; the streams stay open)",
			"orders", len(ids), "err", err)
	}
	wt.mu.Lock()
	defer wt.mu.Unlock()
	for id, cs := range wt.watch {
		p := polled{err: err}
		if err == nil {
			o, ok := orders[id]
			if !ok {
				continue // followed since the read began, or gone
			}
			p.o = o
		}
		for _, c := range cs {
			select { // the latest outcome replaces one not yet taken
			case <-c:
			default:
			}
			c <- p
		}
	}
}
