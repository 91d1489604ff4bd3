package broker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/platform/broker"
	"github.com/shopflow/shopflow/pkg/platform/kafkatopics"
)

// TestRestartKeepsTopicsRecordsAndOffsets is the promise `shop broker
// --data-dir` makes: stop it, start it on the same directory, and topics,
// records and committed group offsets are all still there.
func TestRestartKeepsTopicsRecordsAndOffsets(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	addr := b.Addr()
	if err := kafkatopics.Ensure(ctx, []string{addr}, kafkatopics.Spec{Name: "persist", Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: "persist", RequiredAcks: kafka.RequireAll,
		Balancer: &kafka.Murmur2Balancer{}, BatchTimeout: 5 * time.Millisecond}
	var msgs []kafka.Message
	for i := range 10 {
		msgs = append(msgs, kafka.Message{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i)})
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()

	// Consume and commit 4 records as group g.
	seen := readGroup(ctx, t, addr, 4)
	b.Close()

	b2, err := broker.Start(broker.Config{Addr: addr, DataDir: dir})
	if err != nil {
		t.Fatalf("restart on %s: %v", addr, err)
	}
	defer b2.Close()
	// The group resumes after the committed offsets: it sees exactly the 6
	// records it had not committed, none of the 4 it had.
	rest := readGroup(ctx, t, addr, 6)
	for k := range rest {
		if seen[k] {
			t.Errorf("record %s delivered again after restart: committed offset lost", k)
		}
	}
	if len(seen)+len(rest) != 10 {
		t.Errorf("saw %d + %d records, want 10", len(seen), len(rest))
	}
}

func readGroup(ctx context.Context, t *testing.T, addr string, n int) map[string]bool {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, GroupID: "g", Topic: "persist",
		StartOffset: kafka.FirstOffset, MaxWait: 250 * time.Millisecond, SessionTimeout: 6 * time.Second,
		HeartbeatInterval: time.Second, JoinGroupBackoff: 200 * time.Millisecond, RebalanceTimeout: 5 * time.Second})
	defer r.Close()
	seen := map[string]bool{}
	for len(seen) < n {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("fetch after %d records: %v", len(seen), err)
		}
		seen[string(m.Key)] = true
		if err := r.CommitMessages(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	return seen
}
