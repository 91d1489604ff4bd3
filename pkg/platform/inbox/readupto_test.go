package inbox_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// ReadUpTo: the group has read up to t when every record written before t
// (by timestamp) is committed, and only then; records written after t do
// not count.
func TestReadUpTo(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 3)
	ctx := context.Background()
	now := time.Now()
	var msgs []kafka.Message
	for i := range 6 {
		m := message(t, f.topic, confirmed("order-old-"+string(rune('a'+i))))
		m.Time = now.Add(-10 * time.Minute)
		msgs = append(msgs, m)
	}
	f.produce(msgs...)
	c := f.consumer(recordEffect)
	upTo := func(at time.Time) bool {
		t.Helper()
		ok, err := c.ReadUpTo(ctx, at)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if upTo(now.Add(-5 * time.Minute)) {
		t.Error("nothing consumed yet: read up to 5 minutes ago, want not")
	}
	if !upTo(now.Add(-20 * time.Minute)) {
		t.Error("every record is newer than 20 minutes ago: want read up to then")
	}

	stop := f.run(c)
	f.waitEffects(6)
	stop()
	if !upTo(now) {
		t.Error("all consumed and committed: want read up to now")
	}

	late := message(t, f.topic, confirmed("order-late"))
	late.Time = now.Add(-time.Minute)
	f.produce(late)
	if upTo(now) {
		t.Error("a record of a minute ago is not consumed: want not read up to now")
	}
	if !upTo(now.Add(-5 * time.Minute)) {
		t.Error("the unread record is newer than 5 minutes ago: want read up to then")
	}
}

// An offset commit that fails is retried, though no new record comes to
// cover it: else a quiet partition's lag showed records long applied as
// waiting (and ReadUpTo said they were unread) until a rebalance.
func TestFailedOffsetCommitIsRetried(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	ctx := context.Background()
	f.produce(message(t, f.topic, confirmed("order-1")), message(t, f.topic, confirmed("order-2")))
	c := f.consumer(recordEffect)
	var failing atomic.Bool
	failing.Store(true)
	inbox.FailOffsetCommit(c, failing.Load)
	stop := f.run(c)
	defer stop()
	f.waitEffects(2)
	lag := func() int64 {
		t.Helper()
		l, err := c.Lag(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return l[inbox.TopicPartition{Topic: f.topic, Partition: 0}]
	}
	time.Sleep(200 * time.Millisecond) // a few retries, failing
	if n := lag(); n != 2 {
		t.Fatalf("lag %d while the commits fail, want 2", n)
	}
	failing.Store(false)
	testenv.Eventually(t, 10*time.Second, "the failed commit retried", func() bool { return lag() == 0 })
	if ok, err := c.ReadUpTo(ctx, time.Now()); err != nil || !ok {
		t.Errorf("ReadUpTo now: %v, %v; want read", ok, err)
	}
}

// A committed offset past its partition's end (a topic the broker lost,
// created again, and the group's offset of the old one committed to it)
// makes the reader skip every record below it. Lag said 0 and ReadUpTo
// "read" ("Lag map[...:0], ReadUpTo true"), so neither the lag metric nor
// the order service's expiry could tell; both now fail naming the
// partition, and the metric is left out (ShopConsumerLagUnreadable).
func TestLagAndReadUpToReportAnOffsetPastTheEnd(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f.produce(message(t, f.topic, confirmed("o1")), message(t, f.topic, confirmed("o2")))
	client := &kafka.Client{Addr: kafka.TCP(f.brokers...), Transport: &kafka.Transport{}}
	res, err := client.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: f.group, GenerationID: -1,
		Topics: map[string][]kafka.OffsetCommit{f.topic: {{Partition: 0, Offset: 50}}}})
	if err != nil || res.Topics[f.topic][0].Error != nil {
		t.Fatalf("commit a stale offset: %v %+v", err, res)
	}
	logs := &testenv.SyncBuffer{}
	c := f.consumer(recordEffect, func(cfg *inbox.Config) { cfg.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
	where := fmt.Sprintf("%s/0", f.topic)
	lag, err := c.Lag(ctx)
	if err == nil || !strings.Contains(err.Error(), where) {
		t.Errorf("Lag: %v, %v; want an error naming %s", lag, err, where)
	}
	read, err := c.ReadUpTo(ctx, time.Now())
	if err == nil || !strings.Contains(err.Error(), where) {
		t.Errorf("ReadUpTo: %v, %v; want an error naming %s", read, err, where)
	}
	if lag, ok := scrape(t, c)["shop_consumer_lag"]; ok {
		t.Errorf("shop_consumer_lag exported: %v", lag)
	}
	if !strings.Contains(logs.String(), "past") || !strings.Contains(logs.String(), where) {
		t.Errorf("the scrape logged:\n%s\nwant the partition past its end", logs)
	}
}
