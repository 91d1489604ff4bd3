package inbox

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/segmentio/kafka-go"
)

// budget bounds the bytes of the records a member holds between fetching
// them and settling them (applied, skipped or dead-lettered): the fetcher
// takes a record's bytes before it hands the record on, and the worker
// gives them back once its transaction is over. A count of records alone
// did not bound memory: the 8,000 records four workers could hold waiting
// are some 6 MB of ordinary events, and 8 GiB of records near the 1 MiB a
// broker takes by default.
type budget struct {
	mu   sync.Mutex
	used int64
	max  int64
	room chan struct{} // signalled when bytes are given back
	// gauge mirrors used for Stats, which outlives the member.
	gauge *atomic.Int64
}

func newBudget(max int64, gauge *atomic.Int64) *budget {
	gauge.Store(0)
	return &budget{max: max, room: make(chan struct{}, 1), gauge: gauge}
}

// take waits until n more bytes fit, then takes them; false if ctx ended
// first. With nothing held, any record fits, however large: it must
// still be applied (or dead-lettered), alone.
func (b *budget) take(ctx context.Context, n int64) bool {
	for {
		b.mu.Lock()
		if b.used == 0 || b.used+n <= b.max {
			b.used += n
			b.gauge.Store(b.used)
			b.mu.Unlock()
			return true
		}
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			return false
		case <-b.room:
		}
	}
}

// give returns n bytes taken before.
func (b *budget) give(n int64) {
	b.mu.Lock()
	b.used -= n
	b.gauge.Store(b.used)
	b.mu.Unlock()
	signal(b.room)
}

// recordBytes is what a record holds of its own: key, value and headers
// (kafka-go's structures around them add some 100 bytes and a slice per
// header).
func recordBytes(m kafka.Message) int64 {
	n := len(m.Key) + len(m.Value)
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return int64(n)
}

// messagesBytes is recordBytes summed over ms.
func messagesBytes(ms []kafka.Message) int64 {
	var n int64
	for _, m := range ms {
		n += recordBytes(m)
	}
	return n
}
