package web

import (
	"context"
	"sync"
	"time"
)

// sharedTTL is how long a shared result serves later callers: the ops
// page asks every 2 s, so each of its viewers still gets a fresh one
// every time, and any number of viewers cost one computation a second.
const sharedTTL = time.Second

// shared runs a computation once for every caller that asks for it (by
// key) while it runs or within sharedTTL of its end, so that the pages'
// viewers share what it costs: a view of /ops ran 3 SQL reads, Kafka
// metadata and offset requests and a scrape of every peer, a view of /
// one inventory request per product, however many viewers asked at once.
// The computation runs apart from its callers' contexts (a caller that
// leaves does not end it for the others); it must bound itself.
type shared[T any] struct {
	mu   sync.Mutex
	key  string
	val  T
	at   time.Time // when val was computed; zero: never
	runs map[string]*flight[T]
}

type flight[T any] struct {
	done chan struct{}
	val  T
}

// get returns compute's result for key, computing it unless a result for
// key is under sharedTTL old or being computed; it gives up, with ctx's
// error, if ctx ends first.
func (s *shared[T]) get(ctx context.Context, key string, compute func(context.Context) T) (T, error) {
	s.mu.Lock()
	if s.key == key && !s.at.IsZero() && time.Since(s.at) < sharedTTL {
		v := s.val
		s.mu.Unlock()
		return v, nil
	}
	f := s.runs[key]
	if f == nil {
		f = &flight[T]{done: make(chan struct{})}
		if s.runs == nil {
			s.runs = map[string]*flight[T]{}
		}
		s.runs[key] = f
		go func() {
			v := compute(context.WithoutCancel(ctx))
			s.mu.Lock()
			s.key, s.val, s.at = key, v, time.Now()
			delete(s.runs, key)
			s.mu.Unlock()
			f.val = v
			close(f.done)
		}()
	}
	s.mu.Unlock()
	select {
	case <-f.done:
		return f.val, nil
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}
