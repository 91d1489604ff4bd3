// Package load is shopflow's load generator: it places orders of several
// kinds through the order service's REST API at a chosen concurrency and
// rate, retries failed requests with the same Idempotency-Key (so a retry
// never creates a second order), waits until every order has settled, and
// reports placement and end-to-end latency.
//
// Placement latency is measured here, per request (including retries);
// end-to-end latency is the order's own record: placed_at to confirmed_at
// or cancelled_at, as the order service stamped them.
package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shopflow/shopflow/cmd/shop/answer"
	"github.com/shopflow/shopflow/cmd/shop/seed"
)

// Kind is a kind of order, with the outcome it should reach.
type Kind string

// The kinds of order a load mixes.
const (
	Approve    Kind = "approve"      // tok_visa: confirmed
	Decline    Kind = "decline"      // tok_declined: cancelled (payment declined)
	OutOfStock Kind = "out-of-stock" // a SKU without stock: cancelled (stock rejected)
	Flaky      Kind = "flaky"        // tok_flaky: the gateway times out twice, then confirmed
	Cancel     Kind = "cancel"       // cancelled by the customer right after placing
)

// Kinds lists every kind, in report order.
var Kinds = []Kind{Approve, Decline, OutOfStock, Flaky, Cancel}

// Mix weights the kinds.
type Mix map[Kind]int

// DefaultMix is mostly approvals with some of every failure.
var DefaultMix = Mix{Approve: 70, Decline: 10, OutOfStock: 10, Flaky: 5, Cancel: 5}

// ParseMix reads "approve=70,decline=10,..." (oos is short for
// out-of-stock). Kinds not named get weight 0; a kind named twice is an
// error.
func ParseMix(s string) (Mix, error) {
	m := Mix{}
	total := 0
	for _, part := range strings.Split(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		k := Kind(name)
		if name == "oos" {
			k = OutOfStock
		}
		if !ok || !slices.Contains(Kinds, k) {
			return nil, fmt.Errorf("%q: want kind=weight pairs, kinds %s", part, KindNames())
		}
		if _, again := m[k]; again {
			return nil, fmt.Errorf("%q: %s given twice: give each kind once", part, k)
		}
		n, err := strconv.Atoi(val)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%q: weight must be a whole number ≥ 0", part)
		}
		m[k] = n
		total += n
	}
	if total == 0 {
		return nil, errors.New("all weights are 0: give at least one kind a weight above 0")
	}
	return m, nil
}

// KindNames lists the kinds as ParseMix reads them, for help and errors:
// "approve, decline, out-of-stock (or oos), flaky, cancel".
func KindNames() string {
	s := make([]string, len(Kinds))
	for i, k := range Kinds {
		s[i] = string(k)
		if k == OutOfStock {
			s[i] += " (or oos)"
		}
	}
	return strings.Join(s, ", ")
}

// Options configure a load.
type Options struct {
	// OrderURL is the order service's base URL; trailing slashes are
	// dropped (the service's routes do not match "//v1/...").
	OrderURL string
	// Orders to place; Concurrency requests at a time.
	Orders, Concurrency int
	// Rate caps placements per second; 0 means as fast as possible. At
	// most MaxRate.
	Rate float64
	// Mix of kinds; nil means DefaultMix.
	Mix Mix
	// SettleTimeout bounds the wait for every order to settle. Zero does
	// not wait: the orders are looked at once, and those not settled yet
	// are reported pending (as check.Options' zero Wait checks once).
	// Negative is an error.
	SettleTimeout time.Duration
	// RetryFor bounds how long one placement keeps retrying; default 90 s.
	RetryFor time.Duration
	// GiveUpAfter bounds how long the load goes on with an order service
	// that takes no request (no answer, 5xx, 408, 429): the placing
	// stops, and so does the wait for the orders to settle; default 30 s.
	// Without it a service killed mid-load cost RetryFor per order left.
	GiveUpAfter time.Duration
	// Progress, if set, receives a progress line (a bar on a terminal).
	Progress io.Writer
	// Terminal draws the progress as a bar redrawn in place.
	Terminal bool
	// Client; nil means a client with a 10 s timeout.
	Client *http.Client
	// RunID names this load's customer ("load-<RunID>"); default random.
	RunID string
}

// MaxRate is the highest Rate: one placement a microsecond, far beyond
// what a load reaches, and well within what a ticker can pace (above 1e9
// a second its interval would be 0, which time.NewTicker refuses).
const MaxRate = 1e6

// CheckRate returns an error, naming the accepted range, for a rate that
// is not a number from 0 (no limit) to MaxRate: NaN and ±Inf included.
func CheckRate(rate float64) error {
	if !(rate >= 0 && rate <= MaxRate) { // false for NaN too
		return fmt.Errorf("rate %v: want placements per second from 0 (no limit) to %.0f", rate, MaxRate)
	}
	return nil
}

// Report is a load's outcome. The JSON names are the contract of
// `shop load --json` (ARCHITECTURE.md, "Commands"). A latency without a
// sample (placement's when no order was accepted, end to end's when none
// settled) is 0 here and null in JSON.
type Report struct {
	RunID  string `json:"run_id"`
	Orders int    `json:"orders"`
	// Interrupted says ctx ended (Ctrl-C) before the load was done: the
	// placing stopped there, and the orders placed were looked at once,
	// without waiting for them to settle.
	Interrupted bool `json:"interrupted"`
	// GaveUp says why the load stopped placing, or waiting, before its
	// end: the order service took no request for GiveUpAfter.
	GaveUp string `json:"gave_up,omitempty"`
	// Accepted counts the orders the service stored, Recovered among
	// them.
	Accepted int `json:"accepted"`
	// Recovered counts the placements given up on (or cut off by an
	// interruption) that the service stored all the same, their answer
	// lost: the listing of the run's orders has them. They have no
	// placement latency.
	Recovered int `json:"recovered"`
	// Failed counts the placements that were given up on, and that the
	// listing does not have.
	Failed int `json:"failed"`
	// NotPlaced counts the orders an interruption, or giving up on the
	// service, left unplaced: never sent, or cut off in flight by an
	// interruption (and not in the listing).
	NotPlaced int   `json:"not_placed"`
	Retries   int64 `json:"retries"`
	Settled   int   `json:"settled"`
	Confirmed int   `json:"confirmed"`
	Cancelled int   `json:"cancelled"`
	Pending   int   `json:"pending"`
	// Unknown counts the accepted orders whose state could not be read:
	// the service did not answer the listing (see Errors).
	Unknown    int `json:"unknown"`
	Unexpected int `json:"unexpected"`
	// FailedPolls counts the status polls that got no answer while the
	// load waited for its orders to settle (the last one's error is in
	// Errors); the wait ends at SettleTimeout whatever they meet.
	FailedPolls  int     `json:"failed_polls"`
	AcceptedPerS float64 `json:"accepted_per_s"`
	SettledPerS  float64 `json:"settled_per_s"`
	P50ms        float64 `json:"p50_ms"`
	P99ms        float64 `json:"p99_ms"`
	E2EP50ms     float64 `json:"e2e_p50_ms"`
	E2EP99ms     float64 `json:"e2e_p99_ms"`
	// E2ESample is how many orders the end-to-end latencies and
	// SettledPerS cover: those that settled. Fewer than Accepted when
	// some are pending or unknown, whose latencies (the longest, likely)
	// are not in the figures: a partial sample.
	E2ESample int     `json:"e2e_sample"`
	DurationS float64 `json:"duration_s"`
	// ByKind counts outcomes per kind.
	ByKind map[Kind]*KindReport `json:"by_kind"`
	// Errors holds what kept the report from being whole (status polls
	// that failed, states that could not be read), then a sample of
	// what failed (at most 10).
	Errors []string `json:"errors,omitempty"`
	// IDs of the accepted orders by kind, for checks (not in JSON).
	IDs map[Kind][]string `json:"-"`
}

// MarshalJSON writes the latencies that have no sample as null rather
// than 0, which would read as a measurement: placement's when no order
// was accepted with an answer, end to end's when none settled.
func (r Report) MarshalJSON() ([]byte, error) {
	type fields Report // the same fields without this method
	sample := func(v float64, n int) *float64 {
		if n == 0 {
			return nil
		}
		return &v
	}
	// The outer fields shadow the embedded ones of the same JSON name.
	return json.Marshal(struct {
		fields
		P50ms    *float64 `json:"p50_ms"`
		P99ms    *float64 `json:"p99_ms"`
		E2EP50ms *float64 `json:"e2e_p50_ms"`
		E2EP99ms *float64 `json:"e2e_p99_ms"`
	}{fields(r), sample(r.P50ms, r.Accepted-r.Recovered), sample(r.P99ms, r.Accepted-r.Recovered), sample(r.E2EP50ms, r.Settled), sample(r.E2EP99ms, r.Settled)})
}

// KindReport counts one kind's outcomes.
type KindReport struct {
	Placed    int `json:"placed"`
	Confirmed int `json:"confirmed"`
	Cancelled int `json:"cancelled"`
	Pending   int `json:"pending"`
	// Unknown: the state could not be read.
	Unknown int `json:"unknown"`
	// Unexpected outcomes: an approval cancelled, a decline confirmed...
	Unexpected int `json:"unexpected"`
}

// placed is one accepted order and what it should become.
type placed struct {
	id      string
	kind    Kind
	expect  string // confirmed or cancelled
	either  bool   // either end is expected: a cancel was cut off, and may have reached the service
	latency time.Duration
}

// Run places the orders, waits for them to settle and reports. The wait
// ends at SettleTimeout whatever the service does, and the report is
// returned whether or not the orders' states could be read (those not
// read count as Unknown, the reason in Errors): an error without a report
// is a bad option, a service not ready for a load (preflight) or ctx
// ending before the first placement. When ctx
// ends (Ctrl-C) it stops placing, looks once at the orders placed, on a
// context of its own bounded to 10 s, and returns the report with
// Interrupted set together with an error wrapping ErrInterrupted and
// ctx's cause; ctx ending before the first placement is an error alone.
func Run(ctx context.Context, o Options) (*Report, error) {
	o.OrderURL = strings.TrimRight(o.OrderURL, "/")
	if o.OrderURL == "" || o.Orders <= 0 || o.Concurrency <= 0 || o.SettleTimeout < 0 {
		return nil, errors.New("load: want an order URL, orders > 0, concurrency > 0 and settle timeout ≥ 0")
	}
	if err := CheckRate(o.Rate); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	if o.Mix == nil {
		o.Mix = DefaultMix
	}
	if o.RetryFor <= 0 {
		o.RetryFor = 90 * time.Second
	}
	if o.GiveUpAfter <= 0 {
		o.GiveUpAfter = 30 * time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: requestTimeout, Transport: &http.Transport{
			MaxIdleConnsPerHost: o.Concurrency, MaxConnsPerHost: o.Concurrency}}
	}
	if o.RunID == "" {
		o.RunID = strconv.FormatUint(rand.Uint64()&0xffffffffff, 36)
	}
	l := &loader{o: o, customer: "load-" + o.RunID}
	if err := l.preflight(ctx); err != nil {
		return nil, err
	}
	rep := &Report{RunID: o.RunID, Orders: o.Orders, ByKind: map[Kind]*KindReport{}, IDs: map[Kind][]string{}}
	for _, k := range Kinds {
		rep.ByKind[k] = &KindReport{}
	}

	began := time.Now()
	kinds := l.kinds()
	done := l.place(ctx, kinds)
	acceptedIn := time.Since(began)
	rep.Retries = l.retries.Load()
	var lat []time.Duration
	for _, p := range done.accepted {
		lat = append(lat, p.latency)
	}

	// The orders tried without an answer are looked for too: the service
	// may have stored them.
	tried := len(done.accepted) + len(done.failed) + len(done.cut)
	var (
		settled     map[string]orderState
		gaveUp, err error
		notes       []string // what stood in the way of the report
	)
	if ctx.Err() == nil && tried > 0 {
		settled, gaveUp, err = l.settle(ctx, tried)
	}
	if ctx.Err() != nil {
		// Interrupted, while placing or waiting: the orders' states as
		// they are now, read on a context ctx's end does not cut.
		rep.Interrupted = true
		if l.o.Progress != nil {
			fmt.Fprintf(l.o.Progress, "interrupted: placing stopped; reading the states of the %d orders placed\n", len(done.accepted))
		}
		settled, err = nil, nil
		if tried > 0 {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readFor)
			settled, err = l.list(rctx)
			cancel()
		}
	}
	results, recovered, lost := reconcile(done, kinds, settled)
	for _, p := range results {
		rep.ByKind[p.kind].Placed++
		rep.IDs[p.kind] = append(rep.IDs[p.kind], p.id)
	}
	rep.Accepted = len(results)
	rep.Recovered = recovered
	rep.Failed = len(done.failed)
	rep.NotPlaced = o.Orders - rep.Accepted - rep.Failed
	if rep.Accepted > 0 {
		rep.AcceptedPerS = float64(rep.Accepted) / acceptedIn.Seconds()
	}
	if len(lat) > 0 {
		rep.P50ms, rep.P99ms = percentiles(lat)
	}

	// What stood in the way of the report comes first in Errors, ahead
	// of the sample of placements' errors, which could fill it.
	for _, e := range []error{done.gaveUp, gaveUp} {
		if e != nil && rep.GaveUp == "" {
			rep.GaveUp = e.Error()
		}
	}
	if done.gaveUp != nil {
		notes = append(notes, fmt.Sprintf("placing stopped with %s not placed: %v", count(rep.NotPlaced, "order", "orders"), done.gaveUp))
	}
	if gaveUp != nil {
		notes = append(notes, fmt.Sprintf("stopped waiting for the orders to settle: %v", gaveUp))
	}
	if failed, last := l.polls(); failed > 0 {
		rep.FailedPolls = failed
		notes = append(notes, fmt.Sprintf("%s failed while waiting for the orders to settle, the last: %v", count(failed, "status poll", "status polls"), last))
	}
	if err != nil {
		// The orders whose state was not read are reported unknown,
		// with the reason: the report is due whatever the service does.
		notes = append(notes, fmt.Sprintf("the orders' states could not all be read: %v", err))
	}
	if lost > 0 {
		// Only those whose request failed: one the interruption cut off
		// may have been stored, and that is no failure of anyone's.
		notes = append(notes, fmt.Sprintf("the listing has %s whose placement got no answer (stored all the same, the answer lost): counted accepted, without a placement latency",
			count(lost, "order", "orders")))
	}
	for _, i := range slices.Sorted(maps.Keys(done.failed)) {
		l.errorf("order %d (%s): %v", i, kinds[i], done.failed[i])
	}
	var e2e []time.Duration
	var lastSettle time.Time
	for _, p := range results {
		s, read := settled[p.id]
		kr := rep.ByKind[p.kind]
		switch {
		case !read:
			rep.Unknown++
			kr.Unknown++
		case s.Status == "confirmed" || s.Status == "cancelled":
			rep.Settled++
			at := s.settledAt()
			e2e = append(e2e, at.Sub(s.PlacedAt))
			if at.After(lastSettle) {
				lastSettle = at
			}
			if s.Status == "confirmed" {
				rep.Confirmed++
				kr.Confirmed++
			} else {
				rep.Cancelled++
				kr.Cancelled++
			}
			if s.Status != p.expect && !p.either {
				rep.Unexpected++
				kr.Unexpected++
				l.errorf("order %s (%s) %s, expected %s (reason %q)", p.id, p.kind, s.Status, p.expect, s.Reason)
			}
		default:
			rep.Pending++
			kr.Pending++
		}
	}
	if len(e2e) > 0 {
		rep.E2EP50ms, rep.E2EP99ms = percentiles(e2e)
		rep.E2ESample = len(e2e)
		if span := lastSettle.Sub(began); span > 0 {
			rep.SettledPerS = float64(rep.Settled) / span.Seconds()
		}
	}
	rep.DurationS = time.Since(began).Seconds()
	rep.Errors = append(notes, l.errs...)
	if rep.Interrupted {
		// The report and the error both: a caller that only checks the
		// error must not take a load cut short for a whole one.
		return rep, fmt.Errorf("%w: %w", ErrInterrupted, context.Cause(ctx))
	}
	return rep, nil
}

// ErrInterrupted is what Run's error wraps when ctx ended before the load
// was done; Run then returns its report as well, with Interrupted set.
var ErrInterrupted = errors.New("load interrupted")

type loader struct {
	o        Options
	customer string
	retries  atomic.Int64

	// failingSince is when the order service began to take no
	// request (Unix ns), 0 while it takes them.
	failingSince atomic.Int64

	mu          sync.Mutex
	errs        []string
	failedPolls int
	lastPollErr error
	lastErr     error     // why the last request the service did not take failed
	lastErrAt   time.Time // and when
}

func (l *loader) errorf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) < 10 {
		l.errs = append(l.errs, fmt.Sprintf(format, args...))
	}
}

// placing is what place did. The orders tried without an answer are kept
// by index, for the listing to tell which the service stored all the same
// (reconcile): failed, given up on with the last error, and cut off, in
// flight when ctx ended.
type placing struct {
	accepted []placed
	failed   map[int]error
	cut      map[int]bool
	// gaveUp says why the placing stopped before the last order: the
	// service took no request for GiveUpAfter. Nil when it did not.
	gaveUp error
}

// place runs the placements. It stops when ctx ends (the placements cut
// off in flight are neither accepted nor failed) or once the order service
// has taken no request for GiveUpAfter (those in flight failed, with
// the reason).
func (l *loader) place(ctx context.Context, kinds []Kind) placing {
	pctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-pctx.Done():
				return
			case <-t.C:
				if err := l.down(); err != nil {
					stop(err)
					return
				}
			}
		}
	}()
	jobs := make(chan int)
	go func() {
		defer close(jobs)
		var tick <-chan time.Time
		if l.o.Rate > 0 {
			t := time.NewTicker(time.Duration(float64(time.Second) / l.o.Rate))
			defer t.Stop()
			tick = t.C
		}
		for i := range l.o.Orders {
			// The first order goes at once; the ticker paces the
			// rest (it first fires 1/Rate after it was made).
			if tick != nil && i > 0 {
				select {
				case <-tick:
				case <-pctx.Done():
					return
				}
			}
			select {
			case jobs <- i:
			case <-pctx.Done():
				return
			}
		}
	}()
	var (
		mu  sync.Mutex
		out = placing{failed: map[int]error{}, cut: map[int]bool{}}
		wg  sync.WaitGroup
	)
	stopProgress := l.progress(func() string {
		mu.Lock()
		n, failed := len(out.accepted), len(out.failed)
		mu.Unlock()
		return fmt.Sprintf("placed %d/%d, failed %d, retries %d", n, l.o.Orders, failed, l.retries.Load()) + l.lastError()
	}, func() float64 {
		mu.Lock()
		defer mu.Unlock()
		return float64(len(out.accepted)+len(out.failed)) / float64(l.o.Orders)
	})
	for range l.o.Concurrency {
		wg.Go(func() {
			for i := range jobs {
				p, err := l.placeOne(pctx, i, kinds[i])
				mu.Lock()
				switch {
				case err == nil:
					out.accepted = append(out.accepted, p)
				case ctx.Err() != nil:
					out.cut[i] = true // cut off by the interruption
				case pctx.Err() != nil:
					out.failed[i] = context.Cause(pctx)
				default:
					out.failed[i] = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	stopProgress()
	if ctx.Err() == nil && pctx.Err() != nil {
		out.gaveUp = context.Cause(pctx)
	}
	return out
}

// answered notes that the order service took a request: it answered it
// for what it is (what was wanted, or a refusal).
func (l *loader) answered() { l.failingSince.Store(0) }

// unanswered notes a request the order service did not take (no answer,
// 5xx, 408, 429...) and why.
func (l *loader) unanswered(err error) {
	now := time.Now()
	l.failingSince.CompareAndSwap(0, now.UnixNano())
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastErr, l.lastErrAt = err, now
}

// down returns an error, naming the last failure, once the order service
// has taken no request for GiveUpAfter; nil while it takes some.
func (l *loader) down() error {
	since := l.failingSince.Load()
	if since == 0 || time.Since(time.Unix(0, since)) < l.o.GiveUpAfter {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Errorf("the order service took no request for %s, the last error: %w", l.o.GiveUpAfter, l.lastErr)
}

// lastError is the progress line's note of the last failed request:
// "; last error 3s ago: ..." (on a terminal cut to fit a line), or "".
func (l *loader) lastError() string {
	l.mu.Lock()
	err, at := l.lastErr, l.lastErrAt
	l.mu.Unlock()
	if err == nil {
		return ""
	}
	msg := err.Error()
	if r := []rune(msg); l.o.Terminal && len(r) > 100 {
		msg = string(r[:99]) + "…"
	}
	return fmt.Sprintf("; last error %s ago: %s", time.Since(at).Round(time.Second), msg)
}

// preflight asks the order service for its catalog once, before the
// load: a suite that is not running, or not seeded, is reported at once
// rather than after every placement has been retried for RetryFor.
func (l *loader) preflight(ctx context.Context) error {
	// A service that answers but cannot serve yet (5xx: its database is
	// starting, say) gets a few seconds; one that does not answer at all
	// is not running.
	var (
		status int
		body   []byte
		err    error
	)
	for deadline := time.Now().Add(10 * time.Second); ; {
		status, body, _, err = l.do(ctx, "GET", "/v1/products", nil, "")
		if err != nil {
			return fmt.Errorf("the order service at %s does not answer (%w); is the suite running (make run)?", l.o.OrderURL, err)
		}
		if status < 500 || time.Now().After(deadline) || !answer.Sleep(ctx, 500*time.Millisecond) {
			break
		}
	}
	if status != http.StatusOK {
		return fmt.Errorf("the order service at %s: GET /v1/products: %d %s", l.o.OrderURL, status, answer.Text(body))
	}
	var page struct {
		Products []struct {
			SKU      string `json:"sku"`
			Currency string `json:"currency"`
			Active   bool   `json:"active"`
		} `json:"products"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return fmt.Errorf("the order service at %s: GET /v1/products: %w", l.o.OrderURL, err)
	}
	active := map[string]bool{}
	var otherCurrency []string
	for _, p := range page.Products {
		active[p.SKU] = p.Active
		if p.Active && p.Currency != orderCurrency && slices.Contains(goods, p.SKU) {
			otherCurrency = append(otherCurrency, fmt.Sprintf("%s (%s)", p.SKU, p.Currency))
		}
	}
	need := slices.Clone(goods)
	if l.o.Mix[OutOfStock] > 0 {
		need = append(need, seed.OutOfStockSKU)
	}
	var missing []string
	for _, sku := range need {
		if !active[sku] {
			missing = append(missing, sku)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the order service at %s does not sell %s, which the load orders: "+
			"shop seed adds the demo products that are missing (with their stock); one taken off sale goes back on with "+
			`PUT /v1/products/{sku} and "active": true`,
			l.o.OrderURL, strings.Join(missing, ", "))
	}
	if len(otherCurrency) > 0 {
		return fmt.Errorf("the order service at %s sells %s in another currency than the load's %s: "+
			"an admin changed them (shop seed leaves the catalog's products as they are); put them back in %s with PUT /v1/products/{sku}",
			l.o.OrderURL, strings.Join(otherCurrency, ", "), orderCurrency, orderCurrency)
	}
	return nil
}

// orderCurrency is the currency of every order the load places, the
// demo catalog's.
const orderCurrency = "USD"

// kinds deals the mix out over the orders, shuffled, so the proportions
// are exact rather than random.
func (l *loader) kinds() []Kind {
	total := 0
	for _, w := range l.o.Mix {
		total += w
	}
	out := make([]Kind, 0, l.o.Orders)
	for _, k := range Kinds {
		n := l.o.Orders * l.o.Mix[k] / total
		for range n {
			out = append(out, k)
		}
	}
	for i := 0; len(out) < l.o.Orders; i++ { // rounding leftovers
		if k := Kinds[i%len(Kinds)]; l.o.Mix[k] > 0 {
			out = append(out, k)
		}
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// goods are the SKUs an approving order picks from (stocked plenty).
var goods = func() []string {
	var s []string
	for _, p := range seed.Catalog {
		if p.Stock > 0 && p.PriceCents < 100_000 {
			s = append(s, p.SKU)
		}
	}
	return s
}()

func (l *loader) body(i int, kind Kind) map[string]any {
	r := rand.New(rand.NewPCG(uint64(i), 42))
	n := 1 + r.IntN(3)
	var items []any
	for _, j := range r.Perm(len(goods))[:n] {
		items = append(items, map[string]any{"sku": goods[j], "quantity": 1 + r.IntN(3)})
	}
	token := "tok_visa"
	switch kind {
	case Decline:
		token = "tok_declined"
	case Flaky:
		token = "tok_flaky"
	case OutOfStock:
		items = append(items, map[string]any{"sku": seed.OutOfStockSKU, "quantity": 1})
	}
	return map[string]any{
		"customer_id": l.customer, "currency": orderCurrency, "items": items,
		"payment": map[string]any{"card_token": token},
		"shipping_address": map[string]any{"name": testerName + strconv.Itoa(i), "line1": strconv.Itoa(1+i%999) + " Main St",
			"city": "Springfield", "postal_code": "12345", "country": "US"},
	}
}

// placeOne places order i, retrying with the same Idempotency-Key until
// it is accepted, refused (see retry) or RetryFor passes.
func (l *loader) placeOne(ctx context.Context, i int, kind Kind) (placed, error) {
	b, _ := json.Marshal(l.body(i, kind))
	key := fmt.Sprintf("%s-%d", l.customer, i)
	start := time.Now()
	var order struct {
		ID string `json:"id"`
	}
	status, body, err := l.retry(ctx, l.o.RetryFor, "POST", "/v1/orders", b, key, &order, http.StatusCreated)
	if err != nil {
		return placed{}, err
	}
	if status != http.StatusCreated || order.ID == "" {
		return placed{}, fmt.Errorf("POST /v1/orders: %d %s", status, answer.Text(body))
	}
	p := placed{id: order.ID, kind: kind, expect: "confirmed", latency: time.Since(start)}
	switch kind {
	case Decline, OutOfStock:
		p.expect = "cancelled"
	case Cancel:
		if ctx.Err() != nil {
			// Interrupted before the cancel was sent: it stays as placed.
			break
		}
		status, body, err := l.retry(ctx, l.o.RetryFor, "POST", "/v1/orders/"+order.ID+"/cancel", nil, "", nil, http.StatusOK, http.StatusConflict)
		switch {
		case err != nil && ctx.Err() != nil:
			// Interrupted while the cancel was on its way: only its answer
			// may have been cut off, the service may have cancelled the
			// order (or confirmed it first).
			p.either = true
		case err != nil:
			l.errorf("cancel %s: %v", order.ID, err)
		case status == http.StatusOK:
			p.expect = "cancelled"
		case status == http.StatusConflict:
			// Confirmed before the cancel arrived: the saga was faster.
		default:
			l.errorf("cancel %s: %d %s", order.ID, status, answer.Text(body))
		}
	}
	return p, nil
}

// retry sends a request until it gets one of want, a definite refusal
// (a 4xx other than 408, 409 and 429), or patience passes. Transport
// errors and the answers that leave the outcome open are retried with the
// same Idempotency-Key, as the storefront does: a 5xx (a gateway's may
// come after the service stored the order), 409 (the same key still in
// flight), 408 and 429 (a proxy or the server did not take the request
// in; 429 and 408 used to be taken for final refusals). The wait is the
// answer's Retry-After when it gives one, at most answer.MaxWait, else a
// backoff from 50 ms to 1 s.
func (l *loader) retry(ctx context.Context, patience time.Duration, method, path string, body []byte, key string, out any, want ...int) (int, []byte, error) {
	deadline := time.Now().Add(patience)
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		status, resp, header, err := l.do(ctx, method, path, body, key)
		if err == nil && (slices.Contains(want, status) || !uncertain(status)) {
			l.answered()
		} else if ctx.Err() == nil {
			if err == nil {
				l.unanswered(fmt.Errorf("%s %s: %d %s", method, path, status, answer.Text(resp)))
			} else {
				l.unanswered(err)
			}
		}
		if err == nil && slices.Contains(want, status) {
			if out != nil {
				if err := json.Unmarshal(resp, out); err != nil {
					return status, resp, fmt.Errorf("%s %s: response is not JSON: %w", method, path, err)
				}
			}
			return status, resp, nil
		}
		if err == nil && !uncertain(status) {
			return status, resp, nil // refused: retrying cannot help
		}
		delay := backoff
		if err == nil {
			if after, ok := answer.RetryAfter(header, time.Now()); ok {
				delay = min(after, answer.MaxWait)
			}
		}
		if ctx.Err() != nil || time.Now().Add(delay).After(deadline) {
			if err == nil {
				err = fmt.Errorf("%s %s: %d %s", method, path, status, answer.Text(resp))
			}
			return status, resp, fmt.Errorf("gave up after %s: %w", count(attempt, "attempt", "attempts"), err)
		}
		l.retries.Add(1)
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		backoff = min(backoff*2, time.Second)
	}
}

// uncertain reports whether an answer other than the one wanted is worth
// sending again: it does not say the request was refused for what it is.
func uncertain(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusConflict, http.StatusTooManyRequests:
		return true
	}
	return status >= 500
}

func (l *loader) do(ctx context.Context, method, path string, body []byte, key string) (int, []byte, http.Header, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, l.o.OrderURL+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	res, err := l.o.Client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, nil, nil, err
	}
	return res.StatusCode, b, res.Header, nil
}

// orderState is what the report needs of an order.
type orderState struct {
	ID          string     `json:"id"`
	Status      string     `json:"status"`
	Reason      string     `json:"reason"`
	PlacedAt    time.Time  `json:"placed_at"`
	ConfirmedAt *time.Time `json:"confirmed_at"`
	CancelledAt *time.Time `json:"cancelled_at"`
	// The name on the shipping address says which of the load's orders
	// this is (body: testerName and its index).
	ShippingAddress struct {
		Name string `json:"name"`
	} `json:"shipping_address"`
}

// testerName, followed by the order's index, is the name on every load
// order's shipping address: the listing tells by it which placement an
// order came from when the placement's answer was lost.
const testerName = "Load Tester "

// reconcile returns the accepted orders, adding those of the placements
// without an answer (failed or cut off) that the listing has all the same
// (the service stored them; the answer was lost), which it takes out of
// done.failed and done.cut; how many it added, and how many of those had
// failed rather than been cut off by an interruption. Such an order has no
// placement latency, and its expected outcome is its kind's without a
// customer's cancel (none was sent).
func reconcile(done placing, kinds []Kind, states map[string]orderState) (_ []placed, added, lost int) {
	out := done.accepted
	known := map[string]bool{}
	for _, p := range out {
		known[p.id] = true
	}
	for _, id := range slices.Sorted(maps.Keys(states)) {
		s := states[id]
		i, err := strconv.Atoi(strings.TrimPrefix(s.ShippingAddress.Name, testerName))
		if known[id] || err != nil || !strings.HasPrefix(s.ShippingAddress.Name, testerName) {
			continue
		}
		_, failed := done.failed[i]
		if !failed && !done.cut[i] {
			continue
		}
		if failed {
			lost++
		}
		delete(done.failed, i)
		delete(done.cut, i)
		p := placed{id: id, kind: kinds[i], expect: "confirmed"}
		if p.kind == Decline || p.kind == OutOfStock {
			p.expect = "cancelled"
		}
		out = append(out, p)
		added++
	}
	return out, added, lost
}

func (s orderState) settledAt() time.Time {
	if s.ConfirmedAt != nil {
		return *s.ConfirmedAt
	}
	if s.CancelledAt != nil {
		return *s.CancelledAt
	}
	return time.Time{}
}

// readFor bounds the retries of a listing page: the states are read
// after the placing and the wait, and a service that does not answer
// them for this long is not going to before the report is due (each
// page used to retry for RetryFor, 90 s, and a dead service cost a
// load its whole report).
const readFor = 10 * time.Second

// requestTimeout is how long a request waits for its answer: past the
// services' own deadline (HTTP_REQUEST_TIMEOUT, 25 s by default, after
// which a stalled database gets a 503 with Retry-After and the order's
// Idempotency-Key) and their 30 s write timeout. Shorter, a placement was
// sent again while the first was still held, and the 503 never seen.
const requestTimeout = 35 * time.Second

// settle waits until none of this run's orders is pending, or
// SettleTimeout passes, whatever the status polls meet (unless the
// service takes none for GiveUpAfter: gaveUp says so); then it reads
// every order's state. A zero timeout does not wait. The states it could
// not read are missing from the map, and err says why.
func (l *loader) settle(ctx context.Context, placed int) (states map[string]orderState, gaveUp, err error) {
	if l.o.SettleTimeout > 0 && placed > 0 {
		gaveUp = l.waitSettled(ctx, placed)
	}
	if ctx.Err() != nil {
		return nil, nil, ctx.Err()
	}
	states, err = l.list(ctx)
	return states, gaveUp, err
}

// waitSettled polls how many of this run's orders are pending until none
// is, ctx ends, SettleTimeout passes or the service has taken no request
// for GiveUpAfter (returned as the error). A poll is one request, cut at
// the deadline: the polling is its retry. Failed polls are counted and
// the last one's error kept, for the progress line and the report.
func (l *loader) waitSettled(ctx context.Context, placed int) error {
	wctx, cancel := context.WithTimeout(ctx, l.o.SettleTimeout)
	defer cancel()
	var pending atomic.Int64
	pending.Store(int64(placed))
	// The progress starts once there is something to wait for: a run
	// whose orders had all settled by the first look said "waiting for 0
	// orders to settle".
	stop := func() {}
	defer func() { stop() }()
	for waiting := false; ; waiting = true {
		n, err := l.pendingCount(wctx)
		switch {
		case err == nil:
			l.answered()
			pending.Store(int64(n))
			if n == 0 {
				return nil
			}
		case wctx.Err() == nil: // not the deadline's own cut
			l.pollFailed(err)
			l.unanswered(err)
			if err := l.down(); err != nil {
				return err
			}
		}
		if !waiting {
			stop = l.progress(func() string {
				line := "every order settled"
				switch n := pending.Load(); {
				case n == 1:
					line = "waiting for 1 order to settle"
				case n > 0:
					line = fmt.Sprintf("waiting for %d orders to settle", n)
				}
				if failed, last := l.polls(); failed > 0 {
					line += fmt.Sprintf(" (%s failed, the last: %v)", count(failed, "status poll", "status polls"), last)
				}
				return line
			}, func() float64 { return 1 - float64(pending.Load())/float64(max(placed, 1)) })
		}
		if !answer.Sleep(wctx, 250*time.Millisecond) {
			return nil
		}
	}
}

// pollFailed counts a status poll that got no answer.
func (l *loader) pollFailed(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failedPolls++
	l.lastPollErr = err
}

// polls returns how many status polls failed and the last one's error.
func (l *loader) polls() (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failedPolls, l.lastPollErr
}

// pendingCount returns how many of this run's orders are pending (counting
// at most one page of 100 exactly; more shows as 100), asking once.
func (l *loader) pendingCount(ctx context.Context) (int, error) {
	var page struct {
		Orders []orderState `json:"orders"`
	}
	path := "/v1/orders?limit=100&status=pending&customer_id=" + l.customer
	status, body, _, err := l.do(ctx, "GET", path, nil, "")
	if err != nil {
		return 0, err
	}
	if status != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %d %s", path, status, answer.Text(body))
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return 0, fmt.Errorf("GET %s: response is not JSON: %w", path, err)
	}
	return len(page.Orders), nil
}

// list reads all of this run's orders (pages of 100), retrying each page
// for readFor (GiveUpAfter if shorter). On an error it returns the states read so far with it.
func (l *loader) list(ctx context.Context) (map[string]orderState, error) {
	out := map[string]orderState{}
	cursor := ""
	for {
		path := "/v1/orders?limit=100&customer_id=" + l.customer
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		var page struct {
			Orders     []orderState `json:"orders"`
			NextCursor string       `json:"next_cursor"`
		}
		status, body, err := l.retry(ctx, min(readFor, l.o.GiveUpAfter), "GET", path, nil, "", &page, http.StatusOK)
		if err != nil {
			return out, err
		}
		if status != http.StatusOK {
			return out, fmt.Errorf("GET %s: %d %s", path, status, answer.Text(body))
		}
		for _, o := range page.Orders {
			out[o.ID] = o
		}
		if page.NextCursor == "" {
			return out, nil
		}
		cursor = page.NextCursor
	}
}

// progress redraws a line every 200 ms until the returned stop is called.
func (l *loader) progress(line func() string, fraction func() float64) (stop func()) {
	if l.o.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	draw := func(final bool) {
		if l.o.Terminal {
			const width = 30
			f := min(max(fraction(), 0), 1)
			n := int(f * width)
			fmt.Fprintf(l.o.Progress, "\r\033[K[%s%s] %3.0f%% %s", strings.Repeat("#", n), strings.Repeat(".", width-n), f*100, line())
			if final {
				fmt.Fprintln(l.o.Progress)
			}
		} else if final {
			fmt.Fprintln(l.o.Progress, line())
		}
	}
	wg.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-done:
				draw(true)
				return
			case <-t.C:
				if l.o.Terminal {
					draw(false)
				} else if time.Since(last) > 5*time.Second {
					fmt.Fprintln(l.o.Progress, line())
					last = time.Now()
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// percentiles returns p50 and p99 in milliseconds.
func percentiles(d []time.Duration) (p50, p99 float64) {
	s := slices.Clone(d)
	slices.Sort(s)
	at := func(p float64) float64 {
		return float64(s[int(p*float64(len(s)-1))].Microseconds()) / 1000
	}
	return at(0.50), at(0.99)
}

// count says "1 attempt", "3 attempts": n and the word for it.
func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
