package kafkatopics_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/shopflow/shopflow/pkg/platform/kafkatopics"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// TestEnsureLeavesReplicationToTheBroker: on a three-broker cluster a
// topic created without a replication factor gets the broker's default
// (kfake's is three here), not one copy; an explicit factor is kept.
func TestEnsureLeavesReplicationToTheBroker(t *testing.T) {
	t.Parallel()
	c, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = kafkatopics.Ensure(ctx, c.ListenAddrs(),
		kafkatopics.Spec{Name: "by-broker", Partitions: 2},
		kafkatopics.Spec{Name: "one-copy", Partitions: 1, ReplicationFactor: 1})
	if err != nil {
		t.Fatal(err)
	}
	client := &kafka.Client{Addr: kafka.TCP(c.ListenAddrs()...)}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{"by-broker", "one-copy"}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"by-broker": 3, "one-copy": 1}
	for _, tp := range md.Topics {
		if tp.Error != nil {
			t.Fatalf("%s: %v", tp.Name, tp.Error)
		}
		for _, p := range tp.Partitions {
			if len(p.Replicas) != want[tp.Name] {
				t.Errorf("%s/%d: %d replicas, want %d", tp.Name, p.ID, len(p.Replicas), want[tp.Name])
			}
		}
	}
}

// TestEnsureUnreachableSaysWhy: while no broker answers, every retry is
// logged with the real cause (not kafka-go's "Broker Not Available"), and
// the error once ctx ends names it too.
func TestEnsureUnreachableSaysWhy(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused

	var logs testenv.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	err = kafkatopics.EnsureWith(ctx, &kafka.Client{Addr: kafka.TCP(addr)}, log, kafkatopics.Spec{Name: "t"})
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("err = %v, want the deadline and the cause, connection refused", err)
	}
	var warnings int
	for line := range strings.SplitSeq(logs.String(), "\n") {
		if !strings.Contains(line, "kafka not ready, retrying") {
			continue
		}
		warnings++
		if !strings.Contains(line, "connection refused") || !strings.Contains(line, addr) {
			t.Errorf("warning without the cause or the broker: %s", line)
		}
	}
	if warnings < 2 {
		t.Errorf("%d retry warnings, want one per retry; log:\n%s", warnings, logs.String())
	}
}
