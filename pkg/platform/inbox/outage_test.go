package inbox_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopflow/shopflow/pkg/platform/broker"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/kafkatopics"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// TestBrokerOutage: the broker goes away for longer than kafka-go's own
// retries last (it then reports errors to FetchMessage) and comes back on
// the same address and data; the consumer keeps running and applies what
// is produced afterwards. A consumer that stopped on the first fetch
// error took its whole service down with every broker restart.
//
// The test runs a broker of its own, whatever the test environment's
// Kafka is, since it has to stop and start it.
func TestBrokerOutage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	addr := b.Addr()
	defer func() {
		if b != nil {
			b.Close()
		}
	}()

	f := newFixture(t, 2)
	f.brokers = []string{addr}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := kafkatopics.Ensure(ctx, f.brokers, kafkatopics.Spec{Name: f.topic, Partitions: 2}, kafkatopics.Spec{Name: f.dlq, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	logs := &testenv.SyncBuffer{}
	c := f.consumer(recordEffect, func(cfg *inbox.Config) {
		cfg.Logger = slog.New(slog.NewJSONHandler(logs, nil))
		cfg.MaxWait = 100 * time.Millisecond
		cfg.SessionTimeout, cfg.HeartbeatInterval = 2*time.Second, 200*time.Millisecond
	})
	runCtx, stopRun := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx); close(done) }()
	defer func() {
		stopRun()
		select {
		case <-done: // Run's result, or closed after a check below took it
		case <-time.After(30 * time.Second):
			t.Error("consumer did not stop within 30s")
		}
	}()

	f.produce(message(t, f.topic, confirmed("order-before")))
	f.waitEffects(1)

	logged := len(logs.String())
	b.Close()
	// kafka-go's partition readers retry three times, backing off up to
	// a second, before they report; the group member fails its
	// heartbeats within the session timeout. Stay down past both.
	time.Sleep(5 * time.Second)
	select {
	case err := <-done:
		t.Fatalf("the consumer stopped while the broker was down (Run returned %v)", err)
	default:
	}
	b, err = broker.Start(broker.Config{Addr: addr, DataDir: dir})
	if err != nil {
		t.Fatalf("restart the broker on %s: %v", addr, err)
	}
	// kafka-go says the broker is gone at every retry of every partition
	// reader and of the group member: each such report is logged once
	// in 30 s, not at every retry.
	repeats := map[string]int{}
	for line := range strings.Lines(logs.String()[logged:]) {
		var rec struct{ Msg string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if strings.Contains(rec.Msg, "dial") && !strings.HasPrefix(rec.Msg, "fetch failed") { // kafka-go's, not the consumer's own
			repeats[strings.Map(func(r rune) rune {
				if unicode.IsDigit(r) {
					return -1
				}
				return r
			}, rec.Msg)]++
		}
	}
	if len(repeats) == 0 {
		t.Error("nothing logged of the outage")
	}
	for msg, n := range repeats {
		if n > 1 {
			t.Errorf("logged %d times in the 5 s outage: %s", n, msg)
		}
	}

	f.produce(message(t, f.topic, confirmed("order-after")))
	f.waitEffects(2)
	select {
	case err := <-done:
		t.Fatalf("the consumer stopped (Run returned %v)", err)
	default:
	}
	if n := f.count(`SELECT count(*) FROM effects WHERE order_id = 'order-after'`); n != 1 {
		t.Errorf("order-after applied %d times, want 1", n)
	}
	// The outage shows in the metrics, not only in the log.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c.Collector("test"))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var fetchErrors float64
	for _, mf := range mfs {
		if mf.GetName() == "shop_consumer_fetch_errors_total" {
			fetchErrors = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if fetchErrors == 0 {
		t.Errorf("shop_consumer_fetch_errors_total = 0 through a 5 s outage (stats %+v)", c.Stats())
	}
}
