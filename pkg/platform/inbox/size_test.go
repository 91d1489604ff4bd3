package inbox_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

func headerBytes(m kafka.Message) int {
	n := 0
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// padded is confirmed(order) with an unknown payload field that makes
// its value size bytes: a valid event of that size.
func padded(t *testing.T, order string, size int) kafka.Message {
	t.Helper()
	m := message(t, "", confirmed(order))
	pad := size - len(m.Value) - len(`"padding":"",`)
	m.Value = append([]byte(`{"padding":"`+string(bytes.Repeat([]byte("x"), pad))+`",`), m.Value[1:]...)
	if len(m.Value) != size {
		t.Fatalf("padded to %d bytes, want %d", len(m.Value), size)
	}
	return m
}

// The records a consumer holds fetched and not yet applied are bounded in
// bytes, not only in number: with its handler held up, a consumer holds
// no more than MaxBufferedBytes of large records (or one record, when
// one alone is larger), and applies them all once the handler goes on.
// Bounded by number alone (MaxBuffered, 20 batches of 100 records a
// worker), it fetched every record of the test: 4 MB, where records near
// the broker's 1 MiB limit would have been 8 GiB.
func TestBufferedBytesAreBounded(t *testing.T) {
	t.Parallel()
	const size = 400_000 // bytes of each record's value
	for _, tc := range []struct {
		name   string
		budget int
		alone  bool // each record is over the budget: the consumer holds one at a time
	}{
		{"two records fit", 1 << 20, false},
		{"each record alone is over", 300_000, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, 1)
			var msgs []kafka.Message
			most := int64(tc.budget) // the most the consumer may hold
			for i := range 10 {
				m := padded(t, fmt.Sprintf("order-%d", i), size)
				msgs = append(msgs, m)
				if n := int64(len(m.Key) + len(m.Value) + headerBytes(m)); tc.alone {
					most = max(n, most)
				}
			}
			w := &kafka.Writer{Transport: &kafka.Transport{}, Addr: kafka.TCP(f.brokers...), Topic: f.topic, RequiredAcks: kafka.RequireAll,
				Balancer: &kafka.Murmur2Balancer{}, BatchTimeout: time.Millisecond, BatchBytes: 2 << 20}
			defer w.Close()
			for _, m := range msgs { // one produce request each: the broker takes up to 1 MiB a batch
				if err := w.WriteMessages(context.Background(), m); err != nil {
					t.Fatal(err)
				}
			}
			release := make(chan struct{})
			var once sync.Once
			free := func() { once.Do(func() { close(release) }) }
			t.Cleanup(free)
			waits := func(ctx context.Context, tx pgx.Tx, ev events.Event) error {
				<-release
				return recordEffect(ctx, tx, ev)
			}
			c := f.consumer(waits, func(c *inbox.Config) { c.MaxBufferedBytes = tc.budget; c.Parallelism = 1 })
			f.run(c)

			// The consumer fetches until the budget is spent (the handler
			// holds the first batch), then waits. What it holds is watched
			// for a second after it has begun to fetch: long enough for a
			// consumer without the bound to fetch all 4 MB (a few ms);
			// one with the bound never passes it, however long it runs.
			testenv.Eventually(t, 30*time.Second, "the consumer fetched nothing", func() bool { return c.Stats().Buffered > 0 })
			var held int64
			tick, done := time.NewTicker(5*time.Millisecond), time.After(time.Second)
			defer tick.Stop()
		watch:
			for {
				held = max(held, c.Stats().Buffered)
				select {
				case <-tick.C:
				case <-done:
					break watch
				}
			}
			if held > most {
				t.Errorf("the consumer held %d bytes of records; want at most %d (MaxBufferedBytes %d, records of %d bytes)",
					held, most, tc.budget, size)
			}
			free()
			f.waitEffects(len(msgs))
			testenv.Eventually(t, 10*time.Second, "bytes still counted as held once all was applied", func() bool { return c.Stats().Buffered == 0 })
		})
	}
}

// A record far over the contract's MaxPayloadBytes, on a topic whose
// max.message.bytes lets it in (9 MB; the consumer fetches at most 2 MiB
// a partition, which a broker passes for a record larger on its own), is
// dead-lettered at its first attempt, unparsed, and the partition moves
// on. Parsed, it took the memory of a record many times its size, and
// was applied.
func TestARecordOverThePayloadLimitIsDeadLettered(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	const size = 9_000_000
	client := &kafka.Client{Addr: kafka.TCP(f.brokers...), Transport: &kafka.Transport{}}
	res, err := client.IncrementalAlterConfigs(context.Background(), &kafka.IncrementalAlterConfigsRequest{
		Resources: []kafka.IncrementalAlterConfigsRequestResource{{ResourceType: kafka.ResourceTypeTopic, ResourceName: f.topic,
			Configs: []kafka.IncrementalAlterConfigsRequestConfig{{Name: "max.message.bytes", Value: "10485760", ConfigOperation: kafka.ConfigOperationSet}}}}})
	if err == nil && len(res.Resources) > 0 {
		err = res.Resources[0].Error
	}
	if err != nil {
		t.Fatalf("raise %s's max.message.bytes: %v", f.topic, err)
	}
	big, after := padded(t, "order-big", size), message(t, "", confirmed("order-after"))
	w := &kafka.Writer{Transport: &kafka.Transport{}, Addr: kafka.TCP(f.brokers...), Topic: f.topic, RequiredAcks: kafka.RequireAll,
		Balancer: &kafka.Murmur2Balancer{}, BatchTimeout: time.Millisecond, BatchBytes: 16 << 20}
	defer w.Close()
	for _, m := range []kafka.Message{big, after} {
		if err := w.WriteMessages(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	c := f.consumer(recordEffect)
	f.run(c)

	dead := testenv.Consume(t, f.dlq, 30*time.Second, testenv.Count(1))
	f.waitEffects(1)
	hs := testenv.Headers(dead[0])
	want := fmt.Sprintf("malformed payload: %d bytes, more than the %d a payload may have", size, events.MaxPayloadBytes)
	if !strings.Contains(hs[inbox.HeaderError], want) || hs[inbox.HeaderAttempts] != "1" || hs[inbox.HeaderOffset] != "0" {
		t.Errorf("dead letter: %v; want the record at offset 0, at its first attempt, saying %q", hs, want)
	}
	if n := f.count(`SELECT count(*) FROM effects WHERE order_id = 'order-big'`); n != 0 {
		t.Errorf("the 9 MB record was applied %d times", n)
	}
}
