package quiet

import (
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	q := New(30 * time.Second)
	q.now = func() time.Time { return now }
	type want struct {
		ok    bool
		held  int
		since time.Duration
	}
	step := func(msg string, after time.Duration, w want) {
		t.Helper()
		now = now.Add(after)
		ok, held, since := q.Pass(msg)
		if got := (want{ok, held, since}); got != w {
			t.Errorf("Pass(%q) after %s = %+v, want %+v", msg, after, got, w)
		}
	}
	const refused = "error reading partition 3 at offset 17: dial tcp 127.0.0.1:9092: connect: connection refused"
	step(refused, 0, want{ok: true})
	step("error reading partition 7 at offset 4: dial tcp 127.0.0.1:9093: connect: connection refused", time.Second, want{})
	step("Unable to establish connection to consumer group coordinator for group g", time.Second, want{ok: true})
	step("error reading partition 1 at offset 9: dial tcp 127.0.0.1:9092: connect: connection refused", 27*time.Second, want{})
	step(refused, time.Second, want{ok: true, held: 2, since: 30 * time.Second})
	step(refused, 31*time.Second, want{ok: true, since: 31 * time.Second})

	step(refused, time.Second, want{})
	step(refused, time.Second, want{})
	if n := q.Drain(); n != 2 {
		t.Errorf("Drain = %d, want the 2 held back since the last one logged", n)
	}
	if n := q.Drain(); n != 0 {
		t.Errorf("Drain again = %d, want 0", n)
	}
	step(refused, 30*time.Second, want{ok: true, since: 32 * time.Second}) // drained: not counted twice

	step(refused, time.Second, want{})
	if n := q.Reset(); n != 1 {
		t.Errorf("Reset = %d, want 1", n)
	}
	step(refused, time.Second, want{ok: true}) // forgotten: news again

	// At most maxShapes messages are remembered; the one said longest ago
	// goes first. (Digits do not tell messages apart: name them in
	// letters.)
	q = New(30 * time.Second)
	q.now = func() time.Time { return now }
	name := func(i int) string { return "dial " + string(rune('a'+i/26)) + string(rune('a'+i%26)) }
	for i := range maxShapes + 1 {
		now = now.Add(time.Millisecond)
		if ok, _, _ := q.Pass(name(i)); !ok {
			t.Fatalf("%q held back the first time", name(i))
		}
	}
	if len(q.seen) != maxShapes {
		t.Errorf("%d messages remembered, want %d", len(q.seen), maxShapes)
	}
	if ok, _, _ := q.Pass(name(1)); ok {
		t.Errorf("%q passed again within the interval", name(1))
	}
	if ok, _, _ := q.Pass(name(0)); !ok {
		t.Errorf("%q, forgotten as the oldest, held back", name(0))
	}
}
