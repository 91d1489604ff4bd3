package gateway

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// rounds merges the calls that arrive while earlier ones are in flight
// into one statement each, as a database merges commits: a caller never
// waits for company (the first call of a quiet moment goes out alone at
// once), but under load the calls that queued during a round go out
// together in the next. The Fake costs the database one statement and
// one commit per round instead of per call: at full speed the payment
// consumer makes its calls 16 at a time per worker, and the gateway's
// autocommitted statements were 73% of the database's commits and 39% of
// its statements in shop load (5,000 orders).
//
// A round holds each idempotency key at most once (one INSERT ... ON
// CONFLICT cannot touch a row twice) and sends its calls in key order,
// so two rounds lock the rows they share in the same order and cannot
// deadlock. When a round's statement fails, each of its calls is made
// again alone, so one request the database refuses fails only itself.
type rounds[Req, Res any] struct {
	key  func(Req) string
	exec func(ctx context.Context, reqs []Req) ([]Res, error) // results in reqs' order

	maxRuns  int // rounds in flight at once (1: the calls queued during a round make the next)
	maxRound int // calls per round

	mu    sync.Mutex
	queue []*roundCall[Req, Res]
	runs  int

	executed atomic.Int64 // statements sent, rounds and lone retries (tests)
}

type roundCall[Req, Res any] struct {
	req  Req
	res  Res
	err  error
	done chan struct{}
}

// roundTimeout bounds one round's statement. It runs for all its callers,
// so no single caller's context may cut it short; a caller that gives up
// earlier gets its context's error, as from a real gateway, and the
// outcome stays in the ledger for its retry.
const roundTimeout = 30 * time.Second

func newRounds[Req, Res any](key func(Req) string, exec func(context.Context, []Req) ([]Res, error)) *rounds[Req, Res] {
	return &rounds[Req, Res]{key: key, exec: exec, maxRuns: 1, maxRound: 128}
}

// do queues req for the next round and waits for its answer or ctx.
func (r *rounds[Req, Res]) do(ctx context.Context, req Req) (Res, error) {
	c := &roundCall[Req, Res]{req: req, done: make(chan struct{})}
	r.mu.Lock()
	r.queue = append(r.queue, c)
	start := r.runs < r.maxRuns
	if start {
		r.runs++
	}
	r.mu.Unlock()
	if start {
		go r.run()
	}
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		var zero Res
		return zero, ctx.Err()
	}
}

// run sends rounds until the queue is empty.
func (r *rounds[Req, Res]) run() {
	for {
		r.mu.Lock()
		round := r.take()
		if len(round) == 0 {
			r.runs--
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		r.send(round)
	}
}

// take removes up to maxRound queued calls with distinct keys, oldest
// first; a call whose key is already in the round waits for the next.
func (r *rounds[Req, Res]) take() []*roundCall[Req, Res] {
	var (
		round []*roundCall[Req, Res]
		keys  = make(map[string]bool, min(len(r.queue), r.maxRound))
	)
	rest := r.queue[:0]
	for _, c := range r.queue {
		if k := r.key(c.req); len(round) < r.maxRound && !keys[k] {
			keys[k] = true
			round = append(round, c)
		} else {
			rest = append(rest, c)
		}
	}
	clear(r.queue[len(rest):])
	r.queue = rest
	return round
}

// send makes one round's statement and answers its calls.
func (r *rounds[Req, Res]) send(round []*roundCall[Req, Res]) {
	ctx, cancel := context.WithTimeout(context.Background(), roundTimeout)
	defer cancel()
	slices.SortFunc(round, func(a, b *roundCall[Req, Res]) int { return strings.Compare(r.key(a.req), r.key(b.req)) })
	reqs := make([]Req, len(round))
	for i, c := range round {
		reqs[i] = c.req
	}
	r.executed.Add(1)
	res, err := r.exec(ctx, reqs)
	if err != nil && len(round) > 1 {
		for _, c := range round {
			r.executed.Add(1)
			one, err := r.exec(ctx, []Req{c.req})
			if err == nil {
				c.res = one[0]
			}
			c.err = err
			close(c.done)
		}
		return
	}
	for i, c := range round {
		if err == nil {
			c.res = res[i]
		}
		c.err = err
		close(c.done)
	}
}
