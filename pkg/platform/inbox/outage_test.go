package inbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/events"
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
	if fetchErrors := scrape(t, c)["shop_consumer_fetch_errors_total"]; fetchErrors == 0 {
		t.Errorf("shop_consumer_fetch_errors_total = 0 through a 5 s outage (stats %+v)", c.Stats())
	}
}

// Stopping while the broker is down, with a record in hand on every
// worker: each worker's offset commit waited out its 30 s (kafka-go keeps
// a commit for a generation that is gone until the next, which never
// comes), one after the other, as a commit holds commitMu: "Run returned
// 2m0s after the stop" with the default 4 workers, far past
// SHUTDOWN_TIMEOUT (20 s). The commits made while stopping now share one
// bound, a few seconds; nothing is lost (the records come again and the
// inbox skips them).
func TestStopWhileTheBrokerIsDown(t *testing.T) {
	t.Parallel()
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	f := newFixture(t, 4)
	f.brokers = []string{b.Addr()}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := kafkatopics.Ensure(ctx, f.brokers, kafkatopics.Spec{Name: f.topic, Partitions: 4}, kafkatopics.Spec{Name: f.dlq, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	var entered atomic.Int32
	release := make(chan struct{})
	c := f.consumer(func(ctx context.Context, tx pgx.Tx, ev events.Event) error {
		entered.Add(1)
		<-release
		return recordEffect(ctx, tx, ev)
	}, func(cfg *inbox.Config) {
		cfg.Parallelism = 4
		cfg.MaxWait = 100 * time.Millisecond
		cfg.SessionTimeout, cfg.HeartbeatInterval = 2*time.Second, 200*time.Millisecond
	})
	runCtx, stopRun := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	defer stopRun()
	var msgs []kafka.Message
	for i := range 40 { // every partition, so every worker, gets some
		msgs = append(msgs, message(t, f.topic, confirmed(fmt.Sprintf("o-%d", i))))
	}
	f.produce(msgs...)
	testenv.Eventually(t, 30*time.Second, "every worker in a handler", func() bool { return entered.Load() >= 4 })

	b.Close()
	time.Sleep(4 * time.Second) // past the session timeout: the generation is gone
	start := time.Now()
	stopRun()
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		d := time.Since(start)
		t.Logf("Run returned %s after the stop", d.Round(100*time.Millisecond))
		if d > 15*time.Second {
			t.Errorf("Run returned %s after the stop with the broker down; SHUTDOWN_TIMEOUT is 20s", d.Round(time.Second))
		}
		// The records in hand were applied: only their offsets wait
		// (the records come again, and the inbox skips them).
		if n := f.effects(); n < 4 {
			t.Errorf("%d effects, want the 4 records in hand or more", n)
		}
	case <-time.After(3 * time.Minute):
		t.Fatal("Run did not return within 3 minutes of the stop")
	}
}
