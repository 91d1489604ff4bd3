package kafkatopics_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/shopflow/shopflow/pkg/platform/kafkatopics"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// partitionCounts returns each topic's partition count, 0 for one the
// broker does not know, asked of the broker itself (no cache).
func partitionCounts(t *testing.T, addr string, names ...string) map[string]int {
	t.Helper()
	conn, err := kafka.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	got := map[string]int{}
	for _, n := range names {
		ps, err := conn.ReadPartitions(n)
		switch {
		case errors.Is(err, kafka.UnknownTopicOrPartition):
			got[n] = 0
		case err != nil:
			t.Fatalf("partitions of %s: %v", n, err)
		default:
			got[n] = len(ps)
		}
	}
	return got
}

// cluster starts a one-broker kfake cluster for the test and returns its
// address and a context bounded to a minute.
func cluster(t *testing.T) (string, context.Context) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c.ListenAddrs()[0], ctx
}

// TestWatchCreatesLostTopicsAgain: topics deleted on the broker under a
// running Watch are reported missing, then created again with their
// spec, each with one warning naming it, on the periodic look alone; a
// topic that exists with another partition count is left as it is.
func TestWatchCreatesLostTopicsAgain(t *testing.T) {
	t.Parallel()
	addr, ctx := cluster(t)

	specs := []kafkatopics.Spec{
		{Name: "orders", Partitions: 3},
		{Name: "dlq", Partitions: 1, Configs: map[string]string{"retention.ms": "-1"}},
		{Name: "wider", Partitions: 2},
	}
	if err := kafkatopics.Ensure(ctx, []string{addr}, specs[:2]...); err != nil {
		t.Fatal(err)
	}
	// "wider" exists already, with more partitions than its spec says.
	if err := kafkatopics.Ensure(ctx, []string{addr}, kafkatopics.Spec{Name: "wider", Partitions: 5}); err != nil {
		t.Fatal(err)
	}

	var logs testenv.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	client := &kafka.Client{Addr: kafka.TCP(addr), Transport: &kafka.Transport{MetadataTTL: 100 * time.Millisecond}}
	w := kafkatopics.NewWatch(client, log, 200*time.Millisecond, specs...)
	var mu sync.Mutex
	var restored [][]string
	w.OnRestored(func(topics []string) {
		mu.Lock()
		defer mu.Unlock()
		restored = append(restored, topics)
	})
	if err := w.Missing(ctx); err != nil {
		t.Fatalf("Missing with every topic there = %v", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()

	if err := kafkatopics.Delete(ctx, []string{addr}, "orders", "dlq"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the deleted topics never came back", func() bool {
		got := partitionCounts(t, addr, "orders", "dlq")
		return got["orders"] > 0 && got["dlq"] > 0
	})
	if got, want := partitionCounts(t, addr, "orders", "dlq", "wider"), map[string]int{"orders": 3, "dlq": 1, "wider": 5}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("partitions = %v, want %v", got, want)
	}
	testenv.Eventually(t, 10*time.Second, "Missing still reports topics once they are back", func() bool {
		return w.Missing(ctx) == nil
	})
	// The topics show before the watch has seen them ready and called
	// OnRestored: stopping it then cut that short (a CI run saw
	// "OnRestored called with []").
	testenv.Eventually(t, 10*time.Second, "OnRestored not called", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(restored) > 0
	})

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(time.Second):
		t.Error("Run did not return within a second of its context ending")
	}
	for _, name := range []string{"orders", "dlq"} {
		want := fmt.Sprintf("topic %s was missing on the broker (its data lost?); created it again with", name)
		if n := strings.Count(logs.String(), want); n != 1 {
			t.Errorf("%d warnings %q, want 1; log:\n%s", n, want, logs.String())
		}
	}
	mu.Lock()
	if fmt.Sprint(restored) != "[[dlq orders]]" {
		t.Errorf("OnRestored called with %v, want once with [dlq orders]", restored)
	}
	mu.Unlock()
	if strings.Contains(logs.String(), "topic wider") {
		t.Errorf("a topic that was there is reported created:\n%s", logs.String())
	}
}

// TestWatchMissingNamesTheTopics: a topic the broker does not know makes
// Missing fail with its name, and Check makes Run create it at once,
// long before the periodic look.
func TestWatchMissingNamesTheTopics(t *testing.T) {
	t.Parallel()
	addr, ctx := cluster(t)
	client := &kafka.Client{Addr: kafka.TCP(addr), Transport: &kafka.Transport{}}
	w := kafkatopics.NewWatch(client, nil, time.Hour, kafkatopics.Spec{Name: "never-made", Partitions: 2})
	err := w.Missing(ctx)
	var me *kafkatopics.MissingError
	if !errors.As(err, &me) || fmt.Sprint(me.Topics) != "[never-made]" || !strings.Contains(err.Error(), "never-made") {
		t.Fatalf("Missing = %v, want a MissingError naming never-made", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go w.Run(runCtx) //nolint:errcheck // always nil
	w.Check()
	testenv.Eventually(t, 10*time.Second, "Check did not create the topic", func() bool {
		return partitionCounts(t, addr, "never-made")["never-made"] == 2
	})
}

// TestIsMissing: both ways kafka-go's Writer says a topic is unknown.
func TestIsMissing(t *testing.T) {
	t.Parallel()
	addr, ctx := cluster(t)
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: "nowhere", Transport: &kafka.Transport{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, MaxAttempts: 1}
	defer w.Close()
	werr := w.WriteMessages(ctx, kafka.Message{Value: []byte("x")})
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"a write to a topic the broker lacks", werr, true},
		{"WriteErrors", fmt.Errorf("publish: %w", kafka.WriteErrors{nil, kafka.UnknownTopicOrPartition}), true},
		{"another kafka error", kafka.WriteErrors{kafka.NotEnoughReplicas}, false},
		{"nil", nil, false},
	} {
		if got := kafkatopics.IsMissing(tt.err); got != tt.want {
			t.Errorf("%s: IsMissing(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}
