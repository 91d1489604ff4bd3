package payment

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/outbox"
	"github.com/shopflow/shopflow/pkg/platform/pg"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
	"github.com/shopflow/shopflow/services/payment/internal/consume"
	"github.com/shopflow/shopflow/services/payment/internal/gateway"
)

// benchEvents is how many OrderPlaced events each iteration moves.
const benchEvents = 5000

// BenchmarkConsumer measures the payment consumer's throughput, in
// events/s, through its real handler as the service runs it, a batch at a
// time (lock the batch's payments, authorize at the fake gateway on its
// own pool side by side, then payment rows, history entries and result
// events in the outbox in one round trip), beside the same
// inbox.Consumer with a no-op handler, on the same broker, database and
// backlog, so the difference is what the payment work costs.
// Each iteration produces benchEvents fresh orders (tok_visa, distinct
// order ids: every one is a real authorization) before the clock starts.
func BenchmarkConsumer(b *testing.B) {
	url := testenv.DatabaseURL(b)
	pool := testenv.PoolAt(b, url, Schema,
		pg.Migrations{Name: outbox.MigrationsTable, FS: outbox.Migrations()},
		pg.Migrations{Name: inbox.MigrationsTable, FS: inbox.Migrations()},
		Migrations())
	gwPool := testenv.PoolAt(b, url, Schema)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	handler := consume.New(gateway.NewFake(gwPool, gateway.FakeConfig{}), log).HandleBatch
	noop := func(context.Context, pgx.Tx, events.Event) error { return nil }

	b.Run("handler", func(b *testing.B) { benchInbox(b, pool, nil, handler) })
	b.Run("noop", func(b *testing.B) { benchInbox(b, pool, noop, nil) })
}

// benchInbox times an inbox.Consumer applying a fresh backlog through h
// or, if set, batch.
func benchInbox(b *testing.B, pool *pgxpool.Pool, h inbox.Handler, batch inbox.BatchHandler) {
	for range b.N {
		b.StopTimer()
		topic := testenv.Topic(b, "orders", 12)
		produceBench(b, topic, benchBacklog(b))
		c, err := inbox.New(pool, inbox.Config{Brokers: testenv.Kafka(b), Group: testenv.Name(b, "payment"),
			Topics: []string{topic}, DLQTopic: testenv.Name(b, "dlq"), Handler: h, BatchHandler: batch,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			b.Fatal(err)
		}
		if s := testenv.Drain(b, c, benchEvents); s.DeadLettered != 0 || s.Processed != benchEvents {
			b.Fatalf("consumer stats %+v, want exactly %d processed and none dead-lettered", s, benchEvents)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(benchEvents)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// benchBacklog builds benchEvents realistic OrderPlaced records, one order each.
func benchBacklog(b *testing.B) []kafka.Message {
	b.Helper()
	out := make([]kafka.Message, benchEvents)
	for i := range out {
		m, err := events.Encode(events.New("/shopflow/order", events.OrderPlaced{
			OrderID: uuid.Must(uuid.NewV7()).String(), CustomerID: "cust-42", Currency: "USD", TotalCents: 2*1999 + 4999,
			Items: []events.Line{
				{SKU: "SKU-0001", Quantity: 2, UnitPriceCents: 1999},
				{SKU: "SKU-0002", Quantity: 1, UnitPriceCents: 4999},
			},
			Payment:         events.PaymentMethod{CardToken: gateway.TokenVisa},
			ShippingAddress: events.Address{Name: "Ada Lovelace", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"},
			PlacedAt:        time.Now().UTC(),
		}))
		if err != nil {
			b.Fatal(err)
		}
		km := kafka.Message{Key: m.Key, Value: m.Value}
		for _, h := range m.Headers {
			km.Headers = append(km.Headers, kafka.Header(h))
		}
		out[i] = km
	}
	return out
}

func produceBench(b *testing.B, topic string, msgs []kafka.Message) {
	b.Helper()
	w := &kafka.Writer{Transport: &kafka.Transport{}, Addr: kafka.TCP(testenv.Kafka(b)...), Topic: topic, RequiredAcks: kafka.RequireAll,
		Balancer: &kafka.Murmur2Balancer{}, BatchTimeout: time.Millisecond, BatchSize: 1000, BatchBytes: 1 << 20}
	defer w.Close()
	for i := 0; i < len(msgs); i += 1000 {
		if err := w.WriteMessages(context.Background(), msgs[i:min(i+1000, len(msgs))]...); err != nil {
			b.Fatal(err)
		}
	}
}
