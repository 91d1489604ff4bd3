package inbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// poolVia returns a pool on f's database whose connections go through a
// proxy, and the proxy.
func (f *fixture) poolVia() (*pgxpool.Pool, *testenv.Proxy) {
	f.t.Helper()
	cfg := f.pool.Config()
	p := testenv.StartProxy(f.t, net.JoinHostPort(cfg.ConnConfig.Host, fmt.Sprint(cfg.ConnConfig.Port)))
	cfg.ConnConfig.Host, cfg.ConnConfig.Port = "127.0.0.1", uint16(p.Addr().Port)
	cfg.ConnConfig.Fallbacks = nil // they name the server itself
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(pool.Close)
	return pool, p
}

// logLines returns the messages logged as JSON in logs whose text
// contains msg, each as its fields.
func logLines(t *testing.T, logs *testenv.SyncBuffer, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(logs.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m, _ := rec["msg"].(string); strings.Contains(m, msg) {
			out = append(out, rec)
		}
	}
	return out
}

// produceUntil produces batches of 20 records named prefix-N until cond
// holds or d passes (then the test fails with what); it returns how many
// it produced.
func (f *fixture) produceUntil(prefix string, d time.Duration, what string, cond func() bool) int {
	f.t.Helper()
	sent := 0
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("after %d records: %s", sent, what)
		}
		var msgs []kafka.Message
		for range 20 {
			msgs = append(msgs, message(f.t, f.topic, confirmed(fmt.Sprintf("%s-%d", prefix, sent))))
			sent++
		}
		f.produce(msgs...)
		time.Sleep(100 * time.Millisecond) // pacing the producer, not waiting for a result
	}
	return sent
}

// A member whose database is gone (its connections cut, every attempt
// failing as unavailable) leaves the group once that has lasted
// LeaveAfter, so the other member applies the records of every
// partition, and joins again once its database answers. It used to keep
// its partitions and retry the record in hand for as long as the outage
// lasted, the records behind it waiting: a trial's payment replica held
// 163 orders for minutes while two healthy replicas sat idle.
func TestAMemberWhoseDatabaseIsGoneLeavesItsGroup(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 4)
	sickPool, path := f.poolVia()
	logs := &testenv.SyncBuffer{}
	const leaveAfter = 3 * time.Second
	quick := func(cfg *inbox.Config) { cfg.MaxWait = 100 * time.Millisecond }
	healthy := f.consumer(recordEffect, quick)
	sick := f.consumerOn(sickPool, recordEffect, quick, func(cfg *inbox.Config) {
		cfg.LeaveAfter = leaveAfter
		cfg.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	})
	f.run(healthy)
	f.run(sick)
	sent := f.produceUntil("before", 45*time.Second, "one member still has no partition", func() bool {
		return healthy.Stats().Processed > 0 && sick.Stats().Processed > 0
	})
	f.waitEffects(sent)

	path.Refuse()
	cut := time.Now()
	during := 40 // on every partition
	var msgs []kafka.Message
	for i := range during {
		msgs = append(msgs, message(t, f.topic, confirmed(fmt.Sprintf("during-%d", i))))
	}
	f.produce(msgs...)
	sent += during
	if n := f.effectsAfter(sent, 30*time.Second); n != sent {
		t.Fatalf("%d of %d records applied %s after the cut: the member whose database is gone kept its partitions (its stats %+v)",
			n, sent, time.Since(cut).Round(time.Second), sick.Stats())
	}
	t.Logf("every record applied %s after the cut (LeaveAfter %s)", time.Since(cut).Round(100*time.Millisecond), leaveAfter)
	if sick.Stats().Retries == 0 {
		t.Error("the cut member never retried a record: it had no partition when its database went")
	}
	left := logLines(t, logs, "leaving the group")
	if len(left) != 1 || left[0]["level"] != "WARN" || left[0]["unavailable_for"] == nil {
		t.Errorf("logged %v, want one WARN saying how long the database was unavailable", left)
	}
	// Out of the group shows in the metrics, not only in the log (the
	// member may still be handing its partitions back).
	testenv.Eventually(t, 30*time.Second, "shop_consumer_out_of_group = 1 while out of the group for its database", func() bool {
		return scrape(t, sick)["shop_consumer_out_of_group"] == 1
	})

	path.Restore()
	before := sick.Stats().Processed
	sent += f.produceUntil("after", 60*time.Second, "the member whose database is back applies nothing", func() bool {
		return sick.Stats().Processed > before
	})
	f.waitEffects(sent)
	back := logLines(t, logs, "the database answers again")
	if len(back) != 1 || back[0]["level"] != "INFO" {
		t.Errorf("logged %v, want one INFO that the database is back", back)
	}
	if got := scrape(t, sick)["shop_consumer_out_of_group"]; got != 0 {
		t.Errorf("shop_consumer_out_of_group = %v after joining again, want 0", got)
	}
	if n := f.count(`SELECT count(DISTINCT event_id) FROM effects`); n != sent || f.effects() != sent {
		t.Errorf("%d distinct effects of %d rows, want %d each", n, f.effects(), sent)
	}
}

// A database outage shorter than LeaveAfter (a PostgreSQL restart) does
// not make the consumer leave: the record it was retrying is applied as
// soon as the database is back, and the group is not rebalanced twice
// for a blip.
func TestAShortDatabaseOutageKeepsTheMember(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 1)
	pool, path := f.poolVia()
	logs := &testenv.SyncBuffer{}
	const leaveAfter = 6 * time.Second
	c := f.consumerOn(pool, recordEffect, func(cfg *inbox.Config) {
		cfg.LeaveAfter = leaveAfter
		cfg.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	})
	inbox.BetweenMembers(c, func() { t.Error("the member ended: the consumer left its group") })
	f.run(c)
	f.produce(message(t, f.topic, confirmed("o1")))
	f.waitEffects(1)

	path.Refuse()
	cut := time.Now()
	f.produce(message(t, f.topic, confirmed("o2")))
	testenv.Eventually(t, 30*time.Second, "a failed attempt at o2", func() bool { return c.Stats().Retries > 0 })
	time.Sleep(time.Second) // an outage of a second or so, retried meanwhile
	path.Restore()
	f.waitEffects(2)
	if d := time.Since(cut); d >= leaveAfter {
		t.Fatalf("the outage lasted %s, not less than LeaveAfter %s: the machine is too slow for this test", d.Round(time.Millisecond), leaveAfter)
	}
	// Past the bound since the outage began: nothing may be pending that
	// would still make it leave.
	time.Sleep(leaveAfter + time.Second - time.Since(cut))
	f.produce(message(t, f.topic, confirmed("o3")))
	f.waitEffects(3)
	if left := logLines(t, logs, "leaving the group"); len(left) != 0 {
		t.Errorf("the consumer left its group after an outage shorter than LeaveAfter: %v", left)
	}
}
