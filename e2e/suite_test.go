package e2e

import (
	"context"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/shopflow/shopflow/cmd/shop/check"
	"github.com/shopflow/shopflow/cmd/shop/dlq"
	"github.com/shopflow/shopflow/cmd/shop/load"
	"github.com/shopflow/shopflow/cmd/shop/seed"
	"github.com/shopflow/shopflow/cmd/shop/suite"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// TestSuiteEndToEnd runs the whole suite on the test environment: 500
// orders of every kind settle with the outcome their kind calls for, the
// other services show what happened, and shop check finds nothing wrong.
func TestSuiteEndToEnd(t *testing.T) {
	t.Parallel()
	dbURL := testenv.DatabaseURL(t)
	const token = "e2e-admin-token"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	any := "127.0.0.1:0"
	s, err := suite.Start(ctx, suite.Options{DatabaseURL: dbURL, KafkaBrokers: testenv.Kafka(t), TopicPrefix: testenv.Prefix(t),
		AdminToken: token, HTTPAddrs: map[string]string{"order": any, "payment": any, "inventory": any, "shipping": any}})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cancel()
			_ = s.Wait()
		}
	})
	if _, err := seed.Seed(ctx, s.URLs["order"], s.URLs["inventory"], token, nil); err != nil {
		t.Fatal(err)
	}

	rep, err := load.Run(ctx, load.Options{OrderURL: s.URLs["order"], Orders: 500, Concurrency: 16, SettleTimeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("load: %d accepted (%.0f/s), settled %d (%.0f/s), placement p99 %.0f ms, e2e p50 %.0f ms p99 %.0f ms",
		rep.Accepted, rep.AcceptedPerS, rep.Settled, rep.SettledPerS, rep.P99ms, rep.E2EP50ms, rep.E2EP99ms)
	if rep.Accepted != 500 || rep.Settled != 500 || rep.Unexpected != 0 {
		t.Errorf("accepted %d, settled %d, unexpected %d: %v", rep.Accepted, rep.Settled, rep.Unexpected, rep.Errors)
	}
	for _, k := range load.Kinds {
		kr := rep.ByKind[k]
		if kr.Placed == 0 {
			t.Errorf("no %s orders placed", k)
		}
		t.Logf("%-12s placed %3d: confirmed %3d, cancelled %3d", k, kr.Placed, kr.Confirmed, kr.Cancelled)
	}
	if kr := rep.ByKind[load.Approve]; kr.Confirmed != kr.Placed {
		t.Errorf("approvals: %d of %d confirmed", kr.Confirmed, kr.Placed)
	}
	for _, k := range []load.Kind{load.Decline, load.OutOfStock} {
		if kr := rep.ByKind[k]; kr.Cancelled != kr.Placed {
			t.Errorf("%s: %d of %d cancelled", k, kr.Cancelled, kr.Placed)
		}
	}

	// The other services' views of one confirmed order.
	id := rep.IDs[load.Approve][0]
	for _, path := range []string{s.URLs["payment"] + "/v1/payments/" + id, s.URLs["shipping"] + "/v1/shipments/" + id,
		s.URLs["shipping"] + "/v1/shipments/" + id + "/label"} {
		res, err := http.Get(path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || len(b) == 0 {
			t.Errorf("GET %s = %d", path, res.StatusCode)
		}
	}

	pool := testenv.PoolAt(t, dbURL, "orders")
	report, err := check.Run(ctx, pool, check.Options{Wait: time.Minute, Baseline: seed.Initial()})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range report.Violations {
		t.Errorf("violation: %s", v)
	}
	if report.Orders["confirmed"]+report.Orders["cancelled"] != 500 || !report.Settled {
		t.Errorf("check: %v orders, settled %v", report.Orders, report.Settled)
	}
	// Every genuine answer passes the order service's checks of results
	// (their source, amount and lines): the compensations reach the
	// cancelled orders' steps, and nothing is dead-lettered anywhere.
	var uncompensated int
	testenv.Eventually(t, 30*time.Second, "cancelled orders whose compensation never reached their steps", func() bool {
		err := pool.QueryRow(ctx, `SELECT count(*) FROM orders WHERE status = 'cancelled'
		    AND (payment_step = 'authorized' OR inventory_step = 'reserved' OR shipping_step = 'scheduled')`).Scan(&uncompensated)
		return err == nil && uncompensated == 0
	})
	if letters, _, err := dlq.List(ctx, dlq.Config{Brokers: s.Brokers, Prefix: s.TopicPrefix()}); err != nil || len(letters) != 0 {
		t.Errorf("dead letters %+v (%v), want none", letters, err)
	}

	// The rows the saga updates after their insert leave room on their
	// pages for HOT updates (each service's "room_for_hot_updates"
	// migration).
	for table, want := range map[string]string{"orders.orders": "fillfactor=60", "payments.payments": "fillfactor=70",
		"payments.gateway_charges": "fillfactor=70", "shipping.shipments": "fillfactor=70", "inventory.reservations": "fillfactor=70"} {
		var opts []string
		if err := pool.QueryRow(ctx, `SELECT coalesce(reloptions, '{}') FROM pg_class WHERE oid = $1::regclass`, table).Scan(&opts); err != nil {
			t.Errorf("%s: %v", table, err)
		} else if !slices.Contains(opts, want) {
			t.Errorf("%s has options %v, want %s", table, opts, want)
		}
	}
	// No index on reservations' status (inventory migration 002): it
	// misled the planner and kept status changes from being HOT updates.
	var statusIndex *string
	if err := pool.QueryRow(ctx, `SELECT to_regclass('inventory.reservations_status')::text`).Scan(&statusIndex); err != nil || statusIndex != nil {
		t.Errorf("inventory.reservations_status: %v %v, want no such index", statusIndex, err)
	}

	cancel()
	stopped = true
	if err := s.Wait(); err != nil {
		t.Errorf("suite stopped with: %v", err)
	}
}
