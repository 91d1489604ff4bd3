// Package alerts tests deploy/prometheus/alerts.yml, the alert rules the
// compose Prometheus loads. It is a module of its own, outside go.work, so
// that the services' modules do not carry Prometheus's dependencies; make
// test runs it with GOWORK=off.
package alerts

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/rules"
)

const rulesFile = "../prometheus/alerts.yml"

// evalInterval is deploy/prometheus/prometheus.yml's evaluation_interval.
const evalInterval = 15 * time.Second

// loadRules parses the rule file the way Prometheus loads it: YAML with no
// unknown fields, every expression, label and annotation template. The
// module requires the Prometheus release the compose file runs (go.mod's
// v0.3NN.x is Prometheus 3.NN.x; e2e's TestComposePrometheusVersion holds
// the two together), with no feature flags (parser.ParseExpr refuses the
// experimental functions), so a rule this release cannot load fails here.
func loadRules(t *testing.T) []rulefmt.Rule {
	t.Helper()
	groups, errs := rulefmt.ParseFile(rulesFile, false)
	for _, err := range errs {
		t.Error(err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	var out []rulefmt.Rule
	for _, g := range groups.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no rules", rulesFile)
	}
	return out
}

// TestRulesLoad: the file loads, and every alert says how bad it is, waits
// before firing, and tells the operator what happened and what to do.
func TestRulesLoad(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range loadRules(t) {
		if r.Alert == "" {
			t.Errorf("recording rule %s: the file holds alerts only", r.Record)
			continue
		}
		if seen[r.Alert] {
			t.Errorf("alert %s is defined twice", r.Alert)
		}
		seen[r.Alert] = true
		if r.For <= 0 {
			t.Errorf("alert %s has no for: (one bad scrape would page)", r.Alert)
		}
		if s := r.Labels["severity"]; s != "critical" && s != "warning" {
			t.Errorf("alert %s: severity %q, want critical or warning", r.Alert, s)
		}
		for _, a := range []string{"summary", "description"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("alert %s has no %s annotation", r.Alert, a)
			}
		}
	}
}

// exportedMetrics reads the metric names the services define from their
// code (pkg and services, tests left out): Name: "shop_..." in the
// client's *Opts, NewDesc("shop_...") and the inbox's desc("shop_...").
// A histogram exports _bucket, _count and _sum.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	def := regexp.MustCompile(`(?:Name:\s*|NewDesc\(|desc\()"(shop_[a-z_]+)"`)
	hist := regexp.MustCompile(`NewHistogram(?:Vec)?\(prometheus\.HistogramOpts\{\s*Name:\s*"(shop_[a-z_]+)"`)
	names := map[string]bool{"up": true} // Prometheus's own, per target
	for _, root := range []string{"../../pkg", "../../services"} {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range def.FindAllSubmatch(b, -1) {
				names[string(m[1])] = true
			}
			for _, m := range hist.FindAllSubmatch(b, -1) {
				for _, s := range []string{"_bucket", "_count", "_sum"} {
					names[string(m[1])+s] = true
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// The reading itself: names every package above defines.
	for _, m := range []string{"shop_http_request_duration_seconds_count", "shop_outbox_backlog", "shop_consumer_lag", "shop_orders_expired_total"} {
		if !names[m] {
			t.Fatalf("found no definition of %s in the code: the pattern above is out of date", m)
		}
	}
	return names
}

// sharedGauges are read from shared state (the group's offsets, the
// schema's tables) and exported whole by every replica, as on the
// dashboard (e2e/compose_test.go).
var sharedGauges = map[string]bool{"shop_consumer_lag": true, "shop_outbox_backlog": true,
	"shop_outbox_oldest_unsent_seconds": true, "shop_orders": true}

// knownLabels are the labels the rules may match or group on: the
// target's (job, instance), the const labels of pkg/platform's collectors
// (service, group), their variable ones (lag: topic, partition; HTTP:
// method, route, code, lifecycle; start-up: stage; shop_orders: status;
// the order service's conflicting results: step).
var knownLabels = map[string]bool{"job": true, "instance": true, "service": true, "group": true,
	"topic": true, "partition": true, "method": true, "route": true, "code": true, "lifecycle": true, "stage": true, "status": true, "step": true}

// TestRulesMetrics holds the expressions to the code: every metric is one
// a service exports, every label one they carry, and every shared gauge
// is taken as one replica's value (max by, without instance) before
// anything sums it, unless the rule only asks whether it is there
// (absent(), or the right side of unless).
func TestRulesMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	for _, r := range loadRules(t) {
		expr, err := parser.ParseExpr(r.Expr)
		if err != nil {
			t.Fatalf("%s: %v", r.Alert, err)
		}
		checkLabels := func(ls []string) {
			for _, l := range ls {
				if !knownLabels[l] {
					t.Errorf("alert %s uses label %q, which no service metric carries", r.Alert, l)
				}
			}
		}
		parser.Inspect(expr, func(node parser.Node, path []parser.Node) error {
			switch n := node.(type) {
			case *parser.AggregateExpr:
				checkLabels(n.Grouping)
			case *parser.BinaryExpr:
				if n.VectorMatching != nil {
					checkLabels(n.VectorMatching.MatchingLabels)
				}
			case *parser.VectorSelector:
				for _, m := range n.LabelMatchers {
					if m.Name != labels.MetricName {
						checkLabels([]string{m.Name})
					}
				}
				if !exported[n.Name] {
					t.Errorf("alert %s queries %s, which no service exports", r.Alert, n.Name)
				}
				if sharedGauges[n.Name] {
					if why := onePerReplica(n, path); why != "" {
						t.Errorf("alert %s: %s %s: every replica exports it whole, so take max by (...) first (%s)", r.Alert, n.Name, why, r.Expr)
					}
				}
			}
			return nil
		})
	}
}

// onePerReplica says what is wrong with how the selector sel, under the
// ancestors path, reads a shared gauge, or "" when nothing is.
func onePerReplica(sel parser.Node, path []parser.Node) string {
	child := sel
	for i := len(path) - 1; i >= 0; i-- {
		switch a := path[i].(type) {
		case *parser.AggregateExpr:
			if a.Op != parser.MAX || a.Without {
				return "is aggregated by " + a.Op.String() + " first"
			}
			if slices.Contains(a.Grouping, "instance") {
				return "is under max by (..., instance), still one value per replica"
			}
			return ""
		case *parser.Call:
			if a.Func.Name == "absent" || a.Func.Name == "absent_over_time" {
				return ""
			}
		case *parser.BinaryExpr:
			if a.Op == parser.LUNLESS && a.RHS == child {
				return ""
			}
		}
		child = path[i]
	}
	return "is not under max by (...)"
}

// alertCase is synthetic series (promqltest's load syntax, from time 0)
// and the alerts a rule should have firing after being evaluated every
// evalInterval up to at: each given by its labels other than alertname
// and severity, e.g. {group="payment"}. No want: quiet, at every
// evaluation up to at, not only the last.
type alertCase struct {
	alert, name string
	load        string
	at          time.Duration
	want        []string
}

var alertCases = []alertCase{
	{alert: "ShopTargetDown", name: "a replica down for 3 minutes",
		load: `load 1m
			up{job="payment",instance="10.0.0.5:8081"} 1 1 0x5
			up{job="payment",instance="10.0.0.6:8081"} 1x7`,
		at: 5 * time.Minute, want: []string{`{instance="10.0.0.5:8081", job="payment"}`}},
	{alert: "ShopTargetDown", name: "one failed scrape, then up again; another job's target down",
		load: `load 1m
			up{job="payment",instance="10.0.0.5:8081"} 1 1 0 1 1
			up{job="node",instance="10.0.0.9:9100"} 0x5`,
		at: 4 * time.Minute},

	{alert: "ShopServiceGone", name: "no order target at all",
		load: `load 1m
			up{job="payment",instance="a"} 1x5
			up{job="inventory",instance="b"} 1x5
			up{job="shipping",instance="c"} 1x5`,
		at: 4 * time.Minute, want: []string{`{job="order"}`}},
	{alert: "ShopServiceGone", name: "every service has a target",
		load: `load 1m
			up{job="order",instance="o"} 1x5
			up{job="payment",instance="a"} 0x5
			up{job="inventory",instance="b"} 1x5
			up{job="shipping",instance="c"} 1x5`,
		at: 4 * time.Minute},

	{alert: "ShopServiceNotStarted", name: "a replica stuck migrating",
		load: `load 1m
			shop_service_starting{job="order",instance="o",service="order",stage="postgres"} 0x10
			shop_service_starting{job="order",instance="o",service="order",stage="migrations"} 1x10`,
		at: 7 * time.Minute, want: []string{`{instance="o", job="order", service="order", stage="migrations"}`}},
	{alert: "ShopServiceNotStarted", name: "scraped once at postgres, then stuck migrating for 9 minutes",
		load: `load 1m
			shop_service_starting{job="order",instance="o",service="order",stage="postgres"} 1 0x10
			shop_service_starting{job="order",instance="o",service="order",stage="migrations"} 0 1x10`,
		at: 9 * time.Minute, want: []string{`{instance="o", job="order", service="order", stage="migrations"}`}},
	{alert: "ShopServiceNotStarted", name: "a replica restarted every 2 minutes, waiting for PostgreSQL each time",
		load: `load 1m
			shop_service_starting{job="payment",instance="a",service="payment",stage="postgres"} 1 stale 1 stale 1 stale 1 stale 1 stale 1`,
		at: 10 * time.Minute, want: []string{`{instance="a", job="payment", service="payment", stage="postgres"}`}},
	{alert: "ShopServiceNotStarted", name: "started after 2 minutes' wait for PostgreSQL",
		load: `load 1m
			shop_service_starting{job="payment",instance="a",service="payment",stage="postgres"} 1 1 0x10`,
		at: 12 * time.Minute},
	{alert: "ShopServiceNotStarted", name: "up for a while, then restarted and waiting for 4 minutes",
		load: `load 1m
			shop_service_starting{job="payment",instance="a",service="payment",stage="postgres"} 0x5 stale 1x4`,
		at: 10 * time.Minute},

	{alert: "ShopConsumerLagUnreadable", name: "one replica scraped without its lag",
		load: `load 1m
			shop_consumer_processed_total{job="payment",instance="a",service="payment",group="payment"} 0+5x10
			shop_consumer_processed_total{job="payment",instance="b",service="payment",group="payment"} 0+5x10
			shop_consumer_lag{job="payment",instance="a",service="payment",group="payment",topic="shop.orders",partition="0"} 3x10
			shop_consumer_lag{job="payment",instance="b",service="payment",group="payment",topic="shop.orders",partition="0"} 3 3 stale`,
		at: 10 * time.Minute, want: []string{`{group="payment", instance="b", job="payment", service="payment"}`}},
	{alert: "ShopConsumerLagUnreadable", name: "every replica reads its lag (0 is a value)",
		load: `load 1m
			shop_consumer_processed_total{job="payment",instance="a",service="payment",group="payment"} 0+5x10
			shop_consumer_lag{job="payment",instance="a",service="payment",group="payment",topic="shop.orders",partition="0"} 0x10`,
		at: 10 * time.Minute},

	{alert: "ShopOutboxUnreadable", name: "a replica scraped without its outbox gauges",
		load: `load 1m
			shop_outbox_published_total{job="order",instance="o",service="order"} 0+5x10
			shop_outbox_backlog{job="order",instance="o",service="order"} 2 2 stale`,
		at: 10 * time.Minute, want: []string{`{instance="o", job="order", service="order"}`}},
	{alert: "ShopOutboxUnreadable", name: "the outbox read",
		load: `load 1m
			shop_outbox_published_total{job="order",instance="o",service="order"} 0+5x10
			shop_outbox_backlog{job="order",instance="o",service="order"} 0x10`,
		at: 10 * time.Minute},

	{alert: "ShopConsumerLagHigh", name: "lag over 1000 and growing",
		load: `load 1m
			shop_consumer_lag{job="payment",instance="a",group="payment",service="payment",topic="shop.orders",partition="0"} 500+100x20
			shop_consumer_lag{job="payment",instance="a",group="payment",service="payment",topic="shop.orders",partition="1"} 500+100x20
			shop_consumer_lag{job="payment",instance="b",group="payment",service="payment",topic="shop.orders",partition="0"} 500+100x20
			shop_consumer_lag{job="payment",instance="b",group="payment",service="payment",topic="shop.orders",partition="1"} 500+100x20`,
		at: 15 * time.Minute, want: []string{`{group="payment"}`}},
	{alert: "ShopConsumerLagHigh", name: "two replicas export the same 700-900 lag: counted once",
		load: `load 1m
			shop_consumer_lag{job="payment",instance="a",group="payment",service="payment",topic="shop.orders",partition="0"} 700+10x20
			shop_consumer_lag{job="payment",instance="b",group="payment",service="payment",topic="shop.orders",partition="0"} 700+10x20`,
		at: 15 * time.Minute},
	{alert: "ShopConsumerLagHigh", name: "lag high but not growing",
		load: `load 1m
			shop_consumer_lag{job="payment",instance="a",group="payment",service="payment",topic="shop.orders",partition="0"} 5000x20`,
		at: 15 * time.Minute},

	{alert: "ShopDeadLetters", name: "one dead letter",
		load: `load 1m
			shop_consumer_dead_lettered_total{job="payment",instance="a",group="payment",service="payment"} 0 0 0 1x5
			shop_consumer_dead_lettered_total{job="payment",instance="b",group="payment",service="payment"} 0x8`,
		at: 6 * time.Minute, want: []string{`{group="payment"}`}},
	{alert: "ShopDeadLetters", name: "none new (old ones counted before)",
		load: `load 1m
			shop_consumer_dead_lettered_total{job="payment",instance="a",group="payment",service="payment"} 7x20
			shop_consumer_dead_lettered_total{job="shipping",instance="s",group="shipping",service="shipping"} 0x20`,
		at: 15 * time.Minute},

	{alert: "ShopOutboxStuck", name: "the oldest event keeps ageing",
		load: `load 1m
			shop_outbox_oldest_unsent_seconds{job="order",instance="a",service="order"} 0+60x12
			shop_outbox_oldest_unsent_seconds{job="order",instance="b",service="order"} 0+60x12`,
		at: 10 * time.Minute, want: []string{`{service="order"}`}},
	{alert: "ShopOutboxStuck", name: "a 3-minute broker restart, then published",
		load: `load 1m
			shop_outbox_oldest_unsent_seconds{job="order",instance="a",service="order"} 0 60 120 180 0x8`,
		at: 10 * time.Minute},

	{alert: "ShopOrdersExpired", name: "an order expired",
		load: `load 1m
			shop_orders_expired_total{job="order",instance="o"} 0 0 1x5`,
		at: 4 * time.Minute, want: []string{`{job="order"}`}},
	{alert: "ShopOrdersExpired", name: "none for the last 15 minutes",
		load: `load 1m
			shop_orders_expired_total{job="order",instance="o"} 3x20`,
		at: 15 * time.Minute},

	{alert: "ShopOrderConflictingResults", name: "one contradicting payment result",
		load: `load 1m
			shop_order_conflicting_results_total{job="order",instance="o",step="payment"} 0 0 1x5
			shop_order_conflicting_results_total{job="order",instance="o",step="shipping"} 0x7`,
		at: 4 * time.Minute, want: []string{`{job="order", step="payment"}`}},
	{alert: "ShopOrderConflictingResults", name: "none, exported at 0",
		load: `load 1m
			shop_order_conflicting_results_total{job="order",instance="o",step="payment"} 0x20`,
		at: 15 * time.Minute},

	{alert: "ShopOrderHTTPErrors", name: "about 9% of orders fail with 500",
		load: `load 1m
			shop_http_request_duration_seconds_count{job="order",instance="o",method="POST",route="/v1/orders",code="201"} 0+600x15
			shop_http_request_duration_seconds_count{job="order",instance="o",method="POST",route="/v1/orders",code="500"} 0+60x15`,
		at: 15 * time.Minute, want: []string{`{job="order"}`}},
	{alert: "ShopOrderHTTPErrors", name: "/readyz answers 503 (a dependency down), the API is fine",
		load: `load 1m
			shop_http_request_duration_seconds_count{job="order",instance="o",method="GET",route="/readyz",code="503"} 0+12x15
			shop_http_request_duration_seconds_count{job="order",instance="o",method="POST",route="/v1/orders",code="201"} 0+60x15`,
		at: 15 * time.Minute},
	{alert: "ShopOrderHTTPErrors", name: "clients giving up (499) on slow answers",
		load: `load 1m
			shop_http_request_duration_seconds_count{job="order",instance="o",method="POST",route="/v1/orders",code="201"} 0+600x15
			shop_http_request_duration_seconds_count{job="order",instance="o",method="POST",route="/v1/orders",code="499"} 0+60x15`,
		at: 15 * time.Minute},
	{alert: "ShopOrderHTTPErrors", name: "one 500 among two requests a minute",
		load: `load 1m
			shop_http_request_duration_seconds_count{job="order",instance="o",method="GET",route="/v1/orders/{id}",code="200"} 0+2x15
			shop_http_request_duration_seconds_count{job="order",instance="o",method="GET",route="/v1/orders/{id}",code="500"} 0x5 1x10`,
		at: 10 * time.Minute},
	// Three replicas restarted one after the other (at minutes 2, 4 and
	// 6), each answering its third of the placements 503 for the minute
	// it takes to start (a proxy that does not check /readyz sends it
	// its share), and two requests ended as each stopped: a fifth of
	// the answers over 5 minutes, and nothing the matter once they have
	// started. The label was missing, and this paged.
	{alert: "ShopOrderHTTPErrors", name: "a rolling restart's 503s, starting and stopping",
		load: `load 1m
			shop_http_request_duration_seconds_count{job="order",instance="a",method="POST",route="/v1/orders",code="201",lifecycle=""} 0+200x2 400+200x12
			shop_http_request_duration_seconds_count{job="order",instance="a",method="POST",route="/v1/orders",code="503",lifecycle="starting"} 0x2 200x12
			shop_http_request_duration_seconds_count{job="order",instance="a",method="POST",route="/v1/orders",code="503",lifecycle="stopping"} 0x1 2x13
			shop_http_request_duration_seconds_count{job="order",instance="b",method="POST",route="/v1/orders",code="201",lifecycle=""} 0+200x4 800+200x10
			shop_http_request_duration_seconds_count{job="order",instance="b",method="POST",route="/v1/orders",code="503",lifecycle="starting"} 0x4 200x10
			shop_http_request_duration_seconds_count{job="order",instance="b",method="POST",route="/v1/orders",code="503",lifecycle="stopping"} 0x3 2x11
			shop_http_request_duration_seconds_count{job="order",instance="c",method="POST",route="/v1/orders",code="201",lifecycle=""} 0+200x6 1200+200x8
			shop_http_request_duration_seconds_count{job="order",instance="c",method="POST",route="/v1/orders",code="503",lifecycle="starting"} 0x6 200x8
			shop_http_request_duration_seconds_count{job="order",instance="c",method="POST",route="/v1/orders",code="503",lifecycle="stopping"} 0x5 2x9`,
		at: 15 * time.Minute},
	// The same answers from replicas that had started (their database
	// unavailable for a minute each, say): server errors, which page.
	{alert: "ShopOrderHTTPErrors", name: "the same 503s from started replicas",
		load: `load 1m
			shop_http_request_duration_seconds_count{job="order",instance="a",method="POST",route="/v1/orders",code="201",lifecycle=""} 0+200x2 400+200x12
			shop_http_request_duration_seconds_count{job="order",instance="a",method="POST",route="/v1/orders",code="503",lifecycle=""} 0x2 200x12
			shop_http_request_duration_seconds_count{job="order",instance="b",method="POST",route="/v1/orders",code="201",lifecycle=""} 0+200x4 800+200x10
			shop_http_request_duration_seconds_count{job="order",instance="b",method="POST",route="/v1/orders",code="503",lifecycle=""} 0x4 200x10
			shop_http_request_duration_seconds_count{job="order",instance="c",method="POST",route="/v1/orders",code="201",lifecycle=""} 0+200x6 1200+200x8
			shop_http_request_duration_seconds_count{job="order",instance="c",method="POST",route="/v1/orders",code="503",lifecycle=""} 0x6 200x8`,
		at: 10 * time.Minute, want: []string{`{job="order"}`}},
	{alert: "ShopOrderHTTPErrors", name: "another job's 5xx",
		load: `load 1m
			shop_http_request_duration_seconds_count{job="inventory",instance="i",method="PUT",route="/v1/stock/{sku}",code="500"} 0+60x15
			shop_http_request_duration_seconds_count{job="order",instance="o",method="POST",route="/v1/orders",code="201"} 0+60x15`,
		at: 15 * time.Minute},

	{alert: "ShopConsumerOutOfGroup", name: "one replica out for 5 minutes",
		load: `load 1m
			shop_consumer_out_of_group{job="payment",instance="a",group="payment",service="payment"} 0 1x5
			shop_consumer_out_of_group{job="payment",instance="b",group="payment",service="payment"} 0x6`,
		at: 5 * time.Minute, want: []string{`{group="payment", instance="a", job="payment"}`}},
	{alert: "ShopConsumerOutOfGroup", name: "out for a minute, then back",
		load: `load 1m
			shop_consumer_out_of_group{job="payment",instance="a",group="payment",service="payment"} 0 1 0x8`,
		at: 8 * time.Minute},

	{alert: "ShopAdminTokenGuessing", name: "a client refused once",
		load: `load 1m
			shop_http_admin_throttled_total{job="inventory",instance="a",service="inventory"} 0 0 3 3 3 3`,
		at: 5 * time.Minute, want: []string{`{job="inventory"}`}},
	{alert: "ShopAdminTokenGuessing", name: "refusals from before the replica was last scraped anew, none since",
		load: `load 1m
			shop_http_admin_throttled_total{job="inventory",instance="a",service="inventory"} 3x16`,
		at: 16 * time.Minute},
	{alert: "ShopAdminTokenGuessing", name: "no refusal",
		load: `load 1m
			shop_http_admin_throttled_total{job="order",instance="a",service="order"} 0x10`,
		at: 10 * time.Minute},

	{alert: "ShopConsumerFetchErrors", name: "errors every minute for 20 minutes",
		load: `load 1m
			shop_consumer_fetch_errors_total{job="payment",instance="a",group="payment",service="payment"} 0+6x20`,
		at: 20 * time.Minute, want: []string{`{group="payment"}`}},
	{alert: "ShopConsumerFetchErrors", name: "a burst over a broker restart, then none",
		load: `load 1m
			shop_consumer_fetch_errors_total{job="payment",instance="a",group="payment",service="payment"} 0 0 30 60 60x16`,
		at: 18 * time.Minute},
}

// TestAlerts evaluates each alert as Prometheus's rule manager does (the
// rule's own for:, every evalInterval from time 0) on each case's series,
// and compares the alerts firing at the end with the case's.
func TestAlerts(t *testing.T) {
	byName := map[string]rulefmt.Rule{}
	for _, r := range loadRules(t) {
		byName[r.Alert] = r
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	engine := promqltest.NewTestEngineWithOpts(t, promql.EngineOpts{
		MaxSamples: 1e6, Timeout: 10 * time.Second,
		NoStepSubqueryIntervalFn: func(int64) int64 { return evalInterval.Milliseconds() },
	})
	for _, c := range alertCases {
		if len(c.want) > 0 {
			fires[c.alert] = true
		} else {
			quiet[c.alert] = true
		}
		t.Run(c.alert+"/"+c.name, func(t *testing.T) {
			r, ok := byName[c.alert]
			if !ok {
				t.Fatalf("no alert %s in %s", c.alert, rulesFile)
			}
			expr, err := parser.ParseExpr(r.Expr)
			if err != nil {
				t.Fatal(err)
			}
			rule := rules.NewAlertingRule(r.Alert, expr, time.Duration(r.For), time.Duration(r.KeepFiringFor),
				labels.FromMap(r.Labels), labels.FromMap(r.Annotations), labels.EmptyLabels(), "", true,
				slog.New(slog.DiscardHandler))
			query := rules.EngineQueryFunc(engine, promqltest.LoadedStorage(t, c.load))
			firing := func() []string {
				var got []string
				for _, a := range rule.ActiveAlerts() {
					a.Annotations.Range(func(l labels.Label) {
						if strings.Contains(l.Value, "error expanding template") || strings.Contains(l.Value, "<no value>") {
							t.Errorf("annotation %s: %s", l.Name, l.Value)
						}
					})
					if a.State == rules.StateFiring {
						got = append(got, labels.NewBuilder(a.Labels).Del(labels.AlertName, "severity").Labels().String())
					}
				}
				slices.Sort(got)
				return got
			}
			start := time.Unix(0, 0).UTC()
			for ts := time.Duration(0); ts <= c.at; ts += evalInterval {
				if _, err := rule.Eval(context.Background(), 0, start.Add(ts), query, nil, 0); err != nil {
					t.Fatalf("eval at %s: %v", ts, err)
				}
				if got := firing(); len(c.want) == 0 && len(got) > 0 {
					t.Fatalf("firing at %s: %q, want quiet throughout\nexpr: %s", ts, got, r.Expr)
				}
			}
			if got := firing(); !slices.Equal(got, c.want) {
				t.Errorf("firing after %s: %q, want %q\nexpr: %s", c.at, got, c.want, r.Expr)
			}
		})
	}
	// Each alert is shown both to fire and to stay quiet.
	for name := range byName {
		if !fires[name] || !quiet[name] {
			t.Errorf("alert %s needs a case where it fires and one where it stays quiet", name)
		}
	}
}
