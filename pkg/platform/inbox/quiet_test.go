package inbox

import (
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
	step("error reading partition 3 at offset 17: dial tcp 127.0.0.1:9092: refused", 0, want{ok: true})
	step("error reading partition 7 at offset 4: dial tcp 127.0.0.1:9093: refused", time.Second, want{})
	step("leaving group g: coordinator unavailable", time.Second, want{ok: true})
	step("error reading partition 1 at offset 9: dial tcp 127.0.0.1:9092: refused", 27*time.Second, want{})
	step("error reading partition 3 at offset 17: dial tcp 127.0.0.1:9092: refused", time.Second, want{ok: true, held: 2, since: 30 * time.Second})
	step("error reading partition 3 at offset 17: dial tcp 127.0.0.1:9092: refused", 31*time.Second, want{ok: true, since: 31 * time.Second})

	// Messages not said within the interval are forgotten once there
	// are quietMaxShapes of them.
	// (Digits do not tell messages apart: name them in letters.)
	q = newQuiet(30 * time.Second)
	q.now = func() time.Time { return now }
	for i := range quietMaxShapes {
		q.pass("message " + string(rune('a'+i/26)) + string(rune('a'+i%26)))
	}
	if len(q.seen) != quietMaxShapes {
		t.Fatalf("%d messages remembered, want %d", len(q.seen), quietMaxShapes)
	}
	now = now.Add(time.Minute)
	q.pass("one more")
	if len(q.seen) != 1 {
		t.Errorf("%d messages remembered after a minute, want the new one alone", len(q.seen))
	}
}
