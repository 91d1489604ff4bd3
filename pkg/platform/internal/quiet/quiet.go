// Package quiet holds back repeats of a log message: the first is passed
// on, then at most one per interval, with the number held back since.
// The inbox uses it for kafka-go's reports during a broker outage, the
// outbox relay for its retries during a database outage, tracing for the
// exporter's errors while the collector is away.
package quiet

import (
	"sync"
	"time"
)

// Interval is how often a repeated message is logged by default: the
// first one at once, then one every 30 s with the number held back.
const Interval = 30 * time.Second

// maxShapes bounds the messages remembered: past it, the one said
// longest ago is forgotten (and so passed on when it comes again).
const maxShapes = 64

// Limiter passes a message on the first time it is seen and then at most
// once per interval, counting the ones held back. Messages are told apart
// by their text with its digits left out, so "partition 3" and
// "partition 7", or two ports, are one message. It is safe for
// concurrent use.
type Limiter struct {
	interval time.Duration
	now      func() time.Time

	mu   sync.Mutex
	seen map[string]*entry
	held int // held back since the last Drain
}

type entry struct {
	said time.Time // when the message was last passed on
	held int       // like messages held back since
}

// New returns a Limiter passing each message at most once per interval.
func New(interval time.Duration) *Limiter {
	return &Limiter{interval: interval, now: time.Now, seen: map[string]*entry{}}
}

// Pass reports whether msg should be logged now and, if so, how many
// like it were held back since it was last logged, and how long ago
// that was.
func (q *Limiter) Pass(msg string) (ok bool, held int, since time.Duration) {
	key := withoutDigits(msg)
	now := q.now()
	q.mu.Lock()
	defer q.mu.Unlock()
	e := q.seen[key]
	if e != nil && now.Sub(e.said) < q.interval {
		e.held++
		q.held++
		return false, 0, 0
	}
	if e == nil {
		if len(q.seen) >= maxShapes {
			oldest := ""
			for k, old := range q.seen {
				if oldest == "" || old.said.Before(q.seen[oldest].said) {
					oldest = k
				}
			}
			delete(q.seen, oldest) // its held-back count stays in q.held
		}
		q.seen[key] = &entry{said: now}
		return true, 0, 0
	}
	held, since = e.held, now.Sub(e.said)
	q.held -= e.held
	e.said, e.held = now, 0
	return true, held, since
}

// Drain returns how many messages were held back and not yet counted in
// a message passed on, and forgets them: what to say when the trouble
// is over.
func (q *Limiter) Drain() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := q.held
	for _, e := range q.seen {
		e.held = 0
	}
	q.held = 0
	return n
}

// Reset forgets every message, so the next of each is passed on at once,
// and returns how many were held back and not yet counted (Drain): for
// when the trouble is over and the next one is news.
func (q *Limiter) Reset() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := q.held
	clear(q.seen)
	q.held = 0
	return n
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
