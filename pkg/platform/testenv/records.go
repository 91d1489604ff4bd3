package testenv

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/events"
)

// Forged returns ev as a Kafka record for prefix + its type's topic,
// made as events.Encode makes one but without checking ev against the
// contract: for tests that hand a consumer what no producer of ours
// sends (more lines than an order may have, a U+0000 in a field). The
// value is encoding/json's encoding of ev.Payload (a string's U+0000 as
// \u0000); the headers are the envelope's, ce_subject the payload's
// order id.
func Forged(t testing.TB, prefix string, ev events.Event) kafka.Message {
	t.Helper()
	value, err := json.Marshal(ev.Payload)
	if err != nil {
		t.Fatalf("testenv: forge %s: %v", ev.Type, err)
	}
	subject := ev.Payload.AggregateID()
	header := func(k, v string) kafka.Header { return kafka.Header{Key: k, Value: []byte(v)} }
	return kafka.Message{Topic: prefix + ev.Type.Topic(), Key: []byte(subject), Value: value, Headers: []kafka.Header{
		header(events.HeaderSpecVersion, events.SpecVersion),
		header(events.HeaderID, ev.ID),
		header(events.HeaderSource, ev.Source),
		header(events.HeaderType, string(ev.Type)),
		header(events.HeaderTime, ev.Time.UTC().Format(time.RFC3339Nano)),
		header(events.HeaderSubject, subject),
		header(events.HeaderContentType, events.ContentType),
	}}
}

// Headers returns m's headers by key (the last of a repeated one).
func Headers(m kafka.Message) map[string]string {
	hs := make(map[string]string, len(m.Headers))
	for _, h := range m.Headers {
		hs[h.Key] = string(h.Value)
	}
	return hs
}

// DeadLettered reads topic, a dead-letter topic, until it holds a letter
// for every event of want (its ce_id → what its dlq_error must say, not
// empty) or timeout passes, and fails the test unless each was
// dead-lettered once, at its first attempt, with that reason. Other
// letters on topic are not looked at.
func DeadLettered(t testing.TB, topic string, timeout time.Duration, want map[string]string) {
	t.Helper()
	letters := Consume(t, topic, timeout, func(ms []kafka.Message) bool {
		found := map[string]bool{}
		for _, m := range ms {
			if id := Headers(m)[events.HeaderID]; want[id] != "" {
				found[id] = true
			}
		}
		return len(found) == len(want)
	})
	seen := map[string]int{}
	for _, m := range letters {
		seen[Headers(m)[events.HeaderID]]++
	}
	for _, m := range letters {
		hs := Headers(m)
		id := hs[events.HeaderID]
		says, ok := want[id]
		if ok && (seen[id] != 1 || hs[events.HeaderDLQAttempts] != "1" || !strings.Contains(hs[events.HeaderDLQError], says)) {
			t.Errorf("dead letter of %s (%s): %d letter(s), %s attempt(s), reason %q; want one, at the first attempt, saying %q",
				id, hs[events.HeaderType], seen[id], hs[events.HeaderDLQAttempts], hs[events.HeaderDLQError], says)
		}
	}
}
