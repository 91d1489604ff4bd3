package web

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/config"
	"github.com/shopflow/shopflow/pkg/platform/httpserver"
	"github.com/shopflow/shopflow/pkg/platform/pg"
	"github.com/shopflow/shopflow/services/order/internal/order"
	"github.com/shopflow/shopflow/services/order/internal/store"
)

// snapshot is the ops dashboard's data at one moment. A figure that could
// not be read is nil (shown "n/a") and the reason is in Problems; the
// dashboard never fails as a whole because one source is down.
type snapshot struct {
	At time.Time `json:"at"`
	// OrdersPerSecond is the placement rate over the last minute.
	OrdersPerSecond *float64      `json:"orders_per_second"`
	PlacedLastMin   *int64        `json:"placed_last_minute"`
	StatusMix       []statusShare `json:"status_mix"`
	Groups          []groupFigure `json:"groups"`
	Outbox          []backlog     `json:"outbox"`
	Recent          []recentOrder `json:"recent"`
	Problems        []string      `json:"problems"`
}

type statusShare struct {
	Status  string  `json:"status"`
	Count   int64   `json:"count"`
	Percent float64 `json:"percent"`
}

// groupFigure is one consumer group: records not yet committed on the
// topics it consumes, and records in its dead-letter topic.
type groupFigure struct {
	Group       string   `json:"group"`
	Topics      []string `json:"topics"`
	Lag         *int64   `json:"lag"`
	DeadLetters *int64   `json:"dead_letters"`
}

type backlog struct {
	Service string `json:"service"`
	Backlog *int64 `json:"backlog"`
}

type recentOrder struct {
	ID         string    `json:"id"`
	CustomerID string    `json:"customer_id"`
	Status     string    `json:"status"`
	Total      string    `json:"total"`
	PlacedAt   time.Time `json:"placed_at"`
}

// consumers are the suite's consumer groups and the topics each reads
// (ARCHITECTURE.md, "The flow").
var consumers = []struct {
	group  string
	topics []string
}{
	{"order", []string{events.TopicPayments, events.TopicInventory, events.TopicShipments}},
	{"payment", []string{events.TopicOrders}},
	{"inventory", []string{events.TopicOrders}},
	{"shipping", []string{events.TopicOrders}},
}

// recentCount is how many of the latest orders the dashboard lists.
const recentCount = 10

func (wb *Web) opsPage(w http.ResponseWriter, r *http.Request) {
	s, err := wb.snapshots.get(r.Context(), "", wb.snapshot)
	if err != nil {
		return // the client went away
	}
	wb.render(w, r, http.StatusOK, "ops", "Operations", s)
}

func (wb *Web) opsData(w http.ResponseWriter, r *http.Request) {
	s, err := wb.snapshots.get(r.Context(), "", wb.snapshot)
	if err != nil {
		return // the client went away
	}
	w.Header().Set("Cache-Control", "no-store")
	httpserver.WriteJSON(w, http.StatusOK, s)
}

// snapshot reads every figure at once, each source within the timeout.
// The pages take it through wb.snapshots, so that their viewers share it.
func (wb *Web) snapshot(ctx context.Context) snapshot {
	ctx, cancel := context.WithTimeout(ctx, 2*wb.cfg.Timeout)
	defer cancel()
	s := snapshot{At: time.Now().UTC(), StatusMix: []statusShare{}, Recent: []recentOrder{}}
	var mu sync.Mutex
	// The page, which anyone on the port can read, gets a short reason;
	// the log gets the error, which names hosts and users (as /readyz's
	// do), at most once a minute a figure: the page asks every 2 s.
	problem := func(what string, err error) {
		mu.Lock()
		defer mu.Unlock()
		s.Problems = append(s.Problems, what+": "+publicReason(err)+" (the order service's log says why)")
		if !errors.Is(err, context.Canceled) && wb.problemLog.pass(what) { // a page closed is no news
			wb.log.Warn("ops dashboard: figure unavailable", "figure", what, "err", err)
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		n, err := store.PlacedSince(ctx, wb.pool, s.At.Add(-time.Minute))
		if err != nil {
			problem("orders per second", err)
			return
		}
		rate := float64(n) / 60
		s.PlacedLastMin, s.OrdersPerSecond = &n, &rate
	})
	wg.Go(func() {
		counts, err := wb.orders.StatusCounts(ctx)
		if err != nil {
			problem("status mix", err)
			return
		}
		s.StatusMix = statusMix(counts)
	})
	wg.Go(func() {
		list, _, err := store.ListOrders(ctx, wb.pool, store.Filter{Limit: recentCount})
		if err != nil {
			problem("recent orders", err)
			return
		}
		for _, o := range list {
			s.Recent = append(s.Recent, recentOrder{ID: o.ID, CustomerID: o.CustomerID, Status: string(o.Status),
				Total: formatMoney(o.TotalCents, o.Currency), PlacedAt: o.PlacedAt})
		}
	})
	wg.Go(func() {
		groups, err := wb.kafkaFigures(ctx)
		if err != nil {
			problem("kafka", err)
		}
		s.Groups = groups
	})
	names := []string{"order"}
	for name := range wb.cfg.Peers {
		names = append(names, name)
	}
	slices.Sort(names[1:])
	s.Outbox = make([]backlog, len(names))
	for i, name := range names {
		s.Outbox[i].Service = name
		wg.Go(func() {
			var n int64
			var err error
			if name == "order" {
				n, err = store.OutboxBacklog(ctx, wb.pool)
			} else {
				n, err = wb.peerBacklog(ctx, wb.cfg.Peers[name])
			}
			if err != nil {
				problem(name+" outbox backlog", err)
				return
			}
			s.Outbox[i].Backlog = &n
		})
	}
	wg.Wait()
	slices.Sort(s.Problems)
	return s
}

// statusMix turns counts into shares, in the saga's order.
func statusMix(counts map[string]int64) []statusShare {
	var total int64
	for _, n := range counts {
		total += n
	}
	out := []statusShare{}
	for _, st := range []order.Status{order.Pending, order.Confirmed, order.Cancelled} {
		sh := statusShare{Status: string(st), Count: counts[string(st)]}
		if total > 0 {
			sh.Percent = float64(sh.Count) * 100 / float64(total)
		}
		out = append(out, sh)
	}
	return out
}

// peerBacklog scrapes a service's /metrics for shop_outbox_backlog.
func (wb *Web) peerBacklog(ctx context.Context, base string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "text/plain")
	res, err := wb.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 0, &statusError{url: config.MaskURL(base), status: res.Status}
	}
	return metricSum(io.LimitReader(res.Body, 8<<20), "shop_outbox_backlog")
}

// errNoMetric says a scrape did not have the metric (a service leaves its
// outbox gauges out while it cannot read its database).
var errNoMetric = errors.New("metric not exported")

// statusError is a peer's /metrics answering other than 200.
type statusError struct {
	url    string
	status string
}

func (e *statusError) Error() string { return fmt.Sprintf("GET %s/metrics: %s", e.url, e.status) }

// publicReason says why a figure could not be read without what the error
// names (hosts, users, addresses).
func publicReason(err error) string {
	var st *statusError
	var req *url.Error // a peer's /metrics out of reach (pg.Unavailable leaves those out)
	switch {
	case errors.Is(err, errNoMetric):
		return "not in its /metrics (left out while it cannot read its database)"
	case errors.As(err, &st):
		return "its /metrics answered " + st.status
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer in time"
	case pg.Unavailable(err), errors.As(err, &req):
		return "unavailable"
	}
	return "could not be read"
}

// everyMinute passes a key at most once a minute.
type everyMinute struct {
	mu   sync.Mutex
	last map[string]time.Time
}

func (e *everyMinute) pass(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	if t, ok := e.last[key]; ok && now.Sub(t) < time.Minute {
		return false
	}
	if e.last == nil {
		e.last = map[string]time.Time{}
	}
	e.last[key] = now
	return true
}

// metricSum adds up every sample of the named metric in a Prometheus text
// exposition.
func metricSum(r io.Reader, name string) (int64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var sum float64
	found := false
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue // a longer name, e.g. shop_outbox_backlog_total
		}
		if i := strings.LastIndexByte(rest, '}'); i >= 0 {
			rest = rest[i+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return 0, fmt.Errorf("%s: sample without a value: %q", name, line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %q: %w", name, line, err)
		}
		sum += v
		found = true
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("%s: %w", name, errNoMetric)
	}
	return int64(sum), nil
}

// kafkaFigures reads each group's lag (partition ends minus committed
// offsets; a partition the group never committed counts from its first
// offset) and dead-letter count (records held in shop.dlq.<group>).
// Groups whose figures could not be read have nil values.
func (wb *Web) kafkaFigures(ctx context.Context) ([]groupFigure, error) {
	p := wb.cfg.TopicPrefix
	out := make([]groupFigure, len(consumers))
	var names []string
	for i, c := range consumers {
		out[i] = groupFigure{Group: c.group, Topics: c.topics}
		for _, t := range c.topics {
			if !slices.Contains(names, p+t) {
				names = append(names, p+t)
			}
		}
		names = append(names, p+events.DLQTopic(c.group))
	}
	if len(wb.cfg.Brokers) == 0 {
		return out, errors.New("no brokers configured")
	}
	client := &kafka.Client{Addr: kafka.TCP(wb.cfg.Brokers...), Timeout: wb.cfg.Timeout, Transport: wb.cfg.Transport}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
	if err != nil {
		return out, fmt.Errorf("metadata: %w", err)
	}
	parts := map[string][]int{}
	reqs := map[string][]kafka.OffsetRequest{}
	for _, t := range md.Topics {
		if t.Error != nil {
			continue // not created yet (a DLQ before its first letter): counts as empty
		}
		for _, pt := range t.Partitions {
			parts[t.Name] = append(parts[t.Name], pt.ID)
			reqs[t.Name] = append(reqs[t.Name], kafka.FirstOffsetOf(pt.ID), kafka.LastOffsetOf(pt.ID))
		}
	}
	type span struct{ first, last int64 }
	spans := map[string]map[int]span{}
	if len(reqs) > 0 {
		res, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: reqs})
		if err != nil {
			return out, fmt.Errorf("list offsets: %w", err)
		}
		for topic, ps := range res.Topics {
			spans[topic] = map[int]span{}
			for _, pt := range ps {
				if pt.Error == nil {
					spans[topic][pt.Partition] = span{pt.FirstOffset, pt.LastOffset}
				}
			}
		}
	}
	var errs []error
	for i, c := range consumers {
		var dead int64
		for _, sp := range spans[p+events.DLQTopic(c.group)] {
			dead += sp.last - sp.first
		}
		out[i].DeadLetters = &dead

		want := map[string][]int{}
		for _, t := range c.topics {
			if ps := parts[p+t]; len(ps) > 0 {
				want[p+t] = ps
			}
		}
		committed := map[string]map[int]int64{}
		if len(want) > 0 {
			res, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: p + c.group, Topics: want})
			if err == nil {
				err = res.Error
			}
			switch {
			case errors.Is(err, kafka.GroupIdNotFound):
				// Some brokers (kfake) say so for a group that never
				// committed: everything is still to be read.
			case err != nil:
				errs = append(errs, fmt.Errorf("group %s: %w", c.group, err))
				continue
			default:
				for topic, ps := range res.Topics {
					committed[topic] = map[int]int64{}
					for _, pt := range ps {
						if pt.Error == nil && pt.CommittedOffset >= 0 {
							committed[topic][pt.Partition] = pt.CommittedOffset
						}
					}
				}
			}
		}
		var lag int64
		for topic := range want {
			for part, sp := range spans[topic] {
				from := sp.first
				if off, ok := committed[topic][part]; ok {
					from = off
				}
				lag += max(sp.last-from, 0)
			}
		}
		out[i].Lag = &lag
	}
	return out, errors.Join(errs...)
}
