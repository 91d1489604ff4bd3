package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol/produce"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/outbox"
	"github.com/shopflow/shopflow/pkg/platform/pg"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

const schema = "svc"

func newPool(t *testing.T) *pgxpool.Pool {
	return testenv.Pool(t, schema, pg.Migrations{Name: outbox.MigrationsTable, FS: outbox.Migrations()})
}

// event builds an OrderCancelled for order key whose reason carries seq, so
// tests can check order per key.
func event(key string, seq int) events.Event {
	return events.New("/shopflow/test", events.OrderCancelled{
		OrderID: key, Reason: fmt.Sprintf("seq-%06d", seq), CancelledAt: time.Now().UTC(),
	})
}

// writeTx commits evs in one transaction, retargeted to topic.
func writeTx(t *testing.T, pool *pgxpool.Pool, topic string, evs ...events.Event) {
	t.Helper()
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return writeIn(ctx, tx, topic, evs...) })
	if err != nil {
		t.Fatal(err)
	}
}

func writeIn(ctx context.Context, tx pgx.Tx, topic string, evs ...events.Event) error {
	msgs := make([]events.Message, len(evs))
	for i, e := range evs {
		m, err := events.Encode(e)
		if err != nil {
			return err
		}
		m.Topic = topic
		msgs[i] = m
	}
	return outbox.WriteMessages(ctx, tx, msgs...)
}

func startRelay(t *testing.T, pool *pgxpool.Pool) (stop func()) {
	t.Helper()
	stop, _ = startRelayWith(t, pool, 200*time.Millisecond)
	return stop
}

// startRelayWith starts a relay polling every poll, set up by each of
// setup before it runs.
func startRelayWith(t *testing.T, pool *pgxpool.Pool, poll time.Duration, setup ...func(*outbox.Relay)) (stop func(), r *outbox.Relay) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r = outbox.NewRelay(pool, outbox.RelayConfig{Brokers: testenv.Kafka(t), LockRetry: 100 * time.Millisecond, PollInterval: poll})
	for _, f := range setup {
		f(r)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("relay: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("relay did not stop within 30s")
			}
		})
	}
	t.Cleanup(stop)
	return stop, r
}

// TestWakePublishesAtOnce: with polling out of the picture (an hour), a
// writer's Wake gets its committed events published: on the active relay
// directly, and through a NOTIFY when the writer's own relay is standing
// by (another replica's is active).
func TestWakePublishesAtOnce(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	topic := testenv.Topic(t, "outbox", 1)
	writeTx(t, pool, topic, event("order-1", 0))
	_, a := startRelayWith(t, pool, time.Hour)
	_, b := startRelayWith(t, pool, time.Hour)
	// The active relay's first drain publishes what was there; after it
	// both relays wait: one for a wake-up or a NOTIFY, one for the lock.
	testenv.Consume(t, topic, 30*time.Second, testenv.Count(1))

	for i, r := range []*outbox.Relay{a, b, a, b} {
		writeTx(t, pool, topic, event("order-1", i+1))
		r.Wake()
		testenv.Consume(t, topic, 15*time.Second, testenv.Count(i+2))
	}
	// A row is deleted once its produce is acknowledged, so a consumer
	// can see the record a moment before the row is gone.
	testenv.Eventually(t, 5*time.Second, "backlog left after the wake-ups", func() bool { return backlog(t, pool) == 0 })
}

func backlog(t *testing.T, pool *pgxpool.Pool) int {
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func decode(t *testing.T, m kafka.Message) events.Event {
	t.Helper()
	hs := make([]events.Header, len(m.Headers))
	for i, h := range m.Headers {
		hs[i] = events.Header(h)
	}
	ev, err := events.Decode(hs, m.Value)
	if err != nil {
		t.Fatalf("record at %s/%d@%d does not decode: %v", m.Topic, m.Partition, m.Offset, err)
	}
	return ev
}

// killActiveRelay terminates the backend holding the relay's advisory lock,
// which is what the database sees when the relay's process dies.
func killActiveRelay(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	const q = `SELECT pg_terminate_backend(pid) FROM pg_locks
WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`
	var killed bool
	testenv.Eventually(t, 10*time.Second, "no relay holds the lock", func() bool {
		rows, err := pool.Query(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		res, err := pgx.CollectRows(rows, pgx.RowTo[bool])
		if err != nil {
			t.Fatal(err)
		}
		killed = len(res) > 0
		return killed
	})
}

// TestCommittedEventsSurviveRelayDeath: what was committed while no relay
// ran, or while the active one died, is published once one runs again.
func TestCommittedEventsSurviveRelayDeath(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	topic := testenv.Topic(t, "outbox", 3)

	// Committed while no relay runs at all.
	for i := range 20 {
		writeTx(t, pool, topic, event(fmt.Sprintf("order-%d", i%4), i))
	}
	stopA := startRelay(t, pool)
	startRelay(t, pool) // standby B
	testenv.Eventually(t, 20*time.Second, "backlog of 20 not drained", func() bool { return backlog(t, pool) == 0 })

	// The active relay dies (its connection, and so its lock, is gone):
	// the standby takes over and publishes what is committed next.
	killActiveRelay(t, pool)
	for i := 20; i < 40; i++ {
		writeTx(t, pool, topic, event(fmt.Sprintf("order-%d", i%4), i))
	}
	testenv.Eventually(t, 20*time.Second, "standby did not publish after the holder died", func() bool { return backlog(t, pool) == 0 })
	stopA()

	got := testenv.Consume(t, topic, 30*time.Second, testenv.Count(40))
	seen := map[string]bool{}
	for _, m := range got {
		ev := decode(t, m)
		if string(m.Key) != ev.Subject {
			t.Errorf("record key %q, want the order id %q", m.Key, ev.Subject)
		}
		seen[ev.ID] = true
	}
	if len(seen) != 40 {
		t.Errorf("got %d distinct events, want 40", len(seen))
	}
}

// TestRolledBackTransactionPublishesNothing: only committed events leave.
func TestRolledBackTransactionPublishesNothing(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	topic := testenv.Topic(t, "outbox", 1)
	startRelay(t, pool)

	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeIn(ctx, tx, topic, event("order-rolled-back", 1), event("order-rolled-back", 2)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	sentinel := event("order-committed", 3)
	writeTx(t, pool, topic, sentinel)

	// One partition: everything published before the sentinel precedes it.
	got := testenv.Consume(t, topic, 30*time.Second, func(ms []kafka.Message) bool {
		return len(ms) > 0 && decode(t, ms[len(ms)-1]).ID == sentinel.ID
	})
	if len(got) != 1 {
		t.Fatalf("got %d records, want only the committed one", len(got))
	}
	testenv.Eventually(t, 5*time.Second, "published row was not pruned from the outbox", func() bool { return backlog(t, pool) == 0 })
}

// TestTwoRelaysKeepOrderPerKey: writers commit sequences per key while two
// relays compete; each key's events arrive in commit order, exactly once.
// Duplicates are possible only across a crash (a relay dying between
// publishing and deleting a round); this test kills no relay, so it demands
// none. TestCommittedEventsSurviveRelayDeath covers the crash.
func TestTwoRelaysKeepOrderPerKey(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	topic := testenv.Topic(t, "outbox", 4)
	startRelay(t, pool)
	startRelay(t, pool)

	const keys, perKey = 8, 50
	var wg sync.WaitGroup
	for k := range keys {
		wg.Go(func() {
			key := fmt.Sprintf("order-%02d", k)
			for i := 0; i < perKey; {
				// Up to three events per transaction, like a real handler.
				n := min(1+i%3, perKey-i)
				evs := make([]events.Event, n)
				for j := range evs {
					evs[j] = event(key, i+j)
				}
				writeTx(t, pool, topic, evs...)
				i += n
			}
		})
	}
	wg.Wait()

	got := testenv.Consume(t, topic, 60*time.Second, testenv.Count(keys*perKey))
	next := map[string]int{}
	ids := map[string]bool{}
	for _, m := range got {
		ev := decode(t, m)
		if ids[ev.ID] {
			t.Errorf("duplicate %s without any crash", ev.ID)
		}
		ids[ev.ID] = true
		want := fmt.Sprintf("seq-%06d", next[ev.Subject])
		if r := ev.Payload.(events.OrderCancelled).Reason; r != want {
			t.Fatalf("key %s: got %s, want %s: out of order", ev.Subject, r, want)
		}
		next[ev.Subject]++
	}
}

// TestStopDuringAReadStillFlushes: a stop that lands while the relay is
// reading the outbox does not cut the read off. Cutting it off closed the
// session's connection (pgx cannot reuse a connection whose query was
// interrupted), so the final flush failed and committed events waited for
// the next start. Here the read is held up by a lock on the table, the
// relay is stopped meanwhile, then the writer commits: the relay must
// publish its event before it stops.
func TestStopDuringAReadStillFlushes(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	topic := testenv.Topic(t, "outbox", 1)
	stop, r := startRelayWith(t, pool, time.Hour)
	ctx := context.Background()
	// Active: it holds the advisory lock (and its first drain found
	// nothing).
	testenv.Eventually(t, 30*time.Second, "the relay never took its lock", func() bool {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&n)
		return err == nil && n == 1
	})

	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	if err := writeIn(ctx, tx, topic, event("order-1", 0)); err != nil {
		t.Fatal(err)
	}
	r.Wake()
	testenv.Eventually(t, 30*time.Second, "the relay's read never waited for the table lock", func() bool {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'
			AND query LIKE 'SELECT id, topic, key, value%FROM outbox%'`).Scan(&n)
		return err == nil && n == 1
	})
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	time.Sleep(300 * time.Millisecond) // the stop lands during the read
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	<-stopped
	if n := backlog(t, pool); n != 0 {
		t.Errorf("backlog %d after a clean stop, want 0", n)
	}
	testenv.Consume(t, topic, 15*time.Second, testenv.Count(1))
}

// failFirstProduce passes requests to kafka.DefaultTransport, except that
// it refuses the first produce request with an error kafka-go does not
// retry.
type failFirstProduce struct {
	once   sync.Once
	failed atomic.Bool
}

func (f *failFirstProduce) RoundTrip(ctx context.Context, addr net.Addr, req kafka.Request) (kafka.Response, error) {
	if _, ok := req.(*produce.Request); ok {
		fail := false
		f.once.Do(func() { fail = true })
		if fail {
			f.failed.Store(true)
			return nil, errors.New("injected: first produce refused")
		}
	}
	return kafka.DefaultTransport.RoundTrip(ctx, addr, req)
}

// TestAFailedLargeRoundKeepsOrder: the outbox holds 1.8 MB for one
// partition. A round of that much would go out as two produce requests for
// the partition; with the first refused and the second landing, the
// retried round put the first's events after the second's (seq 34 before
// seq 0). Rounds are cut at 1 MiB, so a refused round lands nothing and
// the key's events arrive in order.
func TestAFailedLargeRoundKeepsOrder(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	topic := testenv.Topic(t, "outbox", 1)
	const n = 120
	pad := strings.Repeat("x", 15_000) // within the contract's bound on a reason
	evs := make([]events.Event, n)
	for i := range evs {
		evs[i] = events.New("/shopflow/test", events.OrderCancelled{
			OrderID: "order-big", Reason: fmt.Sprintf("seq-%06d %s", i, pad), CancelledAt: time.Now().UTC(),
		})
	}
	writeTx(t, pool, topic, evs...)

	transport := &failFirstProduce{}
	ctx, cancel := context.WithCancel(context.Background())
	r := outbox.NewRelay(pool, outbox.RelayConfig{Brokers: testenv.Kafka(t), Transport: transport,
		LockRetry: 100 * time.Millisecond, PollInterval: 200 * time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	}()

	seqOf := func(m kafka.Message) int {
		var seq int
		reason := decode(t, m).Payload.(events.OrderCancelled).Reason
		if _, err := fmt.Sscanf(reason, "seq-%06d", &seq); err != nil {
			t.Fatalf("reason %.20q: %v", reason, err)
		}
		return seq
	}
	got := testenv.Consume(t, topic, 60*time.Second, func(ms []kafka.Message) bool {
		seen := map[int]bool{}
		for _, m := range ms {
			seen[seqOf(m)] = true
		}
		return len(seen) == n
	})
	if !transport.failed.Load() {
		t.Fatal("no produce request was refused: the test did not test anything")
	}
	// Each event's first appearance must come in seq order; a refused
	// round may be published again, but nothing of it may land before it.
	next := 0
	for _, m := range got {
		seq := seqOf(m)
		if seq > next {
			t.Fatalf("seq %d arrived before seq %d: out of order after a refused produce", seq, next)
		}
		if seq == next {
			next++
		}
	}
}

// TestAnEventTooBigToPublishIsRefused: an event over what one produce
// request carries would be refused by kafka-go on every round, first in
// line, and hold up everything behind it. The write refuses it instead,
// so the writer's transaction fails with the reason and nothing is stored.
func TestAnEventTooBigToPublishIsRefused(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	small, err := events.Encode(event("order-1", 0))
	if err != nil {
		t.Fatal(err)
	}
	small.Topic = "t"
	big := oversized(t, "order-huge", 1<<20)
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return outbox.WriteMessages(ctx, tx, small, big) })
	if err == nil || !strings.Contains(err.Error(), "can be published") {
		t.Fatalf("write = %v, want a refusal naming the limit", err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d rows stored (%v), want none", n, err)
	}
	// Just under the limit is stored.
	fits := oversized(t, "order-big", 1<<20-4096)
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return outbox.WriteMessages(ctx, tx, fits) }); err != nil {
		t.Errorf("an event just under the limit: %v", err)
	}
}

// oversized is an OrderCancelled of key whose reason has n characters,
// far beyond what the event contract lets a reason have (Encode refuses
// it), encoded all the same: what a producer without that check could
// hand WriteMessages.
func oversized(t *testing.T, key string, n int) events.Message {
	t.Helper()
	m, err := events.Encode(event(key, 0))
	if err != nil {
		t.Fatal(err)
	}
	m.Topic = "t"
	if m.Value, err = json.Marshal(events.OrderCancelled{OrderID: key, Reason: strings.Repeat("x", n), CancelledAt: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	return m
}

// A lock holder that stops running without dying (a SIGSTOP, a VM pause,
// here a goroutine stuck after a publish) keeps its connection: PostgreSQL
// ends its idle session after IdleTimeout, and a standby takes over. It
// used to hold the lock, and every replica's events, as long as it stood.
func TestAStuckHolderLosesTheLock(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	topic := testenv.Topic(t, "outbox", 1)
	stuck, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	start := func(onPublish func(int, time.Duration)) {
		ctx, cancel := context.WithCancel(context.Background())
		r := outbox.NewRelay(pool, outbox.RelayConfig{Brokers: testenv.Kafka(t), LockRetry: 100 * time.Millisecond,
			PollInterval: 200 * time.Millisecond, IdleTimeout: time.Second, OnPublish: onPublish})
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		t.Cleanup(func() {
			once.Do(func() { close(release) })
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Error("relay did not stop within 30s")
			}
		})
	}
	writeTx(t, pool, topic, event("order-1", 0))
	start(func(int, time.Duration) { // the holder: stuck after its first publish
		select {
		case <-stuck:
		default:
			close(stuck)
			<-release
		}
	})
	<-stuck
	start(nil) // the standby
	writeTx(t, pool, topic, event("order-1", 1))
	got := testenv.Consume(t, topic, 15*time.Second, func(ms []kafka.Message) bool {
		return len(ms) > 0 && decode(t, ms[len(ms)-1]).Payload.(events.OrderCancelled).Reason == "seq-000001"
	})
	t.Logf("%d records, the last published by the standby", len(got))
}
