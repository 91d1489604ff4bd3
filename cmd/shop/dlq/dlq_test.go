package dlq_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol/offsetfetch"

	"github.com/shopflow/shopflow/cmd/shop/dlq"
	"github.com/shopflow/shopflow/cmd/shop/suite"
	"github.com/shopflow/shopflow/cmd/shop/suite/suitetest"
	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/kafkatopics"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// TestReplayReapplies proves that a replayed dead letter is applied by the
// group that gave up on it (its inbox row was rolled back with the failed
// transaction, so it is not taken for a duplicate).
//
// The scenario: a payment result for an order the order service does not
// know is dead-lettered at once by group "order" (a permanent "unknown
// order" error). The order is then made to exist (inserted with SQL, as a
// restore from backup would), and the replay moves the order's payment
// step. A second dead letter shows that ReplayAll replays each record once
// across runs, and a third that a replay failing again is dead-lettered
// again, naming the record it was replayed from.
func TestReplayReapplies(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.DatabaseURL(t)
	prefix := testenv.Prefix(t)
	brokers := testenv.Kafka(t)
	suitetest.Start(t, ctx, suite.Options{DatabaseURL: dbURL, KafkaBrokers: brokers, TopicPrefix: prefix,
		AdminToken: "dlq-test-admin-token", Env: map[string]string{}})
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	cfg := dlq.Config{Brokers: brokers, Prefix: prefix}
	w := &kafka.Writer{Transport: &kafka.Transport{}, Addr: kafka.TCP(brokers...), RequiredAcks: kafka.RequireAll, Balancer: &kafka.Murmur2Balancer{}, BatchTimeout: time.Millisecond}
	defer w.Close()
	produce := func(p events.Payload) events.Event {
		t.Helper()
		ev := events.New(p.EventType().Source(), p) // as the service would: replayed, it must pass as its own
		m, err := events.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		hs := make([]kafka.Header, len(m.Headers))
		for i, h := range m.Headers {
			hs[i] = kafka.Header(h)
		}
		if err := w.WriteMessages(ctx, kafka.Message{Topic: prefix + m.Topic, Key: m.Key, Value: m.Value, Headers: hs}); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	letters := func(n int) []dlq.Letter {
		t.Helper()
		var ls []dlq.Letter
		testenv.Eventually(t, 60*time.Second, "dead letters did not arrive", func() bool {
			ls, _, err = dlq.List(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			return len(ls) >= n
		})
		if len(ls) != n {
			t.Fatalf("%d dead letters, want %d: %+v", len(ls), n, ls)
		}
		return ls
	}
	createOrder := func(id string) {
		t.Helper()
		_, err := pool.Exec(ctx, `
WITH o AS (
    INSERT INTO orders.orders (id, customer_id, status, currency, total_cents, shipping_address, placed_at, updated_at)
    VALUES ($1, 'cust-dlq', 'pending', 'USD', 2499, '{"name":"Ada","line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}', now(), now())
    RETURNING id)
INSERT INTO orders.order_lines (order_id, line_no, sku, name, quantity, unit_price_cents) SELECT id, 1, 'SKU-0001', 'One', 1, 2499 FROM o`, id)
		if err != nil {
			t.Fatal(err)
		}
	}
	step := func(id, column string) string {
		var v string
		if err := pool.QueryRow(ctx, `SELECT `+column+` FROM orders.orders WHERE id = $1`, id).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}

	if ls, _, err := dlq.List(ctx, cfg); err != nil || len(ls) != 0 {
		t.Fatalf("fresh shop: %v %v, want no dead letters", ls, err)
	}

	first := uuid.Must(uuid.NewV7()).String()
	ev1 := produce(events.PaymentAuthorized{OrderID: first, PaymentID: uuid.Must(uuid.NewV7()).String(),
		AmountCents: 2499, Currency: "USD", AuthorizationCode: "ABC234"})
	ls := letters(1)
	l := ls[0]
	if l.Group != "order" || l.Topic != prefix+"shop.dlq.order" || l.Offset != 0 || l.Key != first || l.ID != ev1.ID ||
		l.Type != string(events.TypePaymentAuthorized) || l.SourceTopic != prefix+events.TopicPayments || l.Attempts != 1 ||
		!strings.Contains(l.Error, "unknown order "+first) || time.Since(l.FailedAt) > time.Minute || l.ReplayedFrom != "" {
		t.Fatalf("dead letter %+v", l)
	}
	if only, _, err := dlq.List(ctx, cfg, "payment"); err != nil || len(only) != 0 {
		t.Fatalf("group payment: %v %v, want none", only, err)
	}

	// Replaying before the cause is fixed only dead-letters it again, so
	// fix it first: the order now exists.
	createOrder(first)
	r, err := dlq.Replay(ctx, cfg, "order", 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.ToTopic != l.SourceTopic || r.ToPartition != l.SourcePartition || r.ToOffset <= l.SourceOffset {
		t.Fatalf("replayed to %s/%d/%d; the original was at %s/%d/%d (same key, so same partition, later offset)",
			r.ToTopic, r.ToPartition, r.ToOffset, l.SourceTopic, l.SourcePartition, l.SourceOffset)
	}
	testenv.Eventually(t, 30*time.Second, "the replayed payment result was not applied", func() bool {
		return step(first, "payment_step") == "authorized"
	})

	// The copy on the source topic is the original event, plus where it
	// came from.
	msgs := testenv.Consume(t, l.SourceTopic, 30*time.Second, testenv.Count(2))
	replayed := msgs[1]
	if string(replayed.Key) != first || string(replayed.Value) != string(msgs[0].Value) {
		t.Fatalf("copy key %q value %s, original key %q value %s", replayed.Key, replayed.Value, msgs[0].Key, msgs[0].Value)
	}
	got := map[string]string{}
	for _, h := range replayed.Headers {
		got[h.Key] = string(h.Value)
	}
	for _, h := range msgs[0].Headers {
		if got[h.Key] != string(h.Value) {
			t.Errorf("header %s = %q, want the original %q", h.Key, got[h.Key], h.Value)
		}
	}
	if got[dlq.HeaderReplayedFrom] != prefix+"shop.dlq.order/0" || len(got) != len(msgs[0].Headers)+1 {
		t.Fatalf("copy headers %v: want the original ones and %s only", got, dlq.HeaderReplayedFrom)
	}
	if _, err := events.Decode(toEventHeaders(replayed.Headers), replayed.Value); err != nil {
		t.Fatalf("the copy does not decode: %v", err)
	}

	// A second dead letter, fixed, then ReplayAll: both records are
	// replayed (--offset does not count as done for --all); the first is
	// skipped by the order service's inbox, the second applied.
	second := uuid.Must(uuid.NewV7()).String()
	produce(events.StockReserved{OrderID: second, ReservationID: uuid.Must(uuid.NewV7()).String(),
		Items: []events.StockLine{{SKU: "SKU-0001", Quantity: 1}}})
	letters(2)
	createOrder(second)
	all, err := dlq.ReplayAll(ctx, cfg, "order")
	if err != nil || len(all) != 2 || all[0].Offset != 0 || all[1].Offset != 1 {
		t.Fatalf("replay all: %+v %v, want offsets 0 and 1", all, err)
	}
	testenv.Eventually(t, 30*time.Second, "the replayed stock result was not applied", func() bool {
		return step(second, "inventory_step") == "reserved"
	})
	if again, err := dlq.ReplayAll(ctx, cfg, "order"); err != nil || len(again) != 0 {
		t.Fatalf("second replay all: %+v %v, want nothing", again, err)
	}

	// A third, not fixed: ReplayAll replays only it, and it fails again.
	third := uuid.Must(uuid.NewV7()).String()
	produce(events.PaymentDeclined{OrderID: third, AmountCents: 100, Currency: "USD", Reason: "card declined"})
	letters(3)
	if all, err := dlq.ReplayAll(ctx, cfg, "order"); err != nil || len(all) != 1 || all[0].Offset != 2 {
		t.Fatalf("replay all after a new dead letter: %+v %v, want offset 2 only", all, err)
	}
	ls = letters(4)
	if ls[3].Key != third || ls[3].ReplayedFrom != prefix+"shop.dlq.order/2" || !strings.Contains(ls[3].Error, "unknown order") {
		t.Fatalf("re-dead-lettered replay: %+v", ls[3])
	}
	// The listing says what became of each: the first three replayed by
	// --all, the third failed again as the fourth, which is outstanding.
	for i, l := range ls {
		again := []string(nil)
		if i == 2 {
			again = []string{prefix + "shop.dlq.order/3"}
		}
		if l.DoneByAll != (i < 3) || !slices.Equal(l.FailedAgainAs, again) {
			t.Errorf("letter %d: done by --all %v, failed again as %q; want %v, %q", i, l.DoneByAll, l.FailedAgainAs, i < 3, again)
		}
	}
	// The first two stayed applied once: nothing else was dead-lettered.
	if step(first, "payment_step") != "authorized" || step(second, "inventory_step") != "reserved" {
		t.Fatal("steps changed")
	}
}

func toEventHeaders(hs []kafka.Header) []events.Header {
	out := make([]events.Header, len(hs))
	for i, h := range hs {
		out[i] = events.Header(h)
	}
	return out
}

// TestBadInput: unknown groups and offsets the DLQ does not hold are
// errors, and a DLQ topic that does not exist yet holds nothing.
func TestBadInput(t *testing.T) {
	ctx := context.Background()
	cfg := dlq.Config{Brokers: testenv.Kafka(t), Prefix: testenv.Prefix(t)}
	if ls, _, err := dlq.List(ctx, cfg); err != nil || len(ls) != 0 {
		t.Fatalf("no topics: %v %v, want nothing", ls, err)
	}
	if _, _, err := dlq.List(ctx, cfg, "billing"); !errors.Is(err, dlq.ErrUnknownGroup) {
		t.Fatalf("unknown group: %v", err)
	}
	if _, err := dlq.Replay(ctx, cfg, "billing", 0); !errors.Is(err, dlq.ErrUnknownGroup) {
		t.Fatalf("unknown group: %v", err)
	}
	if _, err := dlq.ReplayAll(ctx, cfg, "billing"); !errors.Is(err, dlq.ErrUnknownGroup) {
		t.Fatalf("unknown group: %v", err)
	}
	if _, err := dlq.Replay(ctx, cfg, "order", 0); !errors.Is(err, dlq.ErrNoSuchOffset) {
		t.Fatalf("empty DLQ: %v", err)
	}
	if r, err := dlq.ReplayAll(ctx, cfg, "order"); err != nil || len(r) != 0 {
		t.Fatalf("replay all of an absent DLQ: %v %v", r, err)
	}
}

// TestPrefixes: the prefixes are those of the DLQ topics on the cluster,
// so that a mistyped one can be told from an empty DLQ.
func TestPrefixes(t *testing.T) {
	ctx := context.Background()
	cfg := dlq.Config{Brokers: testenv.Kafka(t), Prefix: testenv.Prefix(t)}
	if ps, err := dlq.Prefixes(ctx, cfg); err != nil || slices.Contains(ps, cfg.Prefix) {
		t.Fatalf("before any DLQ topic: %q %v, want no %q", ps, err, cfg.Prefix)
	}
	if err := kafkatopics.Ensure(ctx, cfg.Brokers, kafkatopics.Spec{Name: cfg.Topic("shipping"), Partitions: 1},
		kafkatopics.Spec{Name: cfg.Prefix + "shop.orders", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	ps, err := dlq.Prefixes(ctx, cfg)
	if err != nil || !slices.Contains(ps, cfg.Prefix) || slices.Contains(ps, cfg.Prefix+"shop.orders") || !slices.IsSorted(ps) {
		t.Fatalf("with %s: %q %v, want %q among them, sorted", cfg.Topic("shipping"), ps, err, cfg.Prefix)
	}
}

// A dead letter without its record (too large to dead-letter whole) is
// listed, refused by Replay (nothing to copy) and passed over by
// ReplayAll, which replays the rest and does not stop at it again.
func TestDeadLetterWithoutItsRecord(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	prefix := testenv.Prefix(t)
	brokers := testenv.Kafka(t)
	cfg := dlq.Config{Brokers: brokers, Prefix: prefix}
	source := prefix + events.TopicOrders
	if err := kafkatopics.Ensure(ctx, brokers, kafkatopics.Spec{Name: cfg.Topic("payment"), Partitions: 1},
		kafkatopics.Spec{Name: source, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	origin := func(offset string, more ...kafka.Header) []kafka.Header {
		return append([]kafka.Header{{Key: events.HeaderDLQError, Value: []byte("decode event: unknown type")},
			{Key: events.HeaderDLQSourceTopic, Value: []byte(source)}, {Key: events.HeaderDLQSourcePartition, Value: []byte("0")},
			{Key: events.HeaderDLQSourceOffset, Value: []byte(offset)}, {Key: events.HeaderDLQGroup, Value: []byte("payment")},
			{Key: events.HeaderDLQAttempts, Value: []byte("1")}}, more...)
	}
	w := &kafka.Writer{Transport: &kafka.Transport{}, Addr: kafka.TCP(brokers...), Topic: cfg.Topic("payment"), RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	omitted := "key (36 bytes), value (1048400 bytes) and 7 original headers (250 bytes): too large for " + cfg.Topic("payment")
	if err := w.WriteMessages(ctx,
		kafka.Message{Headers: origin("7", kafka.Header{Key: events.HeaderDLQOmitted, Value: []byte(omitted)})},
		kafka.Message{Key: []byte("order-9"), Value: []byte("{}"), Headers: origin("9")}); err != nil {
		t.Fatal(err)
	}

	ls, _, err := dlq.List(ctx, cfg)
	if err != nil || len(ls) != 2 || ls[0].Omitted != omitted || ls[1].Omitted != "" {
		t.Fatalf("list: %+v %v; want two, the first without its record", ls, err)
	}
	if _, err := dlq.Replay(ctx, cfg, "payment", 0); !errors.Is(err, dlq.ErrWithoutRecord) ||
		!strings.Contains(err.Error(), "the record is at "+source+" partition 0 offset 7") {
		t.Errorf("replay of the stub: %v, want ErrWithoutRecord saying where the record is", err)
	}
	for run := 1; run <= 2; run++ {
		done, err := dlq.ReplayAll(ctx, cfg, "payment")
		if err != nil {
			t.Fatalf("replay --all, run %d: %v", run, err)
		}
		if run == 2 {
			if len(done) != 0 {
				t.Errorf("second replay --all: %+v, want nothing left", done)
			}
			break
		}
		if len(done) != 2 || done[0].Skipped == "" || done[1].Skipped != "" || done[1].ToTopic != source {
			t.Fatalf("replay --all: %+v; want the stub skipped and the other replayed to %s", done, source)
		}
	}
}

// refuseOffsetFetch is a transport whose OffsetFetch requests fail, as
// they do for a user not allowed to describe the replay group.
type refuseOffsetFetch struct{ kafka.RoundTripper }

func (r refuseOffsetFetch) RoundTrip(ctx context.Context, addr net.Addr, req kafka.Request) (kafka.Response, error) {
	if _, ok := req.(*offsetfetch.Request); ok {
		return nil, kafka.GroupAuthorizationFailed
	}
	return r.RoundTripper.RoundTrip(ctx, addr, req)
}

// When replay --all's progress cannot be read, List still lists the dead
// letters, each marked ReplayUnknown, with a warning saying why: it used
// to fail outright, showing none.
func TestListWithoutReplayProgress(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	prefix := testenv.Prefix(t)
	brokers := testenv.Kafka(t)
	cfg := dlq.Config{Brokers: brokers, Prefix: prefix}
	if err := kafkatopics.Ensure(ctx, brokers, kafkatopics.Spec{Name: cfg.Topic("inventory"), Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Transport: &kafka.Transport{}, Addr: kafka.TCP(brokers...), Topic: cfg.Topic("inventory"), RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	if err := w.WriteMessages(ctx, kafka.Message{Key: []byte("order-1"), Value: []byte("{}"), Headers: []kafka.Header{
		{Key: events.HeaderDLQError, Value: []byte("decode event: unknown type")}, {Key: events.HeaderDLQGroup, Value: []byte("inventory")}}}); err != nil {
		t.Fatal(err)
	}
	cfg.Transport = refuseOffsetFetch{kafka.DefaultTransport}
	ls, warnings, err := dlq.List(ctx, cfg, "inventory")
	if err != nil || len(ls) != 1 || !ls[0].ReplayUnknown || ls[0].DoneByAll {
		t.Fatalf("list: %+v %v; want the letter, its replays unknown", ls, err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "replay progress of "+cfg.ReplayGroup("inventory")) ||
		!strings.Contains(warnings[0], "Group Authorization Failed") {
		t.Errorf("warnings %q, want one naming the replay group and the broker's answer", warnings)
	}
}
