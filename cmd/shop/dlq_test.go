package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/cmd/shop/dlq"
	"github.com/shopflow/shopflow/cmd/shop/suite"
	"github.com/shopflow/shopflow/cmd/shop/suite/suitetest"
	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/kafkatopics"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// TestDLQCommand lists and replays a dead letter written as the inbox
// writes them (dlq package tests cover replays a live service applies).
func TestDLQCommand(t *testing.T) {
	ctx := context.Background()
	brokers := testenv.Kafka(t)
	prefix := testenv.Prefix(t)
	dlqTopic, source := prefix+"shop.dlq.payment", prefix+events.TopicOrders
	if err := kafkatopics.Ensure(ctx, brokers, kafkatopics.Spec{Name: dlqTopic, Partitions: 1},
		kafkatopics.Spec{Name: source, Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	orderID := uuid.Must(uuid.NewV7()).String()
	ev := events.New("/shopflow/test", events.OrderConfirmed{OrderID: orderID, ConfirmedAt: time.Now().UTC()})
	m, err := events.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	hs := make([]kafka.Header, 0, len(m.Headers)+7)
	for _, h := range m.Headers {
		hs = append(hs, kafka.Header(h))
	}
	hs = append(hs,
		kafka.Header{Key: events.HeaderDLQError, Value: []byte("capture order " + orderID + ": gateway rejected\nsecond line")},
		kafka.Header{Key: events.HeaderDLQSourceTopic, Value: []byte(source)},
		kafka.Header{Key: events.HeaderDLQSourcePartition, Value: []byte("2")},
		kafka.Header{Key: events.HeaderDLQSourceOffset, Value: []byte("41")},
		kafka.Header{Key: events.HeaderDLQGroup, Value: []byte("payment")},
		kafka.Header{Key: events.HeaderDLQAttempts, Value: []byte("5")},
		kafka.Header{Key: events.HeaderDLQFailedAt, Value: []byte("2026-03-04T05:06:07.5Z")},
	)
	w := &kafka.Writer{Transport: &kafka.Transport{}, Addr: kafka.TCP(brokers...), Topic: dlqTopic, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	if err := w.WriteMessages(ctx, kafka.Message{Key: m.Key, Value: m.Value, Headers: hs}); err != nil {
		t.Fatal(err)
	}
	w.Close()

	shop := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		args = append(args, "--brokers", strings.Join(brokers, ","), "--prefix", prefix)
		err := run(ctx, args, &out, &errOut)
		return out.String() + errOut.String(), err
	}
	out, err := shop("dlq", "list")
	if err != nil {
		t.Fatalf("list: %v\n%s", err, out)
	}
	for _, want := range []string{"GROUP", "payment", "2026-03-04T05:06:07Z", source + "/2/41", string(events.TypeOrderConfirmed),
		orderID, "gateway rejected second line", "\n1 dead letter\n"} {
		if !strings.Contains(out, want) {
			t.Fatalf("list output lacks %q:\n%s", want, out)
		}
	}
	out, err = shop("dlq", "list", "--group", "order")
	if err != nil || !strings.Contains(out, "no dead letters") {
		t.Fatalf("list --group order: %v\n%s", err, out)
	}
	out, err = shop("dlq", "list", "--json", "--group", "payment")
	var ls []dlq.Letter
	if err != nil || json.Unmarshal([]byte(out), &ls) != nil || len(ls) != 1 || ls[0].Attempts != 5 || ls[0].ID != ev.ID ||
		ls[0].SourceOffset != 41 || ls[0].Key != orderID {
		t.Fatalf("list --json: %v %+v\n%s", err, ls, out)
	}

	// The metrics' group label, which the alerts put in the shop dlq
	// command they suggest, has the prefix before the group: with --prefix
	// and without one, it names the group. It was "unknown group", exit 2.
	out, err = shop("dlq", "list", "--json", "--group", prefix+"payment")
	if err != nil || json.Unmarshal([]byte(out), &ls) != nil || len(ls) != 1 || ls[0].ID != ev.ID {
		t.Fatalf("list --group %spayment --prefix %s: %v\n%s", prefix, prefix, err, out)
	}
	t.Setenv("KAFKA_TOPIC_PREFIX", "")
	var stdout, stderr bytes.Buffer
	err = run(ctx, []string{"dlq", "list", "--json", "--group", prefix + "payment", "--brokers", strings.Join(brokers, ",")}, &stdout, &stderr)
	if err != nil || json.Unmarshal(stdout.Bytes(), &ls) != nil || len(ls) != 1 || ls[0].ID != ev.ID {
		t.Fatalf("list --group %spayment without --prefix: %v\n%s%s", prefix, err, stdout.String(), stderr.String())
	}

	out, err = shop("dlq", "replay", "--group", "payment", "--offset", "0")
	if err != nil || !strings.Contains(out, "replayed "+dlqTopic+"/0") || !strings.Contains(out, "\n1 record replayed from") {
		t.Fatalf("replay --offset 0: %v\n%s", err, out)
	}
	for i, want := range []string{"\n1 record replayed from", "0 records replayed from"} {
		out, err = shop("dlq", "replay", "--group", "payment", "--all")
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("replay --all, run %d: %v\n%s\nwant %q", i+1, err, out, want)
		}
	}
	got := testenv.Consume(t, source, 30*time.Second, testenv.Count(2))
	for _, r := range got {
		if string(r.Key) != orderID || string(r.Value) != string(m.Value) {
			t.Fatalf("replayed record %s %s", r.Key, r.Value)
		}
		for _, h := range r.Headers {
			if strings.HasPrefix(h.Key, "dlq_") && h.Key != dlq.HeaderReplayedFrom {
				t.Fatalf("replayed record keeps %s", h.Key)
			}
		}
	}
	// No record was read, so nothing may have been committed by list: a
	// reader group on the DLQ topic would show up here.
	res, err := (&kafka.Client{Addr: kafka.TCP(brokers...), Transport: &kafka.Transport{}}).ListGroups(ctx, &kafka.ListGroupsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range res.Groups {
		if strings.HasPrefix(g.GroupID, prefix) && g.GroupID != prefix+"shop.dlq-replay.payment" {
			t.Fatalf("unexpected group %s", g.GroupID)
		}
	}
}

// dlqEnv is a payment dead-letter topic and its source topic (one
// partition each) under a prefix of their own, on the test broker.
type dlqEnv struct {
	brokers                  []string
	prefix, dlqTopic, source string
}

func newDLQEnv(t *testing.T) dlqEnv {
	t.Helper()
	prefix := testenv.Prefix(t)
	e := dlqEnv{brokers: testenv.Kafka(t), prefix: prefix, dlqTopic: prefix + "shop.dlq.payment", source: prefix + events.TopicOrders}
	if err := kafkatopics.Ensure(context.Background(), e.brokers, kafkatopics.Spec{Name: e.dlqTopic, Partitions: 1},
		kafkatopics.Spec{Name: e.source, Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	return e
}

// write adds ms to the dead-letter topic.
func (e dlqEnv) write(t *testing.T, ms ...kafka.Message) {
	t.Helper()
	w := &kafka.Writer{Transport: &kafka.Transport{}, Addr: kafka.TCP(e.brokers...), Topic: e.dlqTopic, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	if err := w.WriteMessages(context.Background(), ms...); err != nil {
		t.Fatal(err)
	}
}

// shop runs shop with args against the environment's broker and prefix,
// returning its stdout and stderr together.
func (e dlqEnv) shop(args ...string) (string, error) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), append(args, "--brokers", strings.Join(e.brokers, ","), "--prefix", e.prefix), &out, &errOut)
	return out.String() + errOut.String(), err
}

// TestDLQReplaySkipsLettersWithoutASource: replay --all passes over a
// dead letter without a dlq_source_topic header, with a warning naming
// it, replays the letters after it and counts it skipped; the next --all
// does not meet it again. It stopped every --all there for good ("has no
// dlq_source_topic header: cannot tell where to replay it", exit 2), the
// letters after it never replayed. --offset still refuses it. Neither
// letter has a type, which list and replay say ("no type").
func TestDLQReplaySkipsLettersWithoutASource(t *testing.T) {
	t.Parallel()
	e := newDLQEnv(t)
	dlqTopic, source := e.dlqTopic, e.source
	header := func(k, v string) kafka.Header { return kafka.Header{Key: k, Value: []byte(v)} }
	failed := []kafka.Header{header(events.HeaderDLQError, "decode event: unknown type"), header(events.HeaderDLQSourcePartition, "0"),
		header(events.HeaderDLQSourceOffset, "3"), header(events.HeaderDLQGroup, "payment"), header(events.HeaderDLQAttempts, "1")}
	e.write(t,
		kafka.Message{Key: []byte("order-3"), Value: []byte("{}"), Headers: failed}, // no source topic
		kafka.Message{Key: []byte("order-4"), Value: []byte("{}"), Headers: append(failed[:len(failed):len(failed)], header(events.HeaderDLQSourceTopic, source))},
	)
	shop := e.shop
	// Letters without a type (records that were no event) or a source
	// topic say so, in the table and in what replay reports, rather than
	// leaving it blank.
	out, err := shop("dlq", "list")
	if f := strings.Fields(strings.Split(out, "\n")[2]); err != nil || len(f) < 6 || f[4] != "-" || f[5] != "order-4" {
		t.Errorf("list: %v, the second letter's TYPE and KEY cells %q, want - and order-4:\n%s", err, f, out)
	}
	if f := strings.Fields(strings.Split(out, "\n")[1]); len(f) < 4 || f[3] != "-/0/3" {
		t.Errorf("list: the first letter's SOURCE %q, want -/0/3 (no source topic):\n%s", f, out)
	}
	out, err = shop("dlq", "replay", "--group", "payment", "--all")
	for _, want := range []string{"warning: skipped " + dlqTopic + "/0 has no dlq_source_topic header: cannot tell where to replay it\n",
		"replayed " + dlqTopic + "/1 (no type, key order-4, failed: decode event: unknown type) to " + source + " partition 0 offset ",
		"\n1 record replayed from " + dlqTopic + ", 1 skipped ("} {
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("replay --all: %v, output lacks %q:\n%s", err, want, out)
		}
	}
	if out, err := shop("dlq", "replay", "--group", "payment", "--all"); err != nil || !strings.Contains(out, "0 records replayed from") || strings.Contains(out, "skipped") {
		t.Errorf("second replay --all: %v\n%s\nwant nothing replayed nor skipped", err, out)
	}
	var fail *failure
	if _, err := shop("dlq", "replay", "--group", "payment", "--offset", "0"); err == nil || errors.As(err, &fail) ||
		!strings.Contains(err.Error(), "has no dlq_source_topic header") {
		t.Errorf("replay --offset 0: %v, want an error (exit 2) saying why", err)
	}
	if got := testenv.Consume(t, source, 30*time.Second, testenv.Count(1)); string(got[0].Key) != "order-4" {
		t.Errorf("replayed %q, want order-4", got[0].Key)
	}
}

// TestDLQListShowsReplays: the table shows the letter a replayed one
// came from (it was only in the JSON), and for each letter what is known
// of its replays: replayed by --all, and the later letters that are
// replays of it, failed again. An operator could not tell the letters
// outstanding from those handled.
func TestDLQListShowsReplays(t *testing.T) {
	t.Parallel()
	e := newDLQEnv(t)
	dlqTopic, source := e.dlqTopic, e.source
	letter := func(key string, more ...kafka.Header) kafka.Message {
		h := func(k, v string) kafka.Header { return kafka.Header{Key: k, Value: []byte(v)} }
		return kafka.Message{Key: []byte(key), Value: []byte("{}"), Headers: append([]kafka.Header{h(events.HeaderDLQError, "unknown order"),
			h(events.HeaderDLQSourceTopic, source), h(events.HeaderDLQSourcePartition, "0"), h(events.HeaderDLQSourceOffset, "5"),
			h(events.HeaderDLQGroup, "payment"), h(events.HeaderDLQAttempts, "1"), h(events.HeaderType, "test.event")}, more...)}
	}
	// 0 and 1 failed; 2 is 0 replayed (by --offset) and failed again.
	e.write(t, letter("order-0"), letter("order-1"), letter("order-0", kafka.Header{Key: dlq.HeaderReplayedFrom, Value: []byte(dlqTopic + "/0")}))
	shop := e.shop
	rows := func() map[string]string { // by key and offset
		t.Helper()
		out, err := shop("dlq", "list")
		if err != nil {
			t.Fatalf("list: %v\n%s", err, out)
		}
		lines := strings.Split(out, "\n")
		if !strings.HasSuffix(strings.Join(strings.Fields(lines[0]), " "), "ATTEMPTS REPLAYED FROM REPLAYED ERROR") {
			t.Errorf("list header %q: want the REPLAYED FROM and REPLAYED columns", lines[0])
		}
		got := map[string]string{}
		for _, l := range lines[1:] {
			if f := strings.Fields(l); len(f) > 5 && f[0] == "payment" {
				got[f[5]+"@"+f[1]] = strings.Join(f[7:], " ")
			}
		}
		return got
	}
	want := map[string]string{
		"order-0@0": "- failed again as " + dlqTopic + "/2 unknown order",
		"order-1@1": "- - unknown order",
		"order-0@2": dlqTopic + "/0 - unknown order",
	}
	if got := rows(); !maps.Equal(got, want) {
		t.Errorf("before any --all, rows from REPLAYED FROM on:\n%q\nwant\n%q", got, want)
	}
	if out, err := shop("dlq", "replay", "--group", "payment", "--all"); err != nil {
		t.Fatalf("replay --all: %v\n%s", err, out)
	}
	want = map[string]string{
		"order-0@0": "- --all; failed again as " + dlqTopic + "/2 unknown order",
		"order-1@1": "- --all unknown order",
		"order-0@2": dlqTopic + "/0 --all unknown order",
	}
	if got := rows(); !maps.Equal(got, want) {
		t.Errorf("after --all, rows from REPLAYED FROM on:\n%q\nwant\n%q", got, want)
	}
	out, err := shop("dlq", "list", "--json")
	var ls []dlq.Letter
	if err != nil || json.Unmarshal([]byte(out), &ls) != nil || len(ls) != 3 || !ls[0].DoneByAll ||
		!slices.Equal(ls[0].FailedAgainAs, []string{dlqTopic + "/2"}) || ls[2].ReplayedFrom != dlqTopic+"/0" ||
		!strings.Contains(out, `"done_by_all": true`) || !strings.Contains(out, `"failed_again_as": [`) {
		t.Errorf("list --json: %v %+v\n%s", err, ls, out)
	}
}

// TestDLQPoison: shop dlq poison publishes a record that is no event (the
// given key and value, no headers) to the source topic under the prefix,
// and says where it landed; with --json too. Without it a user had no way
// to make a dead letter under make run.
func TestDLQPoison(t *testing.T) {
	t.Parallel()
	e := newDLQEnv(t)
	out, err := e.shop("dlq", "poison", "--key", "garbage-1")
	if err != nil {
		t.Fatalf("poison: %v\n%s", err, out)
	}
	want := "published " + e.source + " partition 0 offset 0: key garbage-1, value \"this is not an event\", no headers (no event)\n" +
		"every group reading " + e.source + " dead-letters it at its first attempt; shop dlq list shows the letters\n"
	if out != want {
		t.Errorf("poison printed\n%s\nwant\n%s", out, want)
	}
	out, err = e.shop("dlq", "poison", "--value", "{not json", "--json")
	var p dlq.Poisoned
	if err != nil || json.Unmarshal([]byte(out), &p) != nil || p.Topic != e.source || p.Offset != 1 || p.Value != "{not json" ||
		!strings.HasPrefix(p.Key, "poison-") || len(p.Key) != len("poison-")+8 {
		t.Errorf("poison --json: %v %+v\n%s", err, p, out)
	}
	got := testenv.Consume(t, e.source, 30*time.Second, testenv.Count(2))
	for i, w := range []struct{ key, value string }{{"garbage-1", "this is not an event"}, {p.Key, "{not json"}} {
		if m := got[i]; string(m.Key) != w.key || string(m.Value) != w.value || len(m.Headers) != 0 {
			t.Errorf("record %d: key %q value %q headers %v, want key %q value %q and no headers", i, m.Key, m.Value, m.Headers, w.key, w.value)
		}
	}
}

// TestDLQPoisonIsDeadLettered is README's "Trying it" on a running suite:
// shop dlq poison, finding the broker and prefix as list does (here
// KAFKA_BROKERS and KAFKA_TOPIC_PREFIX), publishes a record that is no
// event to shop.orders; each group reading it (payment, inventory,
// shipping) dead-letters it at its first attempt, naming the missing
// header; list shows the three letters; a replay of one is dead-lettered
// again by each of them, as the replay of a record that still fails is.
func TestDLQPoisonIsDeadLettered(t *testing.T) {
	ctx := context.Background()
	brokers, prefix := testenv.Kafka(t), testenv.Prefix(t)
	suitetest.Start(t, ctx, suite.Options{DatabaseURL: testenv.DatabaseURL(t), KafkaBrokers: brokers, TopicPrefix: prefix,
		AdminToken: "dlq-test-admin-token", Env: map[string]string{}})
	t.Setenv("KAFKA_BROKERS", strings.Join(brokers, ","))
	t.Setenv("KAFKA_TOPIC_PREFIX", prefix)
	shop := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := run(ctx, args, &out, &errOut); err != nil {
			t.Fatalf("shop %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errOut.String())
		}
		return out.String()
	}
	var p dlq.Poisoned
	if out := shop("dlq", "poison", "--key", "garbage-1", "--json"); json.Unmarshal([]byte(out), &p) != nil || p.Topic != prefix+events.TopicOrders {
		t.Fatalf("poison --json: %+v\n%s", p, out)
	}
	cfg := dlq.Config{Brokers: brokers, Prefix: prefix}
	var ls []dlq.Letter
	testenv.Eventually(t, 60*time.Second, "the poison was not dead-lettered by payment, inventory and shipping", func() bool {
		var err error
		if ls, _, err = dlq.List(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		return len(ls) >= 3
	})
	var groups []string
	for _, l := range ls {
		groups = append(groups, l.Group)
		if l.Key != "garbage-1" || l.Type != "" || l.SourceTopic != p.Topic || l.SourcePartition != p.Partition ||
			l.SourceOffset != p.Offset || l.Attempts != 1 || !strings.Contains(l.Error, events.HeaderSpecVersion) {
			t.Errorf("letter %+v, want garbage-1 from %s/%d/%d, 1 attempt, naming %s", l, p.Topic, p.Partition, p.Offset, events.HeaderSpecVersion)
		}
	}
	if want := []string{"payment", "inventory", "shipping"}; !slices.Equal(groups, want) {
		t.Errorf("dead-lettered by %q, want %q", groups, want)
	}
	if out := shop("dlq", "list"); strings.Count(out, " garbage-1 ") != 3 || !strings.Contains(out, "\n3 dead letters\n") {
		t.Errorf("list:\n%s\nwant the three letters", out)
	}
	out := shop("dlq", "replay", "--group", "payment", "--offset", "0")
	if !strings.Contains(out, "(no type, key garbage-1, failed: ") {
		t.Errorf("replay:\n%s", out)
	}
	// The copy goes to every group reading shop.orders, and each
	// dead-letters it again.
	testenv.Eventually(t, 60*time.Second, "the replayed poison was not dead-lettered again by each group", func() bool {
		again, _, err := dlq.List(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, l := range again {
			if l.ReplayedFrom == prefix+"shop.dlq.payment/0" && l.Offset == 1 {
				n++
			}
		}
		return len(again) == 6 && n == 3
	})
}

// TestDLQCommandErrors: bad input is an error (exit 2) naming the problem.
func TestDLQCommandErrors(t *testing.T) {
	brokers := strings.Join(testenv.Kafka(t), ",")
	prefix := testenv.Prefix(t)
	// The services have started under prefix: their DLQ topics exist.
	if err := kafkatopics.Ensure(context.Background(), testenv.Kafka(t), kafkatopics.Spec{Name: prefix + "shop.dlq.order", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"dlq"}, "want a subcommand"},
		{[]string{"dlq", "purge"}, `unknown subcommand "purge"`},
		{[]string{"dlq", "list", "--group", "billing"}, `unknown group "billing"`},
		{[]string{"dlq", "list", "--group", "nu.billing"}, `unknown group "nu.billing"`},
		{[]string{"dlq", "list", "--group", "nu.payment", "--prefix", "staging."},
			`"nu.payment" is group payment under prefix "nu.", but --prefix is "staging."`},
		{[]string{"dlq", "list", "--brokers", " , "}, "no address"},
		{[]string{"dlq", "replay", "--offset", "0"}, "--group is required: one of order, payment, inventory, shipping"},
		{[]string{"dlq", "replay", "--group", "order"}, "exactly one of --offset N and --all"},
		{[]string{"dlq", "replay", "--group", "order", "--offset", "0", "--all"}, "exactly one of --offset N and --all"},
		{[]string{"dlq", "replay", "--group", "order", "--offset", "-3"}, "must not be negative"},
		{[]string{"dlq", "replay", "--group", "order", "--offset", "x"}, "invalid value"},
		{[]string{"dlq", "replay", "--group", "order", "--offset", "7", "--brokers", brokers, "--prefix", prefix}, "has no offset 7"},
		{[]string{"dlq", "list", "stray"}, `unexpected argument "stray"`},
		{[]string{"dlq", "poison", "--topic", "shop.nope", "--brokers", brokers, "--prefix", prefix},
			`unknown topic "shop.nope": want one of shop.orders, shop.payments, shop.inventory, shop.shipments (without the prefix)`},
		{[]string{"dlq", "poison", "--topic", "shop.payments", "--brokers", brokers, "--prefix", prefix},
			"dlq poison: unknown topic: no topic " + prefix + "shop.payments on " + brokers + ": the services create it when they start"},
		{[]string{"dlq", "poison", "--group", "payment"}, "flag provided but not defined: -group"},
		// A prefix without DLQ topics is a mistake, not an empty queue
		// (it printed "no dead letters", exit status 0).
		{[]string{"dlq", "list", "--brokers", brokers, "--prefix", "zzz" + prefix},
			`dlq list: --prefix "zzz` + prefix + `": no dead-letter topics (zzz` + prefix + `shop.dlq.<group>) on ` + brokers + `; there are some with --prefix "`},
		{[]string{"dlq", "replay", "--group", "order", "--all", "--brokers", brokers, "--prefix", "zzz" + prefix},
			`dlq replay: --prefix "zzz` + prefix + `": no dead-letter topics`},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), c.args, &out, &errOut)
			var fail *failure
			if err == nil || errors.As(err, &fail) {
				t.Fatalf("err = %v, want an error (exit 2)", err)
			}
			if !strings.Contains(err.Error()+errOut.String(), c.want) {
				t.Fatalf("err %v / %s: want %q", err, errOut.String(), c.want)
			}
		})
	}
}
