package inventory_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/outbox"
	"github.com/shopflow/shopflow/pkg/platform/pg"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
	"github.com/shopflow/shopflow/services/inventory"
	"github.com/shopflow/shopflow/services/inventory/internal/app"
	"github.com/shopflow/shopflow/services/inventory/internal/consume"
	"github.com/shopflow/shopflow/services/inventory/internal/stock"
	"github.com/shopflow/shopflow/services/inventory/migrations"
)

// benchOrders is how many orders each run pushes through: each is
// placed, then confirmed or (one in four) cancelled, so a run applies
// twice as many events.
const benchOrders = 5000

// benchEvents is how many records a run applies.
const benchEvents = 2 * benchOrders

// benchSKUs is the catalog the orders draw from.
const benchSKUs = 50

// benchLag is how many orders are placed between an order's placement
// and its confirmation or cancellation, so a batch mixes the three kinds
// as the saga does (payment answers a little later than placement).
const benchLag = 50

// orderBacklog builds the records of n orders, encoded for Kafka: each
// OrderPlaced with one to three lines over the catalog, and, benchLag
// orders later, its OrderConfirmed or (every fourth order)
// OrderCancelled.
func orderBacklog(b *testing.B, n int, topic string) []kafka.Message {
	b.Helper()
	rng := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	run := rng.Uint32()
	id := func(i int) string { return fmt.Sprintf("order-%08x-%06d", run, i) }
	out := make([]kafka.Message, 0, 2*n)
	add := func(p events.Payload) {
		m, err := events.Encode(events.New("/shopflow/order", p))
		if err != nil {
			b.Fatal(err)
		}
		km := kafka.Message{Topic: topic, Key: m.Key, Value: m.Value, Headers: make([]kafka.Header, len(m.Headers))}
		for j, h := range m.Headers {
			km.Headers[j] = kafka.Header(h)
		}
		out = append(out, km)
	}
	settle := func(i int) {
		if i%4 == 3 {
			add(events.OrderCancelled{OrderID: id(i), Reason: "payment declined", CancelledAt: time.Now().UTC()})
		} else {
			add(events.OrderConfirmed{OrderID: id(i), ConfirmedAt: time.Now().UTC()})
		}
	}
	for i := range n {
		var lines []events.Line
		var total int64
		for range 1 + rng.IntN(3) {
			l := events.Line{SKU: fmt.Sprintf("SKU-%04d", 1+rng.IntN(benchSKUs)), Quantity: 1 + rng.IntN(3), UnitPriceCents: 1999}
			lines = append(lines, l)
			total += int64(l.Quantity) * l.UnitPriceCents
		}
		add(events.OrderPlaced{
			OrderID: id(i), CustomerID: "cust-42", Currency: "USD", TotalCents: total,
			Items: lines, Payment: events.PaymentMethod{CardToken: "tok_visa"},
			ShippingAddress: events.Address{Name: "Ada Lovelace", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"},
			PlacedAt:        time.Now().UTC(),
		})
		if i >= benchLag {
			settle(i - benchLag)
		}
	}
	for i := max(n-benchLag, 0); i < n; i++ {
		settle(i)
	}
	return out
}

func produceAll(b *testing.B, msgs []kafka.Message) {
	b.Helper()
	w := &kafka.Writer{Transport: &kafka.Transport{}, Addr: kafka.TCP(testenv.Kafka(b)...), RequiredAcks: kafka.RequireAll,
		Balancer: &kafka.Murmur2Balancer{}, BatchTimeout: time.Millisecond, BatchSize: 1000, BatchBytes: 1 << 20}
	defer w.Close()
	for i := 0; i < len(msgs); i += 1000 {
		if err := w.WriteMessages(context.Background(), msgs[i:min(i+1000, len(msgs))]...); err != nil {
			b.Fatal(err)
		}
	}
}

// consumeBacklog times one inbox.Consumer applying a fresh backlog of
// benchOrders orders (benchEvents records) through handler, configured as the service runs its
// consumer (service.Spec.Parallelism, default batch size).
func consumeBacklog(b *testing.B, pool *pgxpool.Pool, handler inbox.Handler, batch inbox.BatchHandler) {
	for range b.N {
		b.StopTimer()
		topic := testenv.Topic(b, "orders", 12)
		produceAll(b, orderBacklog(b, benchOrders, topic))
		c, err := inbox.New(pool, inbox.Config{Brokers: testenv.Kafka(b), Group: testenv.Name(b, "g"), Topics: []string{topic},
			DLQTopic: testenv.Name(b, "dlq"), Handler: handler, BatchHandler: batch, Parallelism: inventory.Spec().Parallelism,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			b.Fatal(err)
		}
		if st := testenv.Drain(b, c, benchEvents); st.Retries > 0 {
			b.Logf("%d retries while applying the backlog", st.Retries)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(benchEvents)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkConsumer pushes the records of benchOrders realistic orders
// (each placed, then confirmed or cancelled: benchEvents records) through
// the inventory's real inbox handler as the service runs it, a batch at
// a time, on the real broker and PostgreSQL, and, in the same run, the
// same records through an inbox.Consumer whose handler does nothing: the
// backbone's ceiling, so the difference is the inventory's own cost.
func BenchmarkConsumer(b *testing.B) {
	pool := testenv.Pool(b, inventory.Schema,
		pg.Migrations{Name: outbox.MigrationsTable, FS: outbox.Migrations()},
		pg.Migrations{Name: inbox.MigrationsTable, FS: inbox.Migrations()},
		pg.Migrations{Name: migrations.Table, FS: migrations.FS()})
	svc := app.New(pool, nil, 5*time.Second)
	for i := 1; i <= benchSKUs; i++ {
		// Enough that every order is reserved, the costlier path.
		if _, _, err := svc.SetOnHand(context.Background(), fmt.Sprintf("SKU-%04d", i), 1_000_000_000, stock.Precondition{}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("handler", func(b *testing.B) { consumeBacklog(b, pool, nil, consume.BatchHandler(svc, nil)) })
	b.Run("noop", func(b *testing.B) {
		consumeBacklog(b, pool, func(context.Context, pgx.Tx, events.Event) error { return nil }, nil)
	})
}
