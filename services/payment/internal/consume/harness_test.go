package consume_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/outbox"
	"github.com/shopflow/shopflow/pkg/platform/pg"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
	"github.com/shopflow/shopflow/services/payment"
	"github.com/shopflow/shopflow/services/payment/internal/consume"
	"github.com/shopflow/shopflow/services/payment/internal/gateway"
	"github.com/shopflow/shopflow/services/payment/internal/store"
)

// harness runs the payment handler behind a real inbox.Consumer on the
// test broker and PostgreSQL, without the relay: result events stay in the
// outbox table, where the tests read them. Built by newDB, it has no
// consumer: the test calls the handlers itself.
type harness struct {
	t        *testing.T
	pool     *pgxpool.Pool // the service's
	gwPool   *pgxpool.Pool // the gateway's own
	topic    string
	dlq      string
	consumer *inbox.Consumer
	w        *kafka.Writer
}

// newDB returns a harness without a consumer: the service's tables in a
// fresh database, and the gateway's own pool on it.
func newDB(t *testing.T) *harness {
	t.Helper()
	url := testenv.DatabaseURL(t)
	pool := testenv.PoolAt(t, url, payment.Schema,
		pg.Migrations{Name: outbox.MigrationsTable, FS: outbox.Migrations()},
		pg.Migrations{Name: inbox.MigrationsTable, FS: inbox.Migrations()},
		payment.Migrations())
	return &harness{t: t, pool: pool, gwPool: testenv.PoolAt(t, url, payment.Schema)}
}

// testLog logs warnings and errors to the test's output.
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// newHarness starts a consumer applying records as the service does, a
// batch at a time (Handler.HandleBatch); wrap, if set, wraps the fake
// gateway.
func newHarness(t *testing.T, wrap func(gateway.Gateway) gateway.Gateway) *harness {
	return startHarness(t, wrap, false)
}

// startHarness is newHarness, applying records one at a time
// (Handler.Handle) if perEvent.
func startHarness(t *testing.T, wrap func(gateway.Gateway) gateway.Gateway, perEvent bool) *harness {
	t.Helper()
	h := newDB(t)
	h.topic, h.dlq = testenv.Topic(t, "orders", 3), testenv.Name(t, "dlq")
	var gw gateway.Gateway = gateway.NewFake(h.gwPool, gateway.FakeConfig{})
	if wrap != nil {
		gw = wrap(gw)
	}
	log := testLog(t)
	cfg := inbox.Config{Brokers: testenv.Kafka(t), Group: testenv.Name(t, "payment"),
		Topics: []string{h.topic}, DLQTopic: h.dlq,
		RetryBase: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond, OutageFor: time.Second, Logger: log}
	if perEvent {
		cfg.Handler = consume.New(gw, log).Handle
	} else {
		cfg.BatchHandler = consume.New(gw, log).HandleBatch
	}
	c, err := inbox.New(h.pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.consumer = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	h.w = &kafka.Writer{Transport: &kafka.Transport{}, Addr: kafka.TCP(testenv.Kafka(t)...), Topic: h.topic, Balancer: &kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	t.Cleanup(func() {
		_ = h.w.Close()
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("consumer: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("consumer did not stop within 30 s")
		}
	})
	return h
}

// produce publishes the events to the orders topic, in order.
func (h *harness) produce(evs ...events.Event) {
	h.t.Helper()
	for _, ev := range evs {
		m, err := events.Encode(ev)
		if err != nil {
			h.t.Fatal(err)
		}
		km := kafka.Message{Key: m.Key, Value: m.Value}
		for _, hd := range m.Headers {
			km.Headers = append(km.Headers, kafka.Header(hd))
		}
		if err := h.w.WriteMessages(context.Background(), km); err != nil {
			h.t.Fatal(err)
		}
	}
}

// history returns the order's history once it has at least n entries.
func (h *harness) history(orderID string, n int) []store.Entry {
	h.t.Helper()
	var got []store.Entry
	testenv.Eventually(h.t, time.Minute, "history of "+orderID+" has too few entries", func() bool {
		var err error
		got, err = store.History(context.Background(), h.pool, orderID)
		if err != nil {
			h.t.Fatal(err)
		}
		return len(got) >= n
	})
	return got
}

// payment returns the order's payment, or nil.
func (h *harness) payment(orderID string) *paymentRow {
	h.t.Helper()
	p, err := store.Get(context.Background(), h.pool, orderID)
	if err != nil {
		return nil
	}
	return &paymentRow{Status: string(p.Status), AmountCents: p.AmountCents, Code: p.AuthorizationCode, Reason: p.Reason, PaymentID: p.PaymentID}
}

type paymentRow struct {
	Status      string
	AmountCents int64
	Code        string
	Reason      string
	PaymentID   string
}

// results decodes the events the handler wrote to the outbox for the order.
func (h *harness) results(orderID string) []events.Event {
	h.t.Helper()
	return h.outbox(`WHERE key = $1`, []byte(orderID))
}

// outbox decodes the events in the outbox rows that where selects, in
// the order they were written.
func (h *harness) outbox(where string, args ...any) []events.Event {
	h.t.Helper()
	rows, err := h.pool.Query(context.Background(), `SELECT topic, headers, value FROM outbox `+where+` ORDER BY id`, args...)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	var out []events.Event
	for rows.Next() {
		var topic string
		var raw []byte
		var value []byte
		if err := rows.Scan(&topic, &raw, &value); err != nil {
			h.t.Fatal(err)
		}
		if topic != events.TopicPayments {
			h.t.Errorf("result on topic %q, want %q", topic, events.TopicPayments)
		}
		var pairs [][2]string
		if err := json.Unmarshal(raw, &pairs); err != nil {
			h.t.Fatal(err)
		}
		hs := make([]events.Header, len(pairs))
		for i, p := range pairs {
			hs[i] = events.Header{Key: p[0], Value: []byte(p[1])}
		}
		ev, err := events.Decode(hs, value)
		if err != nil {
			h.t.Fatalf("result does not decode: %v", err)
		}
		if ev.Source != consume.Source {
			h.t.Errorf("result source %q, want %q", ev.Source, consume.Source)
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		h.t.Fatal(err)
	}
	return out
}

// charges counts the gateway's ledger rows for the order by operation and
// outcome ("authorize/approved": 1), and returns the authorize attempts.
func (h *harness) charges(orderID string) (map[string]int, int) {
	h.t.Helper()
	rows, err := h.gwPool.Query(context.Background(),
		`SELECT operation || '/' || outcome, attempts FROM gateway_charges WHERE idempotency_key = $1`, orderID)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	attempts := 0
	for rows.Next() {
		var k string
		var a int
		if err := rows.Scan(&k, &a); err != nil {
			h.t.Fatal(err)
		}
		out[k]++
		if len(k) > 9 && k[:9] == "authorize" {
			attempts = a
		}
	}
	if err := rows.Err(); err != nil {
		h.t.Fatal(err)
	}
	return out, attempts
}

func placed(orderID, token string, total int64) events.Event {
	return events.New("/shopflow/order", events.OrderPlaced{
		OrderID: orderID, CustomerID: "cust-42", Currency: "USD", TotalCents: total,
		Items:           []events.Line{{SKU: "SKU-0001", Quantity: 1, UnitPriceCents: total}},
		Payment:         events.PaymentMethod{CardToken: token},
		ShippingAddress: events.Address{Name: "Ada Lovelace", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"},
		PlacedAt:        time.Now().UTC(),
	})
}

func confirmed(orderID string) events.Event {
	return events.New("/shopflow/order", events.OrderConfirmed{OrderID: orderID, ConfirmedAt: time.Now().UTC()})
}

func cancelled(orderID, reason string) events.Event {
	return events.New("/shopflow/order", events.OrderCancelled{OrderID: orderID, Reason: reason, CancelledAt: time.Now().UTC()})
}

func newOrderID() string { return uuid.Must(uuid.NewV7()).String() }
