package httpserver

import (
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The limits of RequireToken's throttle: a client that sends
// tokenFailureLimit wrong tokens within tokenFailureWindow of its first
// is refused for tokenFailureWindow from the last, whatever it sends.
// That is at most 10 guesses a minute, some 5 million a year, against a
// token of at least MinTokenLength characters; an operator who mistypes
// a few times is not held up.
const (
	tokenFailureLimit  = 10
	tokenFailureWindow = time.Minute
	// tokenFailureClients caps the clients whose failures are kept (some
	// 160 bytes each, 650 KB in all): a flood of addresses takes no more
	// memory, and the clients beyond it share one record
	// (tokenFailures.overflow).
	tokenFailureClients = 4096
)

// tokenFailures counts the wrong admin tokens each client sent
// (RequireToken), by ClientPrefix, and says which clients are refused.
// One is shared by every RequireToken of a Server, so that a client's
// failures on one admin route count on the others.
//
// Memory is bounded: at most max clients are kept, and a record is
// dropped once its window, or its refusal, is over. While max clients
// with recent failures are kept, a client not among them counts in one
// shared record, overflow, which is refused like a client's once it has
// limit failures: a flood of distinct addresses (an IPv6 attacker has
// many /64s) gets limit guesses a window between them all beyond the
// max it is kept for, not limit each. Its price: while overflow is
// refused, so is every client not kept, the right token or not.
type tokenFailures struct {
	limit  int
	window time.Duration
	max    int
	now    func() time.Time
	// refusals counts the requests refused; nil counts nothing.
	refusals prometheus.Counter

	mu       sync.Mutex
	clients  map[netip.Prefix]*strikes
	overflow strikes
	swept    time.Time // the last sweep of the stale records
}

// strikes are one client's failures in its current window.
type strikes struct {
	since time.Time // the window's first failure
	n     int
	until time.Time // refused until then; zero while not refused
}

// stale reports whether s's window and refusal are over at now: its
// failures no longer count.
func (s *strikes) stale(now time.Time, window time.Duration) bool {
	if !s.until.IsZero() {
		return !now.Before(s.until)
	}
	return !now.Before(s.since.Add(window))
}

func newTokenFailures(refusals prometheus.Counter) *tokenFailures {
	return &tokenFailures{limit: tokenFailureLimit, window: tokenFailureWindow, max: tokenFailureClients,
		now: time.Now, refusals: refusals, clients: map[netip.Prefix]*strikes{}}
}

// refused reports how long the client at key is still refused (0: it
// may try a token) and whether that is the shared refusal of the
// clients not kept. A refusal is counted in refusals.
func (t *tokenFailures) refused(key netip.Prefix) (wait time.Duration, shared bool) {
	now := t.now()
	t.mu.Lock()
	s, kept := t.clients[key]
	if !kept {
		s = &t.overflow
	}
	if s.until.After(now) {
		wait = s.until.Sub(now)
	}
	t.mu.Unlock()
	if wait > 0 && t.refusals != nil {
		t.refusals.Inc()
	}
	return wait, wait > 0 && !kept
}

// fail records a wrong token from the client at key. When it is the
// failure that begins a refusal, refusal is how long that lasts (> 0),
// once per refusal, for the caller to log; shared says that the client
// counted in the overflow record.
func (t *tokenFailures) fail(key netip.Prefix) (refusal time.Duration, shared bool) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.swept) >= t.window {
		t.sweep(now)
	}
	s, kept := t.clients[key]
	if !kept && len(t.clients) >= t.max && now.Sub(t.swept) >= time.Second {
		t.sweep(now) // full: make room if any record is stale, at most once a second
	}
	switch {
	case kept:
	case len(t.clients) < t.max:
		s = &strikes{}
		t.clients[key] = s
	default:
		s, shared = &t.overflow, true
	}
	if s.stale(now, t.window) {
		*s = strikes{since: now}
	}
	s.n++
	if s.n >= t.limit && s.until.IsZero() {
		s.until = now.Add(t.window)
		return t.window, shared
	}
	return 0, shared
}

// sweep drops the stale records; t.mu is held.
func (t *tokenFailures) sweep(now time.Time) {
	for k, s := range t.clients {
		if s.stale(now, t.window) {
			delete(t.clients, k)
		}
	}
	t.swept = now
}
