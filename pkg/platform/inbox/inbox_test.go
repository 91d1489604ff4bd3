package inbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/kafkatopics"
	"github.com/shopflow/shopflow/pkg/platform/pg"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

const schema = "svc"

// effectsSQL is the test handler's own table: no unique constraint, so a
// second application of one event would show as a second row.
const effectsSQL = `CREATE TABLE effects (event_id text NOT NULL, order_id text NOT NULL)`

type fixture struct {
	t       *testing.T
	pool    *pgxpool.Pool
	topic   string
	group   string
	dlq     string
	brokers []string
}

func newFixture(t *testing.T, partitions int) *fixture {
	t.Helper()
	pool := testenv.Pool(t, schema, pg.Migrations{Name: inbox.MigrationsTable, FS: inbox.Migrations()})
	if _, err := pool.Exec(context.Background(), effectsSQL); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, pool: pool, topic: testenv.Topic(t, "in", partitions), group: testenv.Name(t, "g"), brokers: testenv.Kafka(t)}
	f.dlq = testenv.Topic(t, "dlq", 1)
	return f
}

// recordEffect is the handler's effect: one row per application.
func recordEffect(ctx context.Context, tx pgx.Tx, ev events.Event) error {
	_, err := tx.Exec(ctx, `INSERT INTO effects (event_id, order_id) VALUES ($1, $2)`, ev.ID, ev.Subject)
	return err
}

func (f *fixture) consumer(h inbox.Handler, tweak ...func(*inbox.Config)) *inbox.Consumer {
	return f.consumerOn(f.pool, h, tweak...)
}

// consumerOn is consumer with a pool of its own on f's database.
func (f *fixture) consumerOn(pool *pgxpool.Pool, h inbox.Handler, tweak ...func(*inbox.Config)) *inbox.Consumer {
	cfg := inbox.Config{Brokers: f.brokers, Group: f.group, Topics: []string{f.topic}, DLQTopic: f.dlq,
		Handler: h, RetryBase: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond}
	for _, fn := range tweak {
		fn(&cfg)
	}
	c, err := inbox.New(pool, cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

// run starts c; the returned stop cancels it and waits for Run to return.
func (f *fixture) run(c *inbox.Consumer) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					f.t.Errorf("consumer: %v", err)
				}
			case <-time.After(30 * time.Second):
				f.t.Error("consumer did not stop within 30s")
			}
		})
	}
	f.t.Cleanup(stop)
	return stop
}

func message(t *testing.T, topic string, ev events.Event) kafka.Message {
	t.Helper()
	m, err := events.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	km := kafka.Message{Key: m.Key, Value: m.Value}
	for _, h := range m.Headers {
		km.Headers = append(km.Headers, kafka.Header(h))
	}
	return km
}

func (f *fixture) produce(msgs ...kafka.Message) {
	f.t.Helper()
	w := &kafka.Writer{Transport: &kafka.Transport{}, Addr: kafka.TCP(f.brokers...), Topic: f.topic, RequiredAcks: kafka.RequireAll,
		Balancer: &kafka.Murmur2Balancer{}, BatchTimeout: time.Millisecond}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		f.t.Fatal(err)
	}
}

func confirmed(order string) events.Event {
	return events.New("/shopflow/test", events.OrderConfirmed{OrderID: order, ConfirmedAt: time.Now().UTC()})
}

func (f *fixture) count(q string, args ...any) int {
	f.t.Helper()
	var n int
	if err := f.pool.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

func (f *fixture) effects() int { return f.count(`SELECT count(*) FROM effects`) }

func (f *fixture) waitEffects(n int) {
	f.t.Helper()
	testenv.Eventually(f.t, 30*time.Second, fmt.Sprintf("want %d effects", n), func() bool { return f.effects() >= n })
}

// TestDuplicateDeliveryHasOneEffect: the same event (same ce_id) delivered
// twice, and a third time after a restart, is applied once.
func TestDuplicateDeliveryHasOneEffect(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	ev := confirmed("order-1")
	m := message(t, f.topic, ev)
	last := confirmed("order-2")
	f.produce(m, m, message(t, f.topic, last))
	// OnCommit comes after the commit: the effects it sees are stored.
	var seen atomic.Int64
	c := f.consumer(recordEffect, func(cfg *inbox.Config) {
		cfg.OnCommit = func() { seen.Store(int64(f.effects())) }
	})
	stop := f.run(c)
	f.waitEffects(2)
	stop()
	if s := c.Stats(); s.Processed != 2 || s.Duplicates != 1 {
		t.Errorf("stats %+v, want 2 processed and 1 duplicate", s)
	}
	if n := seen.Load(); n != 2 {
		t.Errorf("the last OnCommit saw %d effects, want 2", n)
	}

	// A producer retry after restart: a new offset, the same event id.
	f.produce(m, message(t, f.topic, confirmed("order-3")))
	c2 := f.consumer(recordEffect)
	f.run(c2)
	f.waitEffects(3)
	testenv.Eventually(t, 10*time.Second, "duplicate not counted", func() bool { return c2.Stats().Duplicates == 1 })
	if n := f.count(`SELECT count(*) FROM effects WHERE event_id = $1`, ev.ID); n != 1 {
		t.Errorf("event applied %d times, want 1", n)
	}
}

// TestHandlerErrorRollsBackEverything: a failing attempt leaves neither its
// own writes nor the inbox row behind (else the retry would be skipped as a
// duplicate), and the retry applies the event once. Batching is on: the
// batch is rolled back and replayed record by record.
func TestHandlerErrorRollsBackEverything(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	flaky := confirmed("order-flaky")
	var calls atomic.Int32
	h := func(ctx context.Context, tx pgx.Tx, ev events.Event) error {
		if err := recordEffect(ctx, tx, ev); err != nil {
			return err
		}
		if ev.ID == flaky.ID && calls.Add(1) <= 2 {
			return errors.New("gateway timeout")
		}
		return nil
	}
	f.produce(message(t, f.topic, confirmed("order-a")), message(t, f.topic, flaky), message(t, f.topic, confirmed("order-b")))
	c := f.consumer(h)
	f.run(c)
	f.waitEffects(3)
	testenv.Eventually(t, 10*time.Second, "stats", func() bool { return c.Stats().Processed == 3 })
	if got := calls.Load(); got != 3 {
		t.Errorf("flaky handler ran %d times, want 3 (2 failures, 1 success)", got)
	}
	if n := f.effects(); n != 3 {
		t.Errorf("%d effects, want 3: a failed attempt leaked its writes", n)
	}
	if n := f.count(`SELECT count(*) FROM inbox`); n != 3 {
		t.Errorf("%d inbox rows, want 3", n)
	}
	// First failure inside the batch (rolled back, replayed one by one),
	// second in the record's own transaction (one retry), then success.
	if s := c.Stats(); s.Retries != 1 || s.DeadLettered != 0 {
		t.Errorf("stats %+v, want 1 retry and no dead letters", s)
	}
}

// TestPoisonRecordsGoToDLQAndPartitionFlows: an undecodable record and one
// whose handler fails permanently land on the DLQ with headers naming the
// error and origin; the records after them on the same partition are
// applied.
func TestPoisonRecordsGoToDLQAndPartitionFlows(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	bad := confirmed("order-rejected")
	h := func(ctx context.Context, tx pgx.Tx, ev events.Event) error {
		if err := recordEffect(ctx, tx, ev); err != nil {
			return err
		}
		if ev.ID == bad.ID {
			return inbox.Permanent(errors.New("order unknown here"))
		}
		return nil
	}
	garbage := kafka.Message{Key: []byte("order-x"), Value: []byte("{not json"),
		Headers: []kafka.Header{{Key: "ce_type", Value: []byte("shop.order.confirmed.v1")}}}
	f.produce(message(t, f.topic, confirmed("order-1")), garbage, message(t, f.topic, bad), message(t, f.topic, confirmed("order-2")))
	c := f.consumer(h)
	f.run(c)

	dead := testenv.Consume(t, f.dlq, 30*time.Second, testenv.Count(2))
	f.waitEffects(2)
	hdr := func(m kafka.Message, k string) string {
		for _, h := range m.Headers {
			if h.Key == k {
				return string(h.Value)
			}
		}
		return ""
	}
	for i, m := range dead {
		if hdr(m, inbox.HeaderTopic) != f.topic || hdr(m, inbox.HeaderPartition) != "0" ||
			hdr(m, inbox.HeaderGroup) != f.group || hdr(m, inbox.HeaderError) == "" || hdr(m, inbox.HeaderFailedAt) == "" {
			t.Errorf("dead letter %d lacks origin headers: %v", i, m.Headers)
		}
	}
	if hdr(dead[0], inbox.HeaderOffset) != "1" || string(dead[0].Value) != "{not json" {
		t.Errorf("first dead letter: offset %s value %q, want the garbage at offset 1", hdr(dead[0], inbox.HeaderOffset), dead[0].Value)
	}
	if hdr(dead[1], inbox.HeaderOffset) != "2" || hdr(dead[1], "ce_id") != bad.ID {
		t.Errorf("second dead letter: offset %s ce_id %s, want the rejected event at offset 2", hdr(dead[1], inbox.HeaderOffset), hdr(dead[1], "ce_id"))
	}
	testenv.Eventually(t, 10*time.Second, "stats", func() bool { s := c.Stats(); return s.Processed == 2 && s.DeadLettered == 2 })
	if n := f.count(`SELECT count(*) FROM effects WHERE event_id = $1`, bad.ID); n != 0 {
		t.Error("a permanently failing record left its effects behind")
	}
}

// A handler whose request to another service is refused fails like any
// handler: MaxAttempts times, then the record is dead-lettered. pg.Transient
// took the *url.Error (it has a Timeout method) for a database outage,
// which is retried for ever and never dead-lettered: "no dead letter
// within 10s", the partition held.
func TestAHandlersRefusedRequestIsDeadLettered(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	refused := &url.Error{Op: "Post", URL: "http://carrier.invalid/labels",
		Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	h := func(ctx context.Context, tx pgx.Tx, ev events.Event) error {
		if ev.Subject == "order-label" {
			return fmt.Errorf("ask the carrier for a label: %w", refused)
		}
		return recordEffect(ctx, tx, ev)
	}
	f.produce(message(t, f.topic, confirmed("order-label")), message(t, f.topic, confirmed("order-next")))
	c := f.consumer(h, func(cfg *inbox.Config) { cfg.MaxAttempts = 3 })
	f.run(c)
	testenv.Eventually(t, 10*time.Second, "a dead letter", func() bool { return c.Stats().DeadLettered == 1 })
	f.waitEffects(1)
	if s := c.Stats(); s.Retries != 2 {
		t.Errorf("%d retries, want 2 (MaxAttempts 3)", s.Retries)
	}
}

// A handler whose outside system does not answer (inbox.Outage) is
// retried past MaxAttempts, for OutageFor, and only then dead-lettered,
// saying for how long it failed: five quick attempts dead-lettered a
// payment's capture through a gateway hiccup of two seconds.
func TestAnOutageIsRetriedForOutageFor(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	var mu sync.Mutex
	calls := map[string]int{}
	h := func(ctx context.Context, tx pgx.Tx, ev events.Event) error {
		mu.Lock()
		calls[ev.Subject]++
		n := calls[ev.Subject]
		mu.Unlock()
		switch {
		case ev.Subject == "order-down":
			return fmt.Errorf("capture: %w", inbox.Outage(errors.New("gateway: unavailable")))
		case ev.Subject == "order-hiccup" && n <= 8:
			return fmt.Errorf("capture: %w", inbox.Outage(errors.New("gateway: unavailable")))
		}
		return recordEffect(ctx, tx, ev)
	}
	f.produce(message(t, f.topic, confirmed("order-hiccup")), message(t, f.topic, confirmed("order-down")),
		message(t, f.topic, confirmed("order-next")))
	const outageFor = 2 * time.Second
	c := f.consumer(h, func(cfg *inbox.Config) { cfg.MaxAttempts = 3; cfg.OutageFor = outageFor })
	start := time.Now()
	f.run(c)
	f.waitEffects(2)
	if n := f.count(`SELECT count(*) FROM effects WHERE order_id = 'order-hiccup'`); n != 1 {
		t.Errorf("order-hiccup applied %d times, want once after its 8 failures (MaxAttempts 3 does not count an outage)", n)
	}
	if d := time.Since(start); d < outageFor {
		t.Errorf("order-next applied %s after the start, before order-down's OutageFor %s was out", d, outageFor)
	}
	testenv.Eventually(t, 10*time.Second, "a dead letter", func() bool { return c.Stats().DeadLettered == 1 })
	got := testenv.Consume(t, f.dlq, 10*time.Second, testenv.Count(1))
	reason := ""
	for _, h := range got[0].Headers {
		if h.Key == events.HeaderDLQError {
			reason = string(h.Value)
		}
	}
	if got[0].Key == nil || string(got[0].Key) != "order-down" || !strings.Contains(reason, "(OutageFor 2s): capture: gateway: unavailable") {
		t.Errorf("dead letter %q with reason %q, want order-down's, saying how long it failed", got[0].Key, reason)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls["order-down"] <= 3 {
		t.Errorf("order-down tried %d times, want more than MaxAttempts (3) within OutageFor", calls["order-down"])
	}
}

// A record that fits its topic but not with the dlq_* headers added is
// dead-lettered without its key, value and headers, which say where it
// is: retrying the whole copy cannot succeed, and held the partition for
// good.
func TestRecordTooLargeToDeadLetterWhole(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	big := kafka.Message{Topic: f.topic, Key: []byte("order-big"), Value: bytes.Repeat([]byte("x"), 1_048_400),
		Headers: []kafka.Header{{Key: "ce_type", Value: []byte("shop.order.bogus.v1")}}}
	w := &kafka.Writer{Transport: &kafka.Transport{}, Addr: kafka.TCP(f.brokers...), RequiredAcks: kafka.RequireAll,
		Balancer: &kafka.Murmur2Balancer{}, BatchTimeout: time.Millisecond, BatchBytes: 2 << 20}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	after := message(t, f.topic, confirmed("order-after"))
	after.Topic = f.topic
	for _, m := range []kafka.Message{big, after} { // one batch each: both would pass the broker's limit
		if err := w.WriteMessages(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	c := f.consumer(recordEffect)
	f.run(c)

	dead := testenv.Consume(t, f.dlq, 30*time.Second, testenv.Count(1))
	f.waitEffects(1) // the partition moved on
	d, headers := dead[0], map[string]string{}
	for _, h := range d.Headers {
		headers[h.Key] = string(h.Value)
	}
	want := "key (9 bytes), value (1048400 bytes) and 1 original headers (26 bytes): too large for " + f.dlq
	if len(d.Key) != 0 || len(d.Value) != 0 || headers["ce_type"] != "" || headers[inbox.HeaderOmitted] != want ||
		headers[inbox.HeaderOffset] != "0" || headers[inbox.HeaderTopic] != f.topic || !strings.Contains(headers[inbox.HeaderError], "ce_specversion") {
		t.Errorf("dead letter: key %d bytes, value %d bytes, headers %v; want only the dlq_* headers, %s %q", len(d.Key), len(d.Value), headers, inbox.HeaderOmitted, want)
	}
}

// TestCrashBetweenDBCommitAndOffsetCommit: the record comes again to the
// next member and the inbox absorbs it.
func TestCrashBetweenDBCommitAndOffsetCommit(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	ev := confirmed("order-crash")
	f.produce(message(t, f.topic, ev))
	c := f.consumer(recordEffect, func(c *inbox.Config) { c.BatchSize = 1 })
	inbox.DieBeforeOffsetCommit(c, func() bool { return true })
	stop := f.run(c)
	f.waitEffects(1)
	stop()

	c2 := f.consumer(recordEffect)
	f.run(c2)
	testenv.Eventually(t, 30*time.Second, "record was not redelivered", func() bool { return c2.Stats().Duplicates == 1 })
	if n := f.effects(); n != 1 {
		t.Errorf("%d effects, want 1", n)
	}
}

// TestGracefulStopFinishesRecordInHand: stopping while a handler runs lets
// it finish, commits it and its offset, so the next member neither loses
// nor repeats it.
func TestGracefulStopFinishesRecordInHand(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	slow := func(ctx context.Context, tx pgx.Tx, ev events.Event) error {
		once.Do(func() { close(entered) })
		<-release
		return recordEffect(ctx, tx, ev)
	}
	f.produce(message(t, f.topic, confirmed("order-slow")))
	c := f.consumer(slow)
	stop := f.run(c)
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("handler never ran")
	}
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	close(release)
	<-stopped
	if n := f.effects(); n != 1 {
		t.Fatalf("%d effects after graceful stop, want 1", n)
	}
	f.produce(message(t, f.topic, confirmed("order-after")))
	c2 := f.consumer(recordEffect)
	f.run(c2)
	f.waitEffects(2)
	if s := c2.Stats(); s.Duplicates != 0 {
		t.Errorf("record in hand was redelivered (%+v): its offset was not committed on stop", s)
	}
}

// TestTwoMembersSplitPartitions: two members of one group share the
// partitions; together they apply every record exactly once.
func TestTwoMembersSplitPartitions(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 4)
	a, b := f.consumer(recordEffect), f.consumer(recordEffect)
	f.run(a)
	f.run(b)
	sent := 0
	deadline := time.Now().Add(45 * time.Second)
	for a.Stats().Processed == 0 || b.Stats().Processed == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after %d records one member still has none: a=%+v b=%+v", sent, a.Stats(), b.Stats())
		}
		var msgs []kafka.Message
		for range 20 {
			msgs = append(msgs, message(t, f.topic, confirmed("order-"+strconv.Itoa(sent))))
			sent++
		}
		f.produce(msgs...)
		time.Sleep(100 * time.Millisecond) // pacing the producer, not waiting for a result
	}
	f.waitEffects(sent)
	testenv.Eventually(t, 10*time.Second, "stats", func() bool { return a.Stats().Processed+b.Stats().Processed == int64(sent) })
	if n := f.count(`SELECT count(DISTINCT event_id) FROM effects`); n != sent || f.effects() != sent {
		t.Errorf("%d distinct effects of %d rows, want %d each", n, f.effects(), sent)
	}
}

// TestRetryHoldsUpOnlyItsOwnPartitions: while a record of partition 0 is
// being retried, records of partition 1 (another worker's) are applied;
// the retried one is applied once it succeeds.
func TestRetryHoldsUpOnlyItsOwnPartitions(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 2)
	var ready atomic.Bool
	var attempts atomic.Int64
	h := func(ctx context.Context, tx pgx.Tx, ev events.Event) error {
		if ev.Subject == "order-stuck" && !ready.Load() {
			attempts.Add(1)
			return errors.New("dependency not ready")
		}
		return recordEffect(ctx, tx, ev)
	}
	w := &kafka.Writer{Transport: &kafka.Transport{}, Addr: kafka.TCP(f.brokers...), Topic: f.topic, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond,
		Balancer: kafka.BalancerFunc(func(m kafka.Message, partitions ...int) int {
			if string(m.Key) == "order-stuck" {
				return partitions[0]
			}
			return partitions[1]
		})}
	defer w.Close()
	msgs := []kafka.Message{message(t, f.topic, confirmed("order-stuck"))}
	for i := range 5 {
		msgs = append(msgs, message(t, f.topic, confirmed(fmt.Sprintf("order-%d", i))))
	}
	for i := range msgs {
		msgs[i].Topic = ""
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
	c := f.consumer(h, func(c *inbox.Config) { c.Parallelism = 2; c.MaxAttempts = 1000 })
	f.run(c)
	f.waitEffects(5)
	// Its worker may not have tried it yet when the others are applied.
	testenv.Eventually(t, 10*time.Second, "an attempt at the stuck record", func() bool { return attempts.Load() > 0 })
	if n := f.count(`SELECT count(*) FROM effects WHERE order_id = 'order-stuck'`); n != 0 {
		t.Fatalf("stuck record applied %d times after %d attempts; want still failing", n, attempts.Load())
	}
	ready.Store(true)
	f.waitEffects(6)
	if n := f.effects(); n != 6 {
		t.Errorf("%d effects, want 6", n)
	}
}

// TestBatchHandlerIsolatesABadEvent: a BatchHandler gets the records of a
// transaction in one call, in order; when it fails for one event the
// batch is split until that event is alone, it goes to the DLQ, and every
// other event is applied exactly once.
func TestBatchHandlerIsolatesABadEvent(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	const n = 60
	msgs := make([]kafka.Message, n)
	var bad events.Event
	for i := range msgs {
		ev := confirmed(fmt.Sprintf("order-%02d", i))
		if i == 37 {
			bad = ev
		}
		msgs[i] = message(t, f.topic, ev)
	}
	f.produce(msgs...)
	var (
		mu        sync.Mutex
		largest   int
		calls     int
		unordered int
	)
	h := func(ctx context.Context, tx pgx.Tx, items []inbox.Item) error {
		mu.Lock()
		largest, calls = max(largest, len(items)), calls+1
		for i := 1; i < len(items); i++ {
			if items[i].Event.Subject <= items[i-1].Event.Subject {
				unordered++
			}
		}
		mu.Unlock()
		ids := make([]string, len(items))
		subjects := make([]string, len(items))
		for i, it := range items {
			if it.Event.ID == bad.ID {
				return errors.New("cannot apply " + it.Event.Subject)
			}
			if it.Ctx == nil {
				return errors.New("item without a context")
			}
			ids[i], subjects[i] = it.Event.ID, it.Event.Subject
		}
		_, err := tx.Exec(ctx, `INSERT INTO effects (event_id, order_id) SELECT * FROM unnest($1::text[], $2::text[])`, ids, subjects)
		return err
	}
	c := f.consumer(nil, func(cfg *inbox.Config) {
		cfg.Handler, cfg.BatchHandler, cfg.MaxAttempts = nil, h, 2
	})
	f.run(c)

	dead := testenv.Consume(t, f.dlq, 30*time.Second, testenv.Count(1))
	f.waitEffects(n - 1)
	for _, h := range dead[0].Headers {
		if h.Key == "ce_id" && string(h.Value) != bad.ID {
			t.Errorf("dead-lettered %s, want %s", h.Value, bad.ID)
		}
	}
	if d := f.count(`SELECT count(*) - count(DISTINCT event_id) FROM effects`); d != 0 {
		t.Errorf("%d events applied twice", d)
	}
	if k := f.count(`SELECT count(*) FROM effects WHERE event_id = $1`, bad.ID); k != 0 {
		t.Error("the failing event left effects")
	}
	testenv.Eventually(t, 10*time.Second, "stats", func() bool {
		s := c.Stats()
		return s.Processed == n-1 && s.DeadLettered == 1
	})
	mu.Lock()
	defer mu.Unlock()
	if largest < 2 {
		t.Errorf("largest batch %d over %d calls: the handler never got a batch", largest, calls)
	}
	// Subjects are order-00..order-59 in offset order.
	if unordered > 0 {
		t.Errorf("%d items out of delivery order", unordered)
	}
}

// A batch handler that names the failing event (ItemFailed) costs its
// neighbours one more transaction, not a halving: the events before it
// are applied as one batch, it alone with its retries, the rest as one
// batch. Here it fails twice (transiently), then applies.
func TestBatchHandlerNamesTheFailingItem(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	const n = 60
	msgs := make([]kafka.Message, n)
	var bad events.Event
	for i := range msgs {
		ev := confirmed(fmt.Sprintf("order-%02d", i))
		if i == 37 {
			bad = ev
		}
		msgs[i] = message(t, f.topic, ev)
	}
	f.produce(msgs...)
	var (
		mu         sync.Mutex
		failures   int
		withOthers int // calls that handed the bad event over with others
		alone      int
	)
	h := func(ctx context.Context, tx pgx.Tx, items []inbox.Item) error {
		ids := make([]string, len(items))
		subjects := make([]string, len(items))
		for i, it := range items {
			if it.Event.ID == bad.ID {
				mu.Lock()
				if len(items) > 1 {
					withOthers++
				} else {
					alone++
				}
				fail := failures < 2
				if fail {
					failures++
				}
				mu.Unlock()
				if fail {
					return inbox.ItemFailed(i, errors.New("gateway timeout for "+it.Event.Subject))
				}
			}
			ids[i], subjects[i] = it.Event.ID, it.Event.Subject
		}
		_, err := tx.Exec(ctx, `INSERT INTO effects (event_id, order_id) SELECT * FROM unnest($1::text[], $2::text[])`, ids, subjects)
		return err
	}
	c := f.consumer(nil, func(cfg *inbox.Config) {
		cfg.Handler, cfg.BatchHandler, cfg.MaxAttempts = nil, h, 5
		cfg.RetryBase, cfg.RetryMax = time.Millisecond, 5*time.Millisecond
	})
	f.run(c)

	f.waitEffects(n)
	if d := f.count(`SELECT count(*) - count(DISTINCT event_id) FROM effects`); d != 0 {
		t.Errorf("%d events applied twice", d)
	}
	testenv.Eventually(t, 10*time.Second, "stats", func() bool {
		s := c.Stats()
		return s.Processed == n && s.DeadLettered == 0 && s.Retries == 1
	})
	mu.Lock()
	defer mu.Unlock()
	// One batch failed on it; alone, it failed once more and then applied.
	if withOthers != 1 || alone != 2 {
		t.Errorf("the failing event went in %d batches with others and %d alone, want 1 and 2", withOthers, alone)
	}
}

// An item named as failing with a nil error still fails: its batch was
// rolled back, so it is retried and applied, not counted as done.
func TestItemFailedWithoutAnError(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	const n = 20
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = message(t, f.topic, confirmed(fmt.Sprintf("order-%02d", i)))
	}
	f.produce(msgs...)
	var failed atomic.Bool
	h := func(ctx context.Context, tx pgx.Tx, items []inbox.Item) error {
		for i, it := range items {
			if _, err := tx.Exec(ctx, `INSERT INTO effects (event_id, order_id) VALUES ($1, $2)`, it.Event.ID, it.Event.Subject); err != nil {
				return err
			}
			if it.Event.Subject == "order-07" && failed.CompareAndSwap(false, true) {
				return inbox.ItemFailed(i, nil)
			}
		}
		return nil
	}
	c := f.consumer(nil, func(cfg *inbox.Config) {
		cfg.Handler, cfg.BatchHandler = nil, h
		cfg.RetryBase, cfg.RetryMax = time.Millisecond, 5*time.Millisecond
	})
	f.run(c)
	f.waitEffects(n)
	testenv.Eventually(t, 10*time.Second, "all processed", func() bool { return c.Stats().Processed == n })
	if got := f.effects(); got != n {
		t.Errorf("%d effects, want %d", got, n)
	}
}

// effectsAfter waits up to d for n effects and returns how many there
// are then (a record skipped shows as one missing).
func (f *fixture) effectsAfter(n int, d time.Duration) int {
	deadline := time.Now().Add(d)
	for f.effects() < n && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	return f.effects()
}

// subjects lists the effects' order ids, for a failure message.
func (f *fixture) subjects() []string {
	return testenv.Rows(f.t, f.pool, `SELECT order_id FROM effects ORDER BY order_id`)
}

// loseTopic has the broker lose f's topic while the handler holds the
// record "old" (its offset commit fails once, as it would with the
// broker away), create it again with three new records, and then, when
// rejoin is set, calls Rejoin as the topic watch does; it returns once
// the handler has let "old" go.
func (f *fixture) loseTopic(c *inbox.Consumer, entered <-chan struct{}, release chan<- struct{}, armed *atomic.Bool,
	lost func(), rejoin bool) {
	f.t.Helper()
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		f.t.Fatal("the handler was never called")
	}
	armed.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := kafkatopics.Delete(ctx, f.brokers, f.topic); err != nil {
		f.t.Fatal(err)
	}
	lost()
	if err := kafkatopics.Ensure(ctx, f.brokers, kafkatopics.Spec{Name: f.topic, Partitions: 1}); err != nil {
		f.t.Fatal(err)
	}
	// The outboxes' backlog, published to the topic created again.
	f.produce(message(f.t, f.topic, confirmed("new-1")), message(f.t, f.topic, confirmed("new-2")), message(f.t, f.topic, confirmed("new-3")))
	if rejoin {
		c.Rejoin(f.topic)
	}
	close(release)
}

// heldOld is a handler that holds the record "old" until release.
func heldOld(entered chan<- struct{}, release <-chan struct{}) inbox.Handler {
	return func(ctx context.Context, tx pgx.Tx, ev events.Event) error {
		if ev.Subject == "old" {
			select {
			case entered <- struct{}{}:
				<-release
			default:
			}
		}
		return recordEffect(ctx, tx, ev)
	}
}

// The broker loses a topic while a record of it is in hand, whose offset
// commit then fails; the topic is created again with new records and
// Rejoin is called for it. The member used to retry the kept offset on
// its way out (and retryCommits every RetryMax), so the old topic's
// offset landed on the new one: "3 effects [new-2 new-3 old], want 4",
// its first record skipped.
func TestRejoinCommitsNoOffsetOfTheLostTopic(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	entered, release := make(chan struct{}, 1), make(chan struct{})
	c := f.consumer(heldOld(entered, release))
	var armed, failedOnce atomic.Bool
	inbox.FailOffsetCommit(c, func() bool { return armed.Load() && failedOnce.CompareAndSwap(false, true) })
	f.run(c)
	f.produce(message(t, f.topic, confirmed("old")))
	f.loseTopic(c, entered, release, &armed, func() { time.Sleep(500 * time.Millisecond) }, true)
	if n := f.effectsAfter(4, 20*time.Second); n != 4 {
		t.Errorf("%d effects %v, want 4 (old, new-1, new-2, new-3): the new topic's first records were skipped", n, f.subjects())
	}
}

// As above, but nothing calls Rejoin: the consumer learns of the loss
// from kafka-go's "Unknown Topic Or Partition" reports, and rejoins by
// itself once the topic is back. Its retry of the kept offset, every
// RetryMax, used to land on the new topic first: "3 effects".
func TestAReportedLossDropsTheTopicsKeptOffsets(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	entered, release := make(chan struct{}, 1), make(chan struct{})
	logs := &testenv.SyncBuffer{}
	c := f.consumer(heldOld(entered, release), func(cfg *inbox.Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	var armed, failedOnce atomic.Bool
	inbox.FailOffsetCommit(c, func() bool { return armed.Load() && failedOnce.CompareAndSwap(false, true) })
	f.run(c)
	f.produce(message(t, f.topic, confirmed("old")))
	f.loseTopic(c, entered, release, &armed, func() {
		testenv.Eventually(t, 30*time.Second, "kafka-go reports the topic unknown", func() bool {
			for l := range strings.Lines(logs.String()) {
				if strings.Contains(l, "Unknown Topic Or Partition") && strings.Contains(l, f.topic) {
					return true
				}
			}
			return false
		})
	}, false)
	if n := f.effectsAfter(4, 20*time.Second); n != 4 {
		t.Errorf("%d effects %v, want 4 (old, new-1, new-2, new-3): the new topic's first records were skipped", n, f.subjects())
	}
}

// A committed offset past a partition's end (a topic the broker lost,
// created again, with offsets committed meanwhile: a re-test saw payment's
// group at 59 on a partition ending at 19) is reset to the first record
// when the consumer rejoins for that topic: the reader failed with Offset
// Out Of Range every second, then skipped what lay below the offset.
func TestRejoinResetsOffsetsPastTheEnd(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	f.produce(message(t, f.topic, confirmed("o1")), message(t, f.topic, confirmed("o2")))
	client := &kafka.Client{Addr: kafka.TCP(f.brokers...), Transport: &kafka.Transport{}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := client.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: f.group, GenerationID: -1,
		Topics: map[string][]kafka.OffsetCommit{f.topic: {{Partition: 0, Offset: 50}}}})
	if err != nil || res.Topics[f.topic][0].Error != nil {
		t.Fatalf("commit a stale offset: %v %+v", err, res)
	}
	c := f.consumer(recordEffect)
	f.run(c)
	time.Sleep(2 * time.Second) // the member joins and fails at offset 50
	if n := f.effects(); n != 0 {
		t.Fatalf("%d effects from offset 50 of a partition of 2 records", n)
	}
	c.Rejoin(f.topic) // the watch: the topic is back
	f.waitEffects(2)
}

// The same reset for a topic the consumer's Transport does not know yet:
// its metadata cache (refreshed every MetadataTTL, 6 s for the services,
// and after a CreateTopics through it) answered for a topic created again
// by another client since its last refresh "Unknown Topic Or Partition",
// with no partitions, which the reset skipped without a word ("1
// effects, want 3"): the offset stayed past the end, the records below
// it skipped. The cache here keeps a minute, so that a loaded machine
// cannot refresh it in time by chance.
func TestRejoinResetsOffsetsPastTheEndOfATopicTheCacheMissed(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	tr := &kafka.Transport{MetadataTTL: time.Minute}
	defer tr.CloseIdleConnections()
	logs := &testenv.SyncBuffer{}
	c := f.consumer(recordEffect, func(cfg *inbox.Config) {
		cfg.Transport = tr
		cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	between, resume := make(chan struct{}), make(chan struct{})
	inbox.BetweenMembers(c, func() {
		between <- struct{}{}
		<-resume
	})
	f.run(c)
	f.produce(message(t, f.topic, confirmed("o0")))
	f.waitEffects(1)
	c.Rejoin(f.topic)
	select {
	case <-between:
	case <-time.After(30 * time.Second):
		t.Fatal("Rejoin never ended the member")
	}
	// Between the members, the group has none: the broker loses the
	// topic; the consumer's Transport refreshes its metadata meanwhile;
	// another client creates the topic again, with records, and the
	// group's offset is put past their end (as kafka-go's held commit
	// does).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := kafkatopics.Delete(ctx, f.brokers, f.topic); err != nil {
		t.Fatal(err)
	}
	if err := kafkatopics.EnsureWith(ctx, &kafka.Client{Addr: kafka.TCP(f.brokers...), Transport: tr}, nil,
		kafkatopics.Spec{Name: f.dlq, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	if err := kafkatopics.Ensure(ctx, f.brokers, kafkatopics.Spec{Name: f.topic, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	f.produce(message(t, f.topic, confirmed("o1")), message(t, f.topic, confirmed("o2")))
	client := &kafka.Client{Addr: kafka.TCP(f.brokers...), Transport: &kafka.Transport{}}
	testenv.Eventually(t, 10*time.Second, "a stale offset committed", func() bool {
		res, err := client.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: f.group, GenerationID: -1,
			Topics: map[string][]kafka.OffsetCommit{f.topic: {{Partition: 0, Offset: 50}}}})
		return err == nil && res.Topics[f.topic][0].Error == nil
	})
	close(resume)
	if n := f.effectsAfter(3, 20*time.Second); n != 3 {
		t.Errorf("%d effects, want 3: the offset past the end was not reset; the consumer logged:\n%s", n, logs)
	}
}

// A member that joined while its topic was missing (kafka-go: "Problem
// getting partitions during startup ... Unknown Topic Or Partition") kept
// no partition once the topic existed, and nothing told it to rejoin when
// another service created the topic (a re-test: the shipping group read
// nothing after the broker lost its data, and 100 orders expired). The
// consumer now rejoins by itself once its topics are there.
func TestAMemberThatJoinedBeforeItsTopicReadsIt(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	late := testenv.Name(t, "late")
	c := f.consumer(recordEffect, func(cfg *inbox.Config) { cfg.Topics = []string{late} })
	f.run(c)
	time.Sleep(2 * time.Second) // the member joins; kafka-go finds no topic
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafkatopics.Ensure(ctx, f.brokers, kafkatopics.Spec{Name: late, Partitions: 2}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kafkatopics.Delete(context.Background(), f.brokers, late) })
	w := &kafka.Writer{Transport: &kafka.Transport{}, Addr: kafka.TCP(f.brokers...), Topic: late, RequiredAcks: kafka.RequireAll,
		Balancer: &kafka.Murmur2Balancer{}, BatchTimeout: time.Millisecond}
	defer w.Close()
	if err := w.WriteMessages(ctx, message(t, late, confirmed("o1")), message(t, late, confirmed("o2"))); err != nil {
		t.Fatal(err)
	}
	f.waitEffects(2)
}

// scrape gathers c's metrics as Prometheus would and returns each
// family's first sample (a counter's or a gauge's value) by name; a
// family left out is absent.
func scrape(t *testing.T, c *inbox.Consumer) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c.Collector("test"))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		out[mf.GetName()] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return out
}
