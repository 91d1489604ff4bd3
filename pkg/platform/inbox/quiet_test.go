package inbox

import (
	"log/slog"
	"testing"
	"time"
)

func TestQuiet(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	q := newQuiet(30 * time.Second)
	q.now = func() time.Time { return now }
	type want struct {
		ok    bool
		held  int
		since time.Duration
	}
	step := func(msg string, after time.Duration, w want) {
		t.Helper()
		now = now.Add(after)
		ok, held, since := q.pass(msg)
		if got := (want{ok, held, since}); got != w {
			t.Errorf("pass(%q) after %s = %+v, want %+v", msg, after, got, w)
		}
	}
	const refused = "error reading partition 3 at offset 17: dial tcp 127.0.0.1:9092: connect: connection refused"
	step(refused, 0, want{ok: true})
	step("error reading partition 7 at offset 4: dial tcp 127.0.0.1:9093: connect: connection refused", time.Second, want{})
	step("Unable to establish connection to consumer group coordinator for group g", time.Second, want{ok: true})
	step("error reading partition 1 at offset 9: dial tcp 127.0.0.1:9092: connect: connection refused", 27*time.Second, want{})
	step(refused, time.Second, want{ok: true, held: 2, since: 30 * time.Second})
	step(refused, 31*time.Second, want{ok: true, since: 31 * time.Second})
	// Other reports are news every time.
	step("reading before the first offset for partition 2 of t: skipping from offset 5 to 9 (4 messages)", 0, want{ok: true})
	step("reading before the first offset for partition 3 of t: skipping from offset 7 to 8 (1 messages)", time.Second, want{ok: true})

	step(refused, time.Second, want{})
	step(refused, time.Second, want{})
	if n := q.drain(); n != 2 {
		t.Errorf("drain = %d, want the 2 held back since the last one logged", n)
	}
	if n := q.drain(); n != 0 {
		t.Errorf("drain again = %d, want 0", n)
	}
	step(refused, 30*time.Second, want{ok: true, since: 33 * time.Second}) // drained: not counted twice

	// At most quietMaxShapes messages are remembered; the one said
	// longest ago goes first. (Digits do not tell messages apart: name
	// them in letters.)
	q = newQuiet(30 * time.Second)
	q.now = func() time.Time { return now }
	name := func(i int) string { return "dial " + string(rune('a'+i/26)) + string(rune('a'+i%26)) }
	for i := range quietMaxShapes + 1 {
		now = now.Add(time.Millisecond)
		if ok, _, _ := q.pass(name(i)); !ok {
			t.Fatalf("%q held back the first time", name(i))
		}
	}
	if len(q.seen) != quietMaxShapes {
		t.Errorf("%d messages remembered, want %d", len(q.seen), quietMaxShapes)
	}
	if ok, _, _ := q.pass(name(1)); ok {
		t.Errorf("%q passed again within the interval", name(1))
	}
	if ok, _, _ := q.pass(name(0)); !ok {
		t.Errorf("%q, forgotten as the oldest, held back", name(0))
	}
}

// A fetch that timed out under load is information, not a warning (shop
// dev's terminal showed it a dozen times in 25 minutes of loads); what
// says a broker is away stays a warning.
func TestKafkaLevel(t *testing.T) {
	for msg, want := range map[string]slog.Level{
		"the kafka reader got an unknown error reading partition 10 of shop.inventory at offset 1219: read tcp 127.0.0.1:48360->127.0.0.1:19192: i/o timeout": slog.LevelInfo,
		"failed to dial: failed to open connection to 127.0.0.1:9092: dial tcp 127.0.0.1:9092: connect: connection refused":                                   slog.LevelWarn,
		"the kafka reader got an unknown error reading partition 3 of shop.orders at offset 7: EOF":                                                           slog.LevelWarn,
		"Failed to join group shop.payment: i/o timeout":                                                                                                      slog.LevelWarn,
	} {
		if got := kafkaLevel(msg); got != want {
			t.Errorf("%q: %s, want %s", msg, got, want)
		}
	}
}
