package kafkatopics_test

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/shopflow/shopflow/pkg/platform/kafkatopics"
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
