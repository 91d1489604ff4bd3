package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/cmd/shop/check"
	"github.com/shopflow/shopflow/cmd/shop/load"
	"github.com/shopflow/shopflow/cmd/shop/seed"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// TestCrashRecovery runs the broker and the four services as separate
// processes and, while a load runs, SIGKILLs each consumer service, the
// order service and the broker, restarting each. Afterwards every order
// must have settled with the outcome its kind calls for, and shop check's
// invariants must hold: no double charge, reservation or shipment; no
// compensation left undone; stock conserved.
func TestCrashRecovery(t *testing.T) {
	t.Parallel()
	bin := buildBinaries(t)
	dir := t.TempDir()
	dbURL := testenv.DatabaseURL(t)
	kafkaAddr := testenv.FreeAddr(t)
	const token = "crash-test-token"

	brokerProc := &proc{t: t, name: "broker", path: filepath.Join(bin, "shop"),
		args: []string{"broker", "--addr", kafkaAddr, "--data-dir", filepath.Join(dir, "kafka")},
		log:  filepath.Join(dir, "broker.log"),
		ready: func() error {
			c := &kafka.Client{Addr: kafka.TCP(kafkaAddr), Timeout: time.Second, Transport: &kafka.Transport{}}
			_, err := c.ApiVersions(context.Background(), &kafka.ApiVersionsRequest{})
			return err
		}}
	brokerProc.start()
	brokerProc.waitReady()

	services := map[string]*proc{}
	urls := map[string]string{}
	for _, name := range []string{"order", "payment", "inventory", "shipping"} {
		addr := testenv.FreeAddr(t)
		url := "http://" + addr
		urls[name] = url
		services[name] = &proc{t: t, name: name, path: filepath.Join(bin, name),
			env: []string{"DATABASE_URL=" + dbURL, "KAFKA_BROKERS=" + kafkaAddr, "HTTP_ADDR=" + addr,
				"ADMIN_TOKEN=" + token, "LOG_LEVEL=info", "SHUTDOWN_TIMEOUT=10s", "KAFKA_TOPIC_PREFIX="},
			log: filepath.Join(dir, name+".log"),
			ready: func() error {
				res, err := http.Get(url + "/readyz")
				if err != nil {
					return err
				}
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					return fmt.Errorf("readyz %d", res.StatusCode)
				}
				return nil
			}}
	}
	all := []*proc{services["order"], services["payment"], services["inventory"], services["shipping"]}
	for _, p := range all {
		p.start()
	}
	for _, p := range all {
		p.waitReady()
	}
	t.Cleanup(func() {
		for _, p := range all {
			p.stop()
		}
		brokerProc.stop()
		if t.Failed() {
			for _, p := range append(all, brokerProc) {
				t.Logf("--- %s log (last lines):\n%s", p.name, tail(p.log, 30))
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := seed.Seed(ctx, urls["order"], urls["inventory"], token, nil); err != nil {
		t.Fatal(err)
	}

	// The load: 600 orders at 40/s, so the kills below land while orders
	// are being placed and settled.
	began := time.Now()
	type loadResult struct {
		rep *load.Report
		err error
	}
	loaded := make(chan loadResult, 1)
	go func() {
		rep, err := load.Run(ctx, load.Options{OrderURL: urls["order"], Orders: 600, Concurrency: 8, Rate: 40,
			RetryFor: 90 * time.Second, SettleTimeout: 100 * time.Second})
		loaded <- loadResult{rep, err}
	}()

	// Kill one process every 2.5 s: each consumer, the order service, the
	// broker, then the payment service once more during settlement.
	schedule := []*proc{services["payment"], services["inventory"], services["shipping"], services["order"], brokerProc, services["payment"]}
	var kills []string
	for _, p := range schedule {
		if !sleepCtx(ctx, 2500*time.Millisecond) {
			break
		}
		for _, q := range all {
			if q.exited() {
				t.Errorf("%s exited on its own before %s was killed; log:\n%s", q.name, p.name, tail(q.log, 30))
			}
		}
		p.kill()
		kills = append(kills, fmt.Sprintf("%s at %.1fs", p.name, time.Since(began).Seconds()))
		// The broker stays down past kafka-go's own retries (three,
		// backing off up to a second), so the services' consumers see
		// fetch errors and must ride them out.
		down := 500 * time.Millisecond
		if p == brokerProc {
			down = 3 * time.Second
		}
		if !sleepCtx(ctx, down) {
			break
		}
		p.start()
		p.waitReady()
	}
	res := <-loaded
	if res.err != nil {
		t.Fatalf("load: %v", res.err)
	}
	for _, q := range all {
		if q.exited() {
			t.Errorf("%s exited on its own during the run; log:\n%s", q.name, tail(q.log, 30))
		}
	}
	t.Logf("kills (SIGKILL, then restart): %s", strings.Join(kills, ", "))
	wantSettledAndChecked(ctx, t, res.rep, dbURL)
}

// wantSettledAndChecked logs a load's report and wants every placement
// accepted and settled with the outcome its kind calls for, then runs
// shop check's invariants on dbURL and wants none broken and every
// accepted order counted.
func wantSettledAndChecked(ctx context.Context, t *testing.T, rep *load.Report, dbURL string) {
	t.Helper()
	t.Logf("load: %d orders, %d accepted, %d failed, %d retries; settled %d (%d confirmed, %d cancelled), %d pending, %d unexpected; e2e p99 %.0f ms",
		rep.Orders, rep.Accepted, rep.Failed, rep.Retries, rep.Settled, rep.Confirmed, rep.Cancelled, rep.Pending, rep.Unexpected, rep.E2EP99ms)
	if rep.Failed != 0 || rep.Pending != 0 || rep.Unexpected != 0 {
		t.Errorf("load: %d failed, %d pending, %d unexpected outcomes: %v", rep.Failed, rep.Pending, rep.Unexpected, rep.Errors)
	}
	pool := testenv.PoolAt(t, dbURL, "orders")
	report, err := check.Run(ctx, pool, check.Options{Wait: time.Minute, Baseline: seed.Initial()})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("check: orders %v, %d payments, %d charges, %d reservations, %d shipments, %d SKUs; %d violations",
		report.Orders, report.Payments, report.Charges, report.Reservations, report.Shipments, report.SKUs, len(report.Violations))
	for _, v := range report.Violations {
		t.Errorf("violation: %s", v)
	}
	if report.Orders["confirmed"]+report.Orders["cancelled"] != rep.Accepted {
		t.Errorf("check saw %v orders, the load placed %d", report.Orders, rep.Accepted)
	}
}
