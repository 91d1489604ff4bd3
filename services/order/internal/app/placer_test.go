package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// recorder is a placer's store function that records the groups it was
// given, can hold them, and fails the placements of customers in fail.
type recorder struct {
	mu      sync.Mutex
	groups  [][]string // customer ids per group
	running int
	most    int // groups stored at once, at most
	hold    chan struct{}
	fail    map[string]bool
}

func (r *recorder) store(_ context.Context, g []*placement) {
	r.mu.Lock()
	ids := make([]string, len(g))
	for i, p := range g {
		ids[i] = p.o.CustomerID
	}
	r.groups = append(r.groups, ids)
	r.running++
	r.most = max(r.most, r.running)
	r.mu.Unlock()
	if r.hold != nil {
		<-r.hold
	}
	r.mu.Lock()
	r.running--
	r.mu.Unlock()
	for _, p := range g {
		var err error
		if r.fail[p.o.CustomerID] {
			err = fmt.Errorf("failed %s", p.o.CustomerID)
		}
		p.done <- err
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func queued(pl *placer) int { return pl.q.Waiting() }

// While a group is being stored, the placements that arrive wait and go
// together into the next group, oldest first, except a second request
// with a key already in that group, which goes into the one after; each
// owner gets its own placement's outcome.
func TestPlacerGroupsWhatWaits(t *testing.T) {
	r := &recorder{hold: make(chan struct{}), fail: map[string]bool{"c3": true}}
	pl := newPlacer(1, nil, r.store)
	var wg sync.WaitGroup
	errs := make(map[string]error)
	var mu sync.Mutex
	place := func(customer, key string) {
		p := &placement{ctx: context.Background()}
		p.o.CustomerID = customer
		if key != "" {
			p.key = &Key{Value: key}
		}
		wg.Go(func() {
			err := pl.place(p)
			mu.Lock()
			errs[customer] = err
			mu.Unlock()
		})
	}
	place("c0", "k0")
	waitFor(t, "the first group", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.groups) == 1 })
	for i := 1; i <= 5; i++ {
		place(fmt.Sprintf("c%d", i), fmt.Sprintf("k%d", i%4)) // c4 has k0, c5 has k1 like c1
		waitFor(t, "the placement to queue", func() bool { return queued(pl) == i })
	}
	place("c6", "")
	waitFor(t, "the placement to queue", func() bool { return queued(pl) == 6 })
	close(r.hold)
	wg.Wait()

	want := [][]string{{"c0"}, {"c1", "c2", "c3", "c4", "c6"}, {"c5"}}
	if !slices.EqualFunc(r.groups, want, slices.Equal) {
		t.Errorf("groups = %v, want %v", r.groups, want)
	}
	for c, err := range errs {
		if (err != nil) != (c == "c3") {
			t.Errorf("%s: err = %v", c, err)
		}
	}
	if len(errs) != 7 {
		t.Errorf("%d outcomes, want 7", len(errs))
	}
}

// No more groups are stored at once than the placer has slots, no group is
// larger than maxGroup, and every placement is stored exactly once.
func TestPlacerBounds(t *testing.T) {
	const slots, n = 3, 2*maxGroup + 40
	r := &recorder{hold: make(chan struct{})}
	pl := newPlacer(slots, nil, r.store)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed error
	)
	for i := range n {
		wg.Go(func() {
			p := &placement{ctx: context.Background()}
			p.o.CustomerID = fmt.Sprint(i)
			if err := pl.place(p); err != nil {
				mu.Lock()
				failed = errors.Join(failed, err)
				mu.Unlock()
			}
		})
	}
	// Every slot holds a group; the rest wait, then go in full groups.
	waitFor(t, "the slots to fill and the rest to queue", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		inGroups := 0
		for _, g := range r.groups {
			inGroups += len(g)
		}
		return len(r.groups) == slots && inGroups+queued(pl) == n
	})
	close(r.hold)
	wg.Wait()
	if failed != nil {
		t.Fatal(failed)
	}
	if r.most > slots {
		t.Errorf("%d groups stored at once, want at most %d", r.most, slots)
	}
	seen, full := map[string]int{}, 0
	for _, g := range r.groups {
		if len(g) > maxGroup {
			t.Errorf("a group of %d, want at most %d", len(g), maxGroup)
		}
		if len(g) == maxGroup {
			full++
		}
		for _, c := range g {
			seen[c]++
		}
	}
	if full == 0 {
		t.Errorf("no full group among %d groups for %d placements waiting together", len(r.groups), n)
	}
	for i := range n {
		if seen[fmt.Sprint(i)] != 1 {
			t.Errorf("placement %d stored %d times", i, seen[fmt.Sprint(i)])
		}
	}
	if queued(pl) != 0 {
		t.Errorf("%d placements left waiting", queued(pl))
	}
}

// A placement whose request ends (its deadline, its client gone) gets the
// cause at once, while the group before it is still being stored, and is
// left out of the next group: its request answered that it was not
// placed. A group's batch runs until the latest of its placements'
// deadlines and the grace, or groupTimeout when one has none.
func TestPlacerAnswersWhenTheRequestEnds(t *testing.T) {
	r := &recorder{hold: make(chan struct{})}
	pl := newPlacer(1, nil, r.store)
	first := &placement{ctx: context.Background()}
	first.o.CustomerID = "first"
	firstDone := make(chan error, 1)
	go func() { firstDone <- pl.place(first) }()
	waitFor(t, "the first group", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.groups) == 1 })

	gone := errors.New("the request's deadline passed")
	ctx, cancel := context.WithCancelCause(context.Background())
	ended := &placement{ctx: ctx}
	ended.o.CustomerID = "ended"
	endedDone := make(chan error, 1)
	go func() { endedDone <- pl.place(ended) }()
	waiting := &placement{ctx: context.Background()}
	waiting.o.CustomerID = "waiting"
	waitingDone := make(chan error, 1)
	go func() { waitingDone <- pl.place(waiting) }()
	waitFor(t, "the placements to queue", func() bool { return queued(pl) == 2 })
	cancel(gone)
	select {
	case err := <-endedDone:
		if !errors.Is(err, gone) {
			t.Errorf("placement whose request ended = %v, want its cause", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a placement whose request ended still waits for the group before it")
	}
	close(r.hold)
	for _, done := range []chan error{firstDone, waitingDone} {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	want := [][]string{{"first"}, {"waiting"}}
	if !slices.EqualFunc(r.groups, want, slices.Equal) {
		t.Errorf("groups = %v, want %v (the ended placement left out)", r.groups, want)
	}

	now := time.Now()
	soon, cancelSoon := context.WithDeadline(context.Background(), now.Add(time.Second))
	defer cancelSoon()
	later, cancelLater := context.WithDeadline(context.Background(), now.Add(3*time.Second))
	defer cancelLater()
	if d := groupDeadline([]*placement{{ctx: soon}, {ctx: later}}); !d.Equal(now.Add(3*time.Second + groupGrace)) {
		t.Errorf("group deadline %s after now, want the latest placement's and the grace, %s", d.Sub(now), 3*time.Second+groupGrace)
	}
	if d := groupDeadline([]*placement{{ctx: soon}, {ctx: context.Background()}}); d.Sub(now) < groupTimeout {
		t.Errorf("group deadline %s after now with a placement without one, want groupTimeout, %s", d.Sub(now), groupTimeout)
	}
}

// A store that panics fails its group's placements that have no outcome
// yet, and the placer goes on: the next placement is stored.
func TestPlacerSurvivesAPanickingStore(t *testing.T) {
	ctx := context.Background()
	within := func(what string, f func() error) error {
		t.Helper()
		ch := make(chan error, 1)
		go func() { ch <- f() }()
		select {
		case err := <-ch:
			return err
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no outcome after 10 s", what)
			return nil
		}
	}
	a, b := &placement{ctx: ctx, done: make(chan error, 1)}, &placement{ctx: ctx, done: make(chan error, 1)}
	storeSafely([]*placement{a, b}, func(_ context.Context, g []*placement) {
		g[0].done <- nil // an outcome given before the panic stands
		panic("boom")
	})
	if err := within("a", func() error { return <-a.done }); err != nil {
		t.Errorf("placement stored before the panic: %v", err)
	}
	if err := within("b", func() error { return <-b.done }); err == nil || !strings.Contains(err.Error(), "panicked: boom") {
		t.Errorf("placement left by the panic: %v, want the panic as its error", err)
	}

	panicked := false // the first group's store panics, the next one's stores
	pl := newPlacer(1, nil, func(_ context.Context, g []*placement) {
		if !panicked {
			panicked = true
			panic("boom")
		}
		for _, p := range g {
			p.done <- nil
		}
	})
	err := within("a placement whose store panics", func() error { return pl.place(&placement{ctx: ctx}) })
	if err == nil {
		t.Error("placement whose store panicked: no error")
	}
	err = within("the next placement", func() error { return pl.place(&placement{ctx: ctx}) })
	if err != nil {
		t.Errorf("the next placement: %v", err)
	}
}

// TestEveryOrdersFault: only errors that would fail any part of a group
// alike end it at once; the server's word about the batch splits it.
func TestEveryOrdersFault(t *testing.T) {
	live := context.Background()
	ended, cancel := context.WithCancel(live)
	cancel()
	pgErr := func(code string) error { return fmt.Errorf("store: %w", &pgconn.PgError{Code: code}) }
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"group's time up", ended, pgErr("23505"), true},
		{"connection lost", live, pgErr("08006"), true},
		{"server shutting down", live, pgErr("57P01"), true},
		{"too many connections", live, pgErr("53300"), true},
		{"network", live, &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, true},
		{"key in use", live, pgErr("SF409"), false},     // store.KeyTaken
		{"prices changed", live, pgErr("SF412"), false}, // store.PricesChanged
		{"deadlock", live, pgErr("40P01"), false},
		{"statement cancelled", live, pgErr("57014"), false},
		{"refused before sending", live, errors.New("outbox: event too big"), false},
	} {
		if got := everyOrdersFault(tc.ctx, tc.err); got != tc.want {
			t.Errorf("%s: everyOrdersFault = %v, want %v", tc.name, got, tc.want)
		}
	}
}
