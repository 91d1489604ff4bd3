package inbox

import (
	"log/slog"
	"slices"
	"testing"
	"time"
)

// Only reports of a connection failing or a topic missing are held back
// (the counting itself is quiet.Limiter's, tested there); other reports
// are news each time.
func TestQuiet(t *testing.T) {
	t.Parallel()
	q := newQuiet(30 * time.Second)
	const refused = "error reading partition 3 at offset 17: dial tcp 127.0.0.1:9092: connect: connection refused"
	if ok, _, _ := q.pass(refused); !ok {
		t.Errorf("first %q held back", refused)
	}
	if ok, _, _ := q.pass(refused); ok {
		t.Errorf("second %q passed", refused)
	}
	// kafka-go's group member, every time it rejoins while the broker
	// lacks a topic (a broker that lost its data).
	const missing = "Problem getting partitions during startup, [3] Unknown Topic Or Partition: the request is for a topic or partition that does not exist on this broker\n, Returning and setting up nextGeneration"
	for i := range 3 {
		if ok, _, _ := q.pass(missing); ok != (i == 0) {
			t.Errorf("%q number %d passed = %v, want only the first", missing, i+1, ok)
		}
	}
	// A committed offset past the end of a topic created again.
	const outOfRange = "error initializing the kafka reader for partition 0 of shop.orders: [1] Offset Out Of Range: the requested offset is outside the range of offsets maintained by the server for the given topic/partition"
	for i := range 3 {
		if ok, _, _ := q.pass(outOfRange); ok != (i == 0) {
			t.Errorf("%q number %d passed = %v, want only the first", outOfRange, i+1, ok)
		}
	}
	for range 2 {
		const skip = "reading before the first offset for partition 2 of t: skipping from offset 5 to 9 (4 messages)"
		if ok, _, _ := q.pass(skip); !ok {
			t.Errorf("%q held back", skip)
		}
	}
	if n := q.drain(); n != 5 {
		t.Errorf("drain = %d, want 5", n)
	}
}

// A fetch that timed out under load is information, not a warning (shop
// dev's terminal showed it a dozen times in 25 minutes of loads); what
// says a broker is away stays a warning.
func TestKafkaLevel(t *testing.T) {
	for msg, want := range map[string]slog.Level{
		"the kafka reader got an unknown error reading partition 10 of shop.inventory at offset 1219: read tcp 127.0.0.1:48360->127.0.0.1:19192: i/o timeout":                            slog.LevelInfo,
		"failed to dial: failed to open connection to 127.0.0.1:9092: dial tcp 127.0.0.1:9092: connect: connection refused":                                                              slog.LevelWarn,
		"the kafka reader got an unknown error reading partition 3 of shop.orders at offset 7: EOF":                                                                                      slog.LevelWarn,
		"Failed to join group shop.payment: i/o timeout":                                                                                                                                 slog.LevelWarn,
		"Failed to sync group order: [27] Rebalance In Progress: the coordinator has begun rebalancing the group, the client should rejoin the group":                                    slog.LevelInfo,
		"error initializing the kafka reader for partition 4 of shop.orders: context canceled":                                                                                           slog.LevelInfo,
		"error initializing the kafka reader for partition 4 of shop.orders: [3] Unknown Topic Or Partition: the request is for a topic or partition that does not exist on this broker": slog.LevelWarn,
	} {
		if got := kafkaLevel(msg); got != want {
			t.Errorf("%q: %s, want %s", msg, got, want)
		}
	}
}

// The topics a kafka-go report says are unknown: those its partition
// readers name, not one whose name another's only starts with, nor any
// when the report names none (the group member's, at its start).
func TestReportedTopics(t *testing.T) {
	topics := []string{"shop.orders", "shop.orders.v2", "shop.payments"}
	for msg, want := range map[string][]string{
		"failed to read from current broker [127.0.0.1:9092] for partition 0 of shop.orders.v2 at offset 1: [3] Unknown Topic Or Partition: ...": {"shop.orders.v2"},
		"error initializing the kafka reader for partition 3 of shop.orders: [3] Unknown Topic Or Partition: ...":                                {"shop.orders"},
		"Problem getting partitions during startup, [3] Unknown Topic Or Partition: ...\n, Returning and setting up nextGeneration":              nil,
	} {
		if got := reportedTopics(msg, topics); !slices.Equal(got, want) {
			t.Errorf("%q: %v, want %v", msg, got, want)
		}
	}
}
