package inbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/kafkatopics"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// TestDLQTopicKeepsDeadLetters: a dead-letter topic the consumer creates
// keeps its records until someone replays or purges them (retention.ms
// -1), rather than the broker's default (7 days on Apache Kafka), after
// which `shop dlq` would no longer see them.
func TestDLQTopicKeepsDeadLetters(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	f.dlq = testenv.Name(t, "dlq-created") // not created by the fixture
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = kafkatopics.Delete(ctx, f.brokers, f.dlq)
	})
	f.run(f.consumer(recordEffect))

	client := &kafka.Client{Addr: kafka.TCP(f.brokers...)}
	var retention string
	testenv.Eventually(t, 30*time.Second, "the consumer did not create "+f.dlq, func() bool {
		res, err := client.DescribeConfigs(context.Background(), &kafka.DescribeConfigsRequest{
			Resources: []kafka.DescribeConfigRequestResource{{ResourceType: kafka.ResourceTypeTopic, ResourceName: f.dlq,
				ConfigNames: []string{"retention.ms"}}}})
		if err != nil || len(res.Resources) != 1 || res.Resources[0].Error != nil {
			return false
		}
		for _, e := range res.Resources[0].ConfigEntries {
			if e.ConfigName == "retention.ms" {
				retention = e.ConfigValue
			}
		}
		return true
	})
	if want := inbox.DLQTopicConfigs["retention.ms"]; retention != want || want != "-1" {
		t.Errorf("%s retention.ms = %q, want -1 (keep until replayed)", f.dlq, retention)
	}
}
