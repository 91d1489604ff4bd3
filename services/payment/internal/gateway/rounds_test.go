package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// roundsRecorder is an exec that records each round's requests and, until
// released, holds the first round so the calls after it queue up.
type roundsRecorder struct {
	mu     sync.Mutex
	rounds [][]string
	hold   chan struct{}
}

func (rec *roundsRecorder) exec(ctx context.Context, reqs []string) ([]string, error) {
	rec.mu.Lock()
	rec.rounds = append(rec.rounds, slices.Clone(reqs))
	first := len(rec.rounds) == 1
	rec.mu.Unlock()
	if first && rec.hold != nil {
		<-rec.hold
	}
	out := make([]string, len(reqs))
	for i, r := range reqs {
		if strings.HasPrefix(r, "bad") {
			return nil, fmt.Errorf("refused %s", r)
		}
		out[i] = "answer " + r
	}
	return out, nil
}

func (rec *roundsRecorder) got() [][]string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.rounds)
}

func keyOf(s string) string { return strings.TrimRight(strings.TrimPrefix(s, "bad"), "'") }

// queued waits until n calls are queued.
func queued[Req, Res any](t *testing.T, r *rounds[Req, Res], n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		k := r.q.Waiting()
		if k >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d calls queued after 10s, want %d", k, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// call runs r.do for each request at once and returns the answers.
func callAll(r *rounds[string, string], reqs []string) ([]string, []error) {
	answers, errs := make([]string, len(reqs)), make([]error, len(reqs))
	var wg sync.WaitGroup
	for i, req := range reqs {
		wg.Go(func() { answers[i], errs[i] = r.do(context.Background(), req) })
	}
	wg.Wait()
	return answers, errs
}

// behindHeldRound makes a one-run rounds whose first round ("k0") is held,
// calls reqs at once behind it, releases the round when all have queued,
// and returns their answers and the rounds the recorder saw.
func behindHeldRound(t *testing.T, reqs []string) (answers []string, errs []error, r *rounds[string, string], rec *roundsRecorder) {
	t.Helper()
	rec = &roundsRecorder{hold: make(chan struct{})}
	r = newRounds(keyOf, rec.exec)
	first := make(chan error, 1)
	go func() {
		_, err := r.do(context.Background(), "k0")
		first <- err
	}()
	for len(rec.got()) == 0 {
		time.Sleep(time.Millisecond)
	}
	done := make(chan struct{})
	go func() { answers, errs = callAll(r, reqs); close(done) }()
	queued(t, r, len(reqs))
	close(rec.hold)
	<-done
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	return answers, errs, r, rec
}

func TestRoundsMergeWhatQueuedDuringARound(t *testing.T) {
	var reqs []string
	for i := range 20 {
		reqs = append(reqs, fmt.Sprintf("k%02d", 20-i)) // out of key order
	}
	answers, errs, r, rec := behindHeldRound(t, reqs)
	for i, req := range reqs {
		if errs[i] != nil || answers[i] != "answer "+req {
			t.Errorf("%s = %q, %v", req, answers[i], errs[i])
		}
	}
	got := rec.got()
	if len(got) != 2 || len(got[1]) != 20 {
		t.Fatalf("rounds %v; want the first call alone, then the 20 that queued behind it in one round", got)
	}
	if !slices.IsSorted(got[1]) {
		t.Errorf("round %v is not in key order (two rounds could lock rows in opposite orders)", got[1])
	}
	if r.executed.Load() != 2 {
		t.Errorf("executed %d statements, want 2", r.executed.Load())
	}
}

func TestRoundsHoldEachKeyOnce(t *testing.T) {
	reqs := []string{"k1", "k2", "k1'", "k3", "k1''"}
	_, errs, _, rec := behindHeldRound(t, reqs)
	for i, err := range errs {
		if err != nil {
			t.Errorf("%s: %v", reqs[i], err)
		}
	}
	for _, round := range rec.got() {
		seen := map[string]bool{}
		for _, req := range round {
			if seen[keyOf(req)] {
				t.Errorf("round %v holds key %s twice", round, keyOf(req))
			}
			seen[keyOf(req)] = true
		}
	}
	if n := len(rec.got()); n != 4 { // k0; k1 k2 k3; k1'; k1''
		t.Errorf("rounds %v; want 4", rec.got())
	}
}

func TestRoundsOneRefusedCallFailsOnlyItself(t *testing.T) {
	answers, errs, _, _ := behindHeldRound(t, []string{"k1", "badk2", "k3"})
	if errs[0] != nil || errs[2] != nil || answers[0] != "answer k1" || answers[2] != "answer k3" {
		t.Errorf("neighbours of a refused call: %q %v, %q %v; want their answers", answers[0], errs[0], answers[2], errs[2])
	}
	if errs[1] == nil || !strings.Contains(errs[1].Error(), "refused badk2") {
		t.Errorf("refused call = %q, %v; want its own error", answers[1], errs[1])
	}
}

func TestRoundsCallerGivesUp(t *testing.T) {
	rec := &roundsRecorder{hold: make(chan struct{})}
	r := newRounds(keyOf, rec.exec)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := r.do(ctx, "k1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("do = %v, want the caller's deadline", err)
	}
	close(rec.hold) // the round still finishes, for the ledger
	ans, err := r.do(context.Background(), "k2")
	if err != nil || ans != "answer k2" {
		t.Fatalf("next call = %q, %v", ans, err)
	}
}
