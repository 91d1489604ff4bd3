package shipping_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/outbox"
	"github.com/shopflow/shopflow/pkg/platform/pg"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
	"github.com/shopflow/shopflow/services/shipping"
	"github.com/shopflow/shopflow/services/shipping/internal/consume"
	"github.com/shopflow/shopflow/services/shipping/internal/shipment"
)

// benchEvents is the backlog each iteration consumes.
const benchEvents = 5000

// orders builds n OrderPlaced records for n distinct orders, as the
// order service publishes them (about 600 bytes each).
func orders(b *testing.B, n int, topic string) []kafka.Message {
	b.Helper()
	out := make([]kafka.Message, n)
	placedAt := time.Now().UTC()
	for i := range out {
		m, err := events.Encode(placedEvent(uuid.NewString(), placedAt.Add(time.Duration(i)*time.Second), ada))
		if err != nil {
			b.Fatal(err)
		}
		km := kafka.Message{Topic: topic, Key: m.Key, Value: m.Value}
		for _, h := range m.Headers {
			km.Headers = append(km.Headers, kafka.Header(h))
		}
		out[i] = km
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

// BenchmarkConsumer pushes benchEvents OrderPlaced records through an
// inbox.Consumer on the real broker and PostgreSQL: "shipping" with the
// service's real handler as the service runs it, a batch at a time
// (address check, tracking serials, pickup slot, shipment and history
// rows, ShipmentScheduled in the outbox), "noop" with a handler that does
// nothing (decode, inbox insert, transaction, offset commit), so the
// handler's own cost reads as the difference.
func BenchmarkConsumer(b *testing.B) {
	sched := shipment.Schedule{Location: time.UTC, Cutoff: shipment.Cutoff{Hour: 15}}
	for _, c := range []struct {
		name    string
		handler inbox.Handler
		batch   inbox.BatchHandler
	}{
		{"shipping", nil, consume.Handler{Schedule: sched, Log: slog.New(slog.DiscardHandler)}.HandleBatch},
		{"noop", func(context.Context, pgx.Tx, events.Event) error { return nil }, nil},
	} {
		b.Run(c.name, func(b *testing.B) {
			pool := testenv.Pool(b, shipping.Schema,
				pg.Migrations{Name: outbox.MigrationsTable, FS: outbox.Migrations()},
				pg.Migrations{Name: inbox.MigrationsTable, FS: inbox.Migrations()},
				shipping.Migrations())
			for range b.N {
				b.StopTimer()
				topic := testenv.Topic(b, "orders", 12)
				produceAll(b, orders(b, benchEvents, topic))
				cons, err := inbox.New(pool, inbox.Config{Brokers: testenv.Kafka(b), Group: testenv.Name(b, "g"),
					Topics: []string{topic}, DLQTopic: testenv.Name(b, "dlq"), Handler: c.handler, BatchHandler: c.batch,
					Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					b.Fatal(err)
				}
				testenv.Drain(b, cons, benchEvents)
				b.StartTimer()
			}
			b.ReportMetric(float64(benchEvents)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
