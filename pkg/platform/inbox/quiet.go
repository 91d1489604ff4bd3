package inbox

import (
	"log/slog"
	"strings"
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
// Only reports of a connection failing are held back (connectionTrouble);
// anything else kafka-go says (offsets skipped, a group left) is news
// each time.
type quiet struct {
	interval time.Duration
	now      func() time.Time

	mu   sync.Mutex
	seen map[string]*quietEntry
	held int // held back since the last drain
}

type quietEntry struct {
	said time.Time // when the message was last passed on
	held int       // like messages held back since
}

// quietInterval is how often a repeated kafka-go report is logged: the
// first one at once, then one every 30 s with the number held back.
const quietInterval = 30 * time.Second

// quietMaxShapes bounds the messages remembered: past it, the one said
// longest ago is forgotten (and so passed on when it comes again).
const quietMaxShapes = 64

func newQuiet(interval time.Duration) *quiet {
	return &quiet{interval: interval, now: time.Now, seen: map[string]*quietEntry{}}
}

// pass reports whether msg should be logged now and, if so, how many
// like it were held back since it was last logged, and how long ago
// that was.
func (q *quiet) pass(msg string) (ok bool, held int, since time.Duration) {
	if !connectionTrouble(msg) {
		return true, 0, 0
	}
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
		if len(q.seen) >= quietMaxShapes {
			oldest := ""
			for k, old := range q.seen {
				if oldest == "" || old.said.Before(q.seen[oldest].said) {
					oldest = k
				}
			}
			delete(q.seen, oldest) // its held-back count stays in q.held
		}
		q.seen[key] = &quietEntry{said: now}
		return true, 0, 0
	}
	held, since = e.held, now.Sub(e.said)
	q.held -= e.held
	e.said, e.held = now, 0
	return true, held, since
}

// drain returns how many messages were held back and not yet counted in
// a message passed on, and forgets them: what to say when the trouble
// is over.
func (q *quiet) drain() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := q.held
	for _, e := range q.seen {
		e.held = 0
	}
	q.held = 0
	return n
}

// connectionTrouble reports whether msg is kafka-go saying that a
// connection to a broker failed or could not be made.
func connectionTrouble(msg string) bool {
	for _, s := range []string{"dial", "connection refused", "connection reset", "broken pipe", "EOF", "i/o timeout",
		"no such host", "network is unreachable", "coordinator"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// kafkaLevel is the level kafka-go's report msg is logged at: a warning,
// but for a fetch whose answer took longer than ReadBatchTimeout (twice
// MaxWait: a second by default). On a machine whose cores are all busy
// (shop dev under shop load: the broker shares the process) that happens
// now and then; the partition reader reconnects and reads on from its
// offset, losing nothing, so it is no news for a terminal that shows
// warnings. A broker that stopped answering shows otherwise: dial and
// connection failures (warnings), the fetch error count, /readyz.
func kafkaLevel(msg string) slog.Level {
	if strings.Contains(msg, "reading partition") && strings.Contains(msg, "i/o timeout") {
		return slog.LevelInfo
	}
	return slog.LevelWarn
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
