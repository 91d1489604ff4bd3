package inbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
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
