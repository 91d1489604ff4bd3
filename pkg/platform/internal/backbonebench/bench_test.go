package backbonebench

import (
	"context"
	"fmt"
	"sync/atomic"
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
)

// backlog is the number of events each benchmark moves per iteration.
const backlog = 100_000

const partitions = 12

// sample builds n realistic OrderPlaced messages (about 600 bytes each)
// over n/4 orders.
func sample(b *testing.B, n int) []events.Message {
	b.Helper()
	msgs := make([]events.Message, n)
	for i := range msgs {
		ev := events.New("/shopflow/order", events.OrderPlaced{
			OrderID: fmt.Sprintf("order-%08d", i/4), CustomerID: "cust-42", Currency: "USD", TotalCents: 2 * 1999,
			Items:           []events.Line{{SKU: "SKU-0001", Quantity: 2, UnitPriceCents: 1999}},
			Payment:         events.PaymentMethod{CardToken: "tok_visa"},
			ShippingAddress: events.Address{Name: "Ada Lovelace", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"},
			PlacedAt:        time.Now().UTC(),
		})
		m, err := events.Encode(ev)
		if err != nil {
			b.Fatal(err)
		}
		msgs[i] = m
	}
	return msgs
}

func toKafka(msgs []events.Message, topic string) []kafka.Message {
	out := make([]kafka.Message, len(msgs))
	for i, m := range msgs {
		km := kafka.Message{Topic: topic, Key: m.Key, Value: m.Value, Headers: make([]kafka.Header, len(m.Headers))}
		for j, h := range m.Headers {
			km.Headers[j] = kafka.Header(h)
		}
		out[i] = km
	}
	return out
}

// writer is configured as the relay's is, so raw produce is its ceiling.
func writer(b *testing.B) *kafka.Writer {
	return &kafka.Writer{Transport: &kafka.Transport{}, Addr: kafka.TCP(testenv.Kafka(b)...), RequiredAcks: kafka.RequireAll,
		Balancer: &kafka.Murmur2Balancer{}, BatchTimeout: time.Millisecond, BatchSize: 1000, BatchBytes: 1 << 20}
}

func produce(b *testing.B, msgs []kafka.Message) {
	b.Helper()
	w := writer(b)
	defer w.Close()
	for i := 0; i < len(msgs); i += 1000 {
		if err := w.WriteMessages(context.Background(), msgs[i:min(i+1000, len(msgs))]...); err != nil {
			b.Fatal(err)
		}
	}
}

func report(b *testing.B, n int) {
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkBackboneRawProduce: kafka-go WriteMessages, acks=all, 1000 per call.
func BenchmarkBackboneRawProduce(b *testing.B) {
	msgs := sample(b, backlog)
	for range b.N {
		b.StopTimer()
		km := toKafka(msgs, testenv.Topic(b, "raw_produce", partitions))
		b.StartTimer()
		produce(b, km)
	}
	report(b, backlog)
}

// BenchmarkBackboneRawConsume: a group reader fetching, committing every
// 100 records (as the inbox commits per batch).
func BenchmarkBackboneRawConsume(b *testing.B) {
	msgs := sample(b, backlog)
	for range b.N {
		b.StopTimer()
		topic := testenv.Topic(b, "raw_consume", partitions)
		produce(b, toKafka(msgs, topic))
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: testenv.Kafka(b), GroupID: testenv.Name(b, "g"), Topic: topic,
			StartOffset: kafka.FirstOffset, MaxWait: 250 * time.Millisecond, QueueCapacity: 200,
			SessionTimeout: 6 * time.Second, HeartbeatInterval: time.Second, JoinGroupBackoff: 200 * time.Millisecond})
		b.StartTimer()
		ctx := context.Background()
		pending := make([]kafka.Message, 0, 100)
		for n := 0; n < backlog; n++ {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				b.Fatal(err)
			}
			pending = append(pending, m)
			if len(pending) == 100 || n == backlog-1 {
				if err := r.CommitMessages(ctx, pending...); err != nil {
					b.Fatal(err)
				}
				pending = pending[:0]
			}
		}
		b.StopTimer()
		r.Close()
		b.StartTimer()
	}
	report(b, backlog)
}

// BenchmarkBackboneRelayDrain: the relay publishing a committed backlog.
func BenchmarkBackboneRelayDrain(b *testing.B) {
	msgs := sample(b, backlog)
	pool := testenv.Pool(b, "bench", pg.Migrations{Name: outbox.MigrationsTable, FS: outbox.Migrations()})
	for range b.N {
		b.StopTimer()
		topic := testenv.Topic(b, "relay", partitions)
		for i := range msgs {
			msgs[i].Topic = topic
		}
		ctx := context.Background()
		for i := 0; i < len(msgs); i += 1000 {
			err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				return outbox.WriteMessages(ctx, tx, msgs[i:min(i+1000, len(msgs))]...)
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		rctx, cancel := context.WithCancel(ctx)
		// Count acknowledged events through the relay's own callback:
		// polling count(*) would seq-scan the table under the relay.
		var published atomic.Int64
		allOut := make(chan struct{})
		relay := outbox.NewRelay(pool, outbox.RelayConfig{Brokers: testenv.Kafka(b), OnPublish: func(n int, _ time.Duration) {
			if published.Add(int64(n)) == backlog {
				close(allOut)
			}
		}})
		done := make(chan error, 1)
		b.StartTimer()
		go func() { done <- relay.Run(rctx) }()
		<-allOut
		b.StopTimer()
		waitEmpty(b, pool)
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	report(b, backlog)
}

func waitEmpty(b *testing.B, pool *pgxpool.Pool) {
	for {
		var left int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox`).Scan(&left); err != nil {
			b.Fatal(err)
		}
		if left == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkBackboneInboxNoop: the idempotent consumer with a handler that
// does nothing: decode, inbox insert, transaction, offset commit.
func BenchmarkBackboneInboxNoop(b *testing.B) {
	msgs := sample(b, backlog)
	pool := testenv.Pool(b, "bench", pg.Migrations{Name: inbox.MigrationsTable, FS: inbox.Migrations()})
	for range b.N {
		b.StopTimer()
		topic := testenv.Topic(b, "inbox", partitions)
		produce(b, toKafka(msgs, topic))
		c, err := inbox.New(pool, inbox.Config{Brokers: testenv.Kafka(b), Group: testenv.Name(b, "g"), Topics: []string{topic},
			DLQTopic: testenv.Name(b, "dlq"), Handler: func(context.Context, pgx.Tx, events.Event) error { return nil }})
		if err != nil {
			b.Fatal(err)
		}
		testenv.Drain(b, c, backlog)
		b.StartTimer()
	}
	report(b, backlog)
}
