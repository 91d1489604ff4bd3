package inbox

import (
	"sync"
	"time"
)

// quiet passes a message on the first time it is seen and then at most
// once per interval, counting the ones held back, so that kafka-go's
// reports during a broker outage (every partition reader and the group
// member each say so at every retry: about six lines a second per
// consumer, two thirds of them the same two) do not bury the rest of the
// log. Messages are told apart by their text with its digits left out,
// so "partition 3" and "partition 7", or two ports, are one message.
type quiet struct {
	interval time.Duration
	now      func() time.Time

	mu   sync.Mutex
	seen map[string]*quietEntry
}

type quietEntry struct {
	said time.Time // when the message was last passed on
	held int       // like messages held back since
}

// quietInterval is how often a repeated kafka-go report is logged: the
// first one at once, then one every 30 s with the number held back.
const quietInterval = 30 * time.Second

// quietMaxShapes bounds the messages remembered; past it, the ones
// not said within the interval are forgotten.
const quietMaxShapes = 256

func newQuiet(interval time.Duration) *quiet {
	return &quiet{interval: interval, now: time.Now, seen: map[string]*quietEntry{}}
}

// pass reports whether msg should be logged now and, if so, how many
// like it were held back since it was last logged, and how long ago
// that was.
func (q *quiet) pass(msg string) (ok bool, held int, since time.Duration) {
	key := withoutDigits(msg)
	now := q.now()
	q.mu.Lock()
	defer q.mu.Unlock()
	e := q.seen[key]
	if e != nil && now.Sub(e.said) < q.interval {
		e.held++
		return false, 0, 0
	}
	if e == nil {
		if len(q.seen) >= quietMaxShapes {
			for k, old := range q.seen {
				if now.Sub(old.said) >= q.interval {
					delete(q.seen, k)
				}
			}
		}
		q.seen[key] = &quietEntry{said: now}
		return true, 0, 0
	}
	held, since = e.held, now.Sub(e.said)
	e.said, e.held = now, 0
	return true, held, since
}

func withoutDigits(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < '0' || c > '9' {
			b = append(b, c)
		}
	}
	return string(b)
}
