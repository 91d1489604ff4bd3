package inbox

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// takeAsync runs q.take in a goroutine and returns its result channel.
func takeAsync(q *queue, n int, linger time.Duration) <-chan []kafka.Message {
	out := make(chan []kafka.Message, 1)
	go func() { out <- q.take(context.Background(), n, linger) }()
	return out
}

// await returns what a takeAsync channel delivers, failing the test with
// stuck if it delivers nothing within 10 s, or a batch of other than want
// records.
func await(t *testing.T, got <-chan []kafka.Message, want int, stuck string) []kafka.Message {
	t.Helper()
	select {
	case ms := <-got:
		if len(ms) != want {
			t.Fatalf("took %v, want %d records", offsets(ms), want)
		}
		return ms
	case <-time.After(10 * time.Second):
		t.Fatal(stuck)
		return nil
	}
}

func offsets(ms []kafka.Message) []int64 {
	var out []int64
	for _, m := range ms {
		out = append(out, m.Offset)
	}
	return out
}

// TestTakeLingersForAFullerBatch: with fewer than n records waiting, take
// waits for more, and returns as soon as the batch is full (a linger of
// an hour would fail the test if it waited it out).
func TestTakeLingersForAFullerBatch(t *testing.T) {
	q := newQueue(10)
	ctx := context.Background()
	q.push(ctx, kafka.Message{Offset: 1})
	got := takeAsync(q, 3, time.Hour)
	select {
	case ms := <-got:
		t.Fatalf("took %v with one record of three and an hour to linger", offsets(ms))
	case <-time.After(50 * time.Millisecond):
	}
	q.push(ctx, kafka.Message{Offset: 2})
	q.push(ctx, kafka.Message{Offset: 3})
	q.push(ctx, kafka.Message{Offset: 4})
	if ms := await(t, got, 3, "take still lingering with a full batch waiting"); ms[0].Offset != 1 || ms[2].Offset != 3 {
		t.Fatalf("took %v, want [1 2 3]", offsets(ms))
	}
	// The record left over comes with the next take once the queue
	// closes (closing ends a linger; see TestTakeLingerEndsWithTheQueue).
	q.close()
	if ms := q.take(ctx, 3, time.Hour); len(ms) != 1 || ms[0].Offset != 4 {
		t.Fatalf("took %v, want [4]", offsets(ms))
	}
}

// TestTakeFullBatchAtOnce: a full batch waiting is taken without lingering.
func TestTakeFullBatchAtOnce(t *testing.T) {
	q := newQueue(10)
	for i := range 5 {
		q.push(context.Background(), kafka.Message{Offset: int64(i)})
	}
	await(t, takeAsync(q, 4, time.Hour), 4, "take lingered with a full batch waiting")
}

// TestTakeAfterLinger: when nothing more comes, take returns what there is
// once the linger is over (not before), and at once without a linger.
func TestTakeAfterLinger(t *testing.T) {
	q := newQueue(10)
	q.push(context.Background(), kafka.Message{Offset: 7})
	const linger = 30 * time.Millisecond
	start := time.Now()
	ms := q.take(context.Background(), 3, linger)
	if waited := time.Since(start); waited < linger {
		t.Errorf("returned after %v, before the %v linger", waited, linger)
	}
	if len(ms) != 1 || ms[0].Offset != 7 {
		t.Fatalf("took %v, want [7]", offsets(ms))
	}
	q.push(context.Background(), kafka.Message{Offset: 8})
	await(t, takeAsync(q, 3, 0), 1, "take without a linger waited")
}

// TestTakeLingerEndsWithTheQueue: closing the queue ends a linger; the
// records in hand are returned.
func TestTakeLingerEndsWithTheQueue(t *testing.T) {
	q := newQueue(10)
	q.push(context.Background(), kafka.Message{Offset: 1})
	got := takeAsync(q, 3, time.Hour)
	time.Sleep(20 * time.Millisecond)
	q.close()
	await(t, got, 1, "take still lingering on a closed queue")
}

// TestTakeLingerFullAtCapacity: a queue that holds fewer records than a
// batch is full at its capacity, so take does not linger then.
func TestTakeLingerFullAtCapacity(t *testing.T) {
	q := newQueue(2)
	q.push(context.Background(), kafka.Message{Offset: 1})
	q.push(context.Background(), kafka.Message{Offset: 2})
	await(t, takeAsync(q, 100, time.Hour), 2, "take lingered on a full queue")
}

// TestTakeLingerEndsWithTheContext: stopping ends a linger; nothing is
// returned (the records are delivered again after a restart).
func TestTakeLingerEndsWithTheContext(t *testing.T) {
	q := newQueue(10)
	q.push(context.Background(), kafka.Message{Offset: 1})
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan []kafka.Message, 1)
	go func() { got <- q.take(ctx, 3, time.Hour) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case ms := <-got:
		if ms != nil {
			t.Fatalf("took %v after stopping, want nothing", offsets(ms))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("take still lingering after its context ended")
	}
}
