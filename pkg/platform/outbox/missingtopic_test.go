package outbox_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopflow/shopflow/pkg/platform/kafkatopics"
	"github.com/shopflow/shopflow/pkg/platform/outbox"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// TestAPublishToAMissingTopicAsksForIt: when the broker does not know a
// row's topic (it lost its data), the relay calls TopicMissing, which
// service.Run wires to the topic watch; once the topic is there the
// retried round publishes the row.
func TestAPublishToAMissingTopicAsksForIt(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	brokers := testenv.Kafka(t)
	topic := testenv.Name(t, "lost")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = kafkatopics.Delete(ctx, brokers, topic)
	})
	var asked atomic.Int32
	r := outbox.NewRelay(pool, outbox.RelayConfig{Brokers: brokers, LockRetry: 100 * time.Millisecond,
		PollInterval: 200 * time.Millisecond,
		TopicMissing: func() {
			if asked.Add(1) == 1 {
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					if err := kafkatopics.Ensure(ctx, brokers, kafkatopics.Spec{Name: topic, Partitions: 1}); err != nil {
						t.Errorf("create %s: %v", topic, err)
					}
				}()
			}
		}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	writeTx(t, pool, topic, event("order-1", 0))
	r.Wake()
	testenv.Eventually(t, 30*time.Second, "the relay never said the topic was missing", func() bool { return asked.Load() > 0 })
	testenv.Consume(t, topic, 30*time.Second, testenv.Count(1))
	testenv.Eventually(t, 10*time.Second, "the row was not deleted once published", func() bool { return backlog(t, pool) == 0 })
}
