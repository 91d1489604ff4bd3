package load

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopflow/shopflow/cmd/shop/seed"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// fakeOrders is the order service's REST surface as the load generator
// sees it, kept in memory: placements with Stripe-style Idempotency-Key
// replay, cancels, and the listing by customer and status. Orders settle
// settleAfter after they are placed, with the outcome their card token
// and items call for (or, with confirmAll, confirmed whatever they are).
// It lets these tests break the network on purpose; the real services
// are exercised by the e2e tests.
type fakeOrders struct {
	failFirst int  // answer the first failFirst attempts of each key with 503 (the order is stored: a lost response)
	refuse    bool // answer every placement with 422
	down      bool // answer every placement with 503, storing nothing
	// throttle answers the first attempts of each key with these
	// statuses, as a proxy in front of the service would, storing
	// nothing; a 429 says Retry-After: 1.
	throttle    []int
	confirmAll  bool
	settleAfter time.Duration
	slow        time.Duration     // answer each placement this late (a service waiting on its database)
	holdCancels bool              // cancel the order, then answer nothing until the client goes away
	cancelled   chan string       // if set, gets each order id a cancel reached
	unsold      []string          // SKUs left out of GET /v1/products
	currency    map[string]string // SKUs sold in another currency than the demo catalog's

	mu       sync.Mutex
	orders   []*fakeOrder
	byKey    map[string]*fakeOrder
	attempts map[string][]string // key -> the bodies of its attempts
	turned   map[string]int      // key -> the attempts throttle turned away
}

type fakeOrder struct {
	id, customer, outcome, name string
	cancelled                   bool
	placedAt                    time.Time
}

func newFakeOrders(t *testing.T, f *fakeOrders) *httptest.Server {
	t.Helper()
	f.byKey = map[string]*fakeOrder{}
	f.attempts = map[string][]string{}
	f.turned = map[string]int{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/orders", f.place)
	mux.HandleFunc("POST /v1/orders/{id}/cancel", f.cancel)
	mux.HandleFunc("GET /v1/orders", f.list)
	mux.HandleFunc("GET /v1/products", func(w http.ResponseWriter, _ *http.Request) {
		type product struct {
			SKU      string `json:"sku"`
			Currency string `json:"currency"`
			Active   bool   `json:"active"`
		}
		var page struct {
			Products []product `json:"products"`
		}
		for _, p := range seed.Catalog {
			if !slices.Contains(f.unsold, p.SKU) {
				page.Products = append(page.Products, product{p.SKU, cmp.Or(f.currency[p.SKU], p.Currency), true})
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(page) //nolint:errcheck // the client sees a short body
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The order service's router answers 404 to a path such as
		// "//v1/products"; ServeMux would redirect it.
		if strings.Contains(r.URL.Path, "//") {
			problem(w, http.StatusNotFound, "no route "+r.URL.Path)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func problem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"status":%d,"detail":%q}`, status, detail)
}

func (f *fakeOrders) place(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	key := r.Header.Get("Idempotency-Key")
	select {
	case <-time.After(f.slow):
	case <-r.Context().Done():
		return
	}
	if f.refuse {
		problem(w, http.StatusUnprocessableEntity, "items[0].sku: unknown SKU")
		return
	}
	f.mu.Lock()
	turned := f.turned[key]
	if turned < len(f.throttle) {
		f.turned[key]++
	}
	f.mu.Unlock()
	if turned < len(f.throttle) {
		if f.throttle[turned] == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		problem(w, f.throttle[turned], "slow down")
		return
	}
	if f.down {
		problem(w, http.StatusServiceUnavailable, "no healthy upstream")
		return
	}
	var req struct {
		CustomerID string `json:"customer_id"`
		Address    struct {
			Name string `json:"name"`
		} `json:"shipping_address"`
		Items []struct {
			SKU string `json:"sku"`
		} `json:"items"`
		Payment struct {
			CardToken string `json:"card_token"`
		} `json:"payment"`
	}
	if key == "" || json.Unmarshal(body, &req) != nil {
		problem(w, http.StatusBadRequest, "want an Idempotency-Key and a JSON body")
		return
	}
	f.mu.Lock()
	f.attempts[key] = append(f.attempts[key], string(body))
	attempt := len(f.attempts[key])
	o := f.byKey[key]
	if o == nil {
		o = &fakeOrder{id: fmt.Sprintf("order-%04d", len(f.orders)), customer: req.CustomerID, outcome: "confirmed",
			name: req.Address.Name, placedAt: time.Now()}
		if req.Payment.CardToken == "tok_declined" || slices.ContainsFunc(req.Items, func(it struct {
			SKU string `json:"sku"`
		}) bool {
			return it.SKU == seed.OutOfStockSKU
		}) {
			o.outcome = "cancelled"
		}
		if f.confirmAll {
			o.outcome = "confirmed"
		}
		f.orders = append(f.orders, o)
		f.byKey[key] = o
	}
	first := f.attempts[key][0]
	f.mu.Unlock()
	if string(body) != first {
		problem(w, http.StatusUnprocessableEntity, "Idempotency-Key reused with a different body")
		return
	}
	if attempt <= f.failFirst {
		problem(w, http.StatusServiceUnavailable, "response lost")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"id":%q,"status":"pending"}`, o.id)
}

func (f *fakeOrders) cancel(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	for _, o := range f.orders {
		if o.id == r.PathValue("id") {
			if f.status(o) != "pending" {
				f.mu.Unlock()
				problem(w, http.StatusConflict, "order is settled")
				return
			}
			o.cancelled = true
			f.mu.Unlock()
			if f.cancelled != nil {
				f.cancelled <- o.id
			}
			if f.holdCancels {
				<-r.Context().Done()
				return
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":%q,"status":"cancelled"}`, o.id)
			return
		}
	}
	f.mu.Unlock()
	problem(w, http.StatusNotFound, "no such order")
}

func (f *fakeOrders) status(o *fakeOrder) string {
	switch {
	case o.cancelled:
		return "cancelled"
	case time.Since(o.placedAt) < f.settleAfter:
		return "pending"
	}
	return o.outcome
}

func (f *fakeOrders) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	from, _ := strconv.Atoi(q.Get("cursor"))
	type address struct {
		Name string `json:"name"`
	}
	type state struct {
		ID              string     `json:"id"`
		Status          string     `json:"status"`
		PlacedAt        time.Time  `json:"placed_at"`
		ConfirmedAt     *time.Time `json:"confirmed_at,omitempty"`
		CancelledAt     *time.Time `json:"cancelled_at,omitempty"`
		ShippingAddress address    `json:"shipping_address"`
	}
	var page struct {
		Orders     []state `json:"orders"`
		NextCursor string  `json:"next_cursor,omitempty"`
	}
	f.mu.Lock()
	var match []state
	for _, o := range f.orders {
		s := state{ID: o.id, Status: f.status(o), PlacedAt: o.placedAt, ShippingAddress: address{o.name}}
		at := o.placedAt.Add(f.settleAfter)
		switch s.Status {
		case "confirmed":
			s.ConfirmedAt = &at
		case "cancelled":
			s.CancelledAt = &at
		}
		if o.customer == q.Get("customer_id") && (q.Get("status") == "" || q.Get("status") == s.Status) {
			match = append(match, s)
		}
	}
	f.mu.Unlock()
	page.Orders = match[min(from, len(match)):min(from+limit, len(match))]
	if from+limit < len(match) {
		page.NextCursor = strconv.Itoa(from + limit)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(page) //nolint:errcheck // the client sees a short body
}

func run(t *testing.T, o Options) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return rep
}

// A placement whose response is lost is retried with the same
// Idempotency-Key and body, so the service replays the order it stored
// instead of placing a second one.
func TestRunRetriesWithTheSameIdempotencyKey(t *testing.T) {
	// Orders settle 2 s after they are placed: the customer cancels
	// (sent after the placement's two retries) arrive while they are
	// pending, however slow the machine.
	f := &fakeOrders{failFirst: 2, settleAfter: 2 * time.Second}
	srv := newFakeOrders(t, f)
	const n = 200 // more than one page of the listing
	rep := run(t, Options{OrderURL: srv.URL, Orders: n, Concurrency: 32, RetryFor: 10 * time.Second, SettleTimeout: time.Minute})

	if rep.Accepted != n || rep.Failed != 0 || rep.Retries != 2*n {
		t.Errorf("accepted %d, failed %d, retries %d; want %d, 0, %d (errors %q)", rep.Accepted, rep.Failed, rep.Retries, n, 2*n, rep.Errors)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.orders) != n {
		t.Errorf("the service stored %d orders for %d placements", len(f.orders), n)
	}
	for key, bodies := range f.attempts {
		if len(bodies) != 3 {
			t.Errorf("key %s: %d attempts, want 3", key, len(bodies))
		}
	}
	if rep.Settled != n || rep.Pending != 0 || rep.Unexpected != 0 {
		t.Errorf("settled %d, pending %d, unexpected %d; want %d, 0, 0 (errors %q)", rep.Settled, rep.Pending, rep.Unexpected, n, rep.Errors)
	}
	// The mix is dealt exactly: 70/10/10/5/5 of 200.
	want := map[Kind]int{Approve: 140, Decline: 20, OutOfStock: 20, Flaky: 10, Cancel: 10}
	for k, w := range want {
		if kr := rep.ByKind[k]; kr.Placed != w {
			t.Errorf("%s: placed %d, want %d", k, kr.Placed, w)
		}
	}
	if c := rep.Cancelled; c != 50 {
		t.Errorf("cancelled %d, want 50 (declines, out of stock, customer cancels)", c)
	}
	// Placement latency includes the two retries' backoff (50 + 100 ms);
	// end-to-end is the service's own placed-to-settled time.
	if rep.P50ms < 150 || rep.P99ms < rep.P50ms {
		t.Errorf("placement p50 %.1f ms, p99 %.1f ms: want at least the 150 ms of backoff", rep.P50ms, rep.P99ms)
	}
	if rep.E2EP50ms != 2000 || rep.E2ESample != n || rep.AcceptedPerS <= 0 || rep.SettledPerS <= 0 {
		t.Errorf("e2e p50 %.1f ms (want 2000) of %d (want %d), accepted %.1f/s, settled %.1f/s", rep.E2EP50ms, rep.E2ESample, n, rep.AcceptedPerS, rep.SettledPerS)
	}
}

// An outcome other than the one the order's kind calls for is reported.
func TestRunReportsUnexpectedOutcomes(t *testing.T) {
	f := &fakeOrders{confirmAll: true}
	srv := newFakeOrders(t, f)
	rep := run(t, Options{OrderURL: srv.URL, Orders: 20, Concurrency: 4, Mix: Mix{Approve: 1, Decline: 1}})
	if rep.Unexpected != 10 || rep.ByKind[Decline].Unexpected != 10 || rep.ByKind[Approve].Unexpected != 0 {
		t.Errorf("unexpected %d (decline %d, approve %d), want 10 declines confirmed", rep.Unexpected,
			rep.ByKind[Decline].Unexpected, rep.ByKind[Approve].Unexpected)
	}
	if len(rep.Errors) == 0 || !strings.Contains(rep.Errors[0], "confirmed, expected cancelled") {
		t.Errorf("errors %q: want the unexpected outcome named", rep.Errors)
	}
}

// A base URL with a trailing slash is the same URL: it used to make every
// path "//v1/...", which the service answers with 404.
func TestRunTrimsTheBaseURL(t *testing.T) {
	srv := newFakeOrders(t, &fakeOrders{})
	rep := run(t, Options{OrderURL: srv.URL + "//", Orders: 4, Concurrency: 2})
	if rep.Accepted != 4 || rep.Settled != 4 {
		t.Errorf("accepted %d, settled %d; want 4, 4 (errors %q)", rep.Accepted, rep.Settled, rep.Errors)
	}
}

// A zero SettleTimeout does not wait: the orders are looked at once and
// those not settled yet reported pending (zero used to mean 2 minutes).
func TestRunSettleTimeoutZeroLooksOnce(t *testing.T) {
	srv := newFakeOrders(t, &fakeOrders{settleAfter: 10 * time.Second})
	began := time.Now()
	rep := run(t, Options{OrderURL: srv.URL, Orders: 4, Concurrency: 2, Mix: Mix{Approve: 1}})
	if rep.Accepted != 4 || rep.Pending != 4 || rep.Settled != 0 {
		t.Errorf("accepted %d, pending %d, settled %d; want 4, 4, 0 (errors %q)", rep.Accepted, rep.Pending, rep.Settled, rep.Errors)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("took %s: want no wait", took)
	}
}

// With a rate, the first order goes at once and the rest at the pace:
// the first used to wait 1/rate too (--rate 0.001 sat silent 1000 s).
func TestRunPlacesTheFirstOrderAtOnce(t *testing.T) {
	srv := newFakeOrders(t, &fakeOrders{})
	began := time.Now()
	rep := run(t, Options{OrderURL: srv.URL, Orders: 1, Concurrency: 1, Rate: 0.1, Mix: Mix{Approve: 1}})
	if took := time.Since(began); rep.Accepted != 1 || took > 5*time.Second {
		t.Errorf("one order at 0.1/s: accepted %d in %s, want it placed at once", rep.Accepted, took)
	}
	began = time.Now()
	run(t, Options{OrderURL: srv.URL, Orders: 3, Concurrency: 3, Rate: 5, Mix: Mix{Approve: 1}})
	if took := time.Since(began); took < 400*time.Millisecond {
		t.Errorf("three orders at 5/s took %s, want at least the two gaps of 200 ms", took)
	}
}

// A refusal (4xx other than 409) is final: retrying the same request
// cannot change it.
func TestRunDoesNotRetryRefusals(t *testing.T) {
	f := &fakeOrders{refuse: true}
	srv := newFakeOrders(t, f)
	rep := run(t, Options{OrderURL: srv.URL, Orders: 5, Concurrency: 2, RetryFor: 2 * time.Second})
	if rep.Accepted != 0 || rep.Failed != 5 || rep.Retries != 0 {
		t.Errorf("accepted %d, failed %d, retries %d; want 0, 5, 0", rep.Accepted, rep.Failed, rep.Retries)
	}
	if len(rep.Errors) == 0 || !strings.Contains(rep.Errors[0], "422") {
		t.Errorf("errors %q: want the 422 named", rep.Errors)
	}
}

// A 429 or 408 (a proxy's, say) is retried with the same Idempotency-Key,
// after the Retry-After the answer asks for: they were taken for final
// refusals ("accepted 177, failed 23, retries 0" behind a proxy answering
// 10% of placements with 429).
func TestRunRetriesThrottledPlacements(t *testing.T) {
	f := &fakeOrders{throttle: []int{http.StatusTooManyRequests, http.StatusRequestTimeout}}
	srv := newFakeOrders(t, f)
	const n = 4
	rep := run(t, Options{OrderURL: srv.URL, Orders: n, Concurrency: n, RetryFor: 10 * time.Second, Mix: Mix{Approve: 1}})
	if rep.Accepted != n || rep.Failed != 0 || rep.Retries != 2*n {
		t.Errorf("accepted %d, failed %d, retries %d; want %d, 0, %d (errors %q)", rep.Accepted, rep.Failed, rep.Retries, n, 2*n, rep.Errors)
	}
	// Retry-After: 1 after the 429, then the 50 ms backoff after the 408.
	if rep.P50ms < 1000 || rep.P50ms > 5000 {
		t.Errorf("placement p50 %.1f ms: want the 1 s the 429 asked for, and not much more", rep.P50ms)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.turned) != n || len(f.orders) != n {
		t.Errorf("%d keys turned away, %d orders stored; want %d of each (one key per order, kept across its retries)", len(f.turned), len(f.orders), n)
	}
}

// A placement the service answers late, as it does while its database is
// slow or locked (up to its 25 s request deadline, then a 503 naming the
// key), gets its answer: a client that gave up after 10 s sent it again
// while the first was still held, and never saw the 503.
func TestRunWaitsForASlowAnswer(t *testing.T) {
	f := &fakeOrders{slow: 11 * time.Second}
	srv := newFakeOrders(t, f)
	rep := run(t, Options{OrderURL: srv.URL, Orders: 1, Concurrency: 1, Mix: Mix{Approve: 1}})
	if rep.Accepted != 1 || rep.Retries != 0 {
		t.Errorf("accepted %d, retries %d; want 1, 0 (errors %q)", rep.Accepted, rep.Retries, rep.Errors)
	}
}

// A service that keeps failing is retried until RetryFor, then the order
// counts as failed with the last answer.
func TestRunGivesUpAfterRetryFor(t *testing.T) {
	f := &fakeOrders{down: true}
	srv := newFakeOrders(t, f)
	rep := run(t, Options{OrderURL: srv.URL, Orders: 3, Concurrency: 3, RetryFor: 400 * time.Millisecond})
	if rep.Accepted != 0 || rep.Failed != 3 || rep.Retries == 0 || rep.GaveUp != "" {
		t.Errorf("accepted %d, failed %d, retries %d, gave up %q; want 0, 3, some, not", rep.Accepted, rep.Failed, rep.Retries, rep.GaveUp)
	}
	if len(rep.Errors) == 0 || !strings.Contains(rep.Errors[0], "gave up after") || !strings.Contains(rep.Errors[0], "503") {
		t.Errorf("errors %q: want the give-up and the last status", rep.Errors)
	}
}

// A placement given up on whose order the service stored all the same
// (every answer lost) is found by the listing of the run's orders and
// counted accepted, not failed: it was reported "failed (gave up after N
// attempts)" while the order went on to settle.
func TestRunCountsLostAnswersAsAccepted(t *testing.T) {
	f := &fakeOrders{failFirst: 1 << 30}
	srv := newFakeOrders(t, f)
	rep := run(t, Options{OrderURL: srv.URL, Orders: 4, Concurrency: 4, RetryFor: 400 * time.Millisecond, Mix: Mix{Approve: 1, Decline: 1},
		SettleTimeout: time.Minute})
	if rep.Accepted != 4 || rep.Recovered != 4 || rep.Failed != 0 || rep.NotPlaced != 0 || rep.Retries == 0 {
		t.Errorf("accepted %d, recovered %d, failed %d, not placed %d, retries %d; want 4, 4, 0, 0, some (errors %q)",
			rep.Accepted, rep.Recovered, rep.Failed, rep.NotPlaced, rep.Retries, rep.Errors)
	}
	if rep.Settled != 4 || rep.Unexpected != 0 || rep.ByKind[Decline].Placed != 2 || rep.ByKind[Decline].Cancelled != 2 || len(rep.IDs[Approve]) != 2 {
		t.Errorf("settled %d, unexpected %d, declines placed %d and cancelled %d, approvals %q: want the four followed to their end by kind",
			rep.Settled, rep.Unexpected, rep.ByKind[Decline].Placed, rep.ByKind[Decline].Cancelled, rep.IDs[Approve])
	}
	if len(rep.Errors) != 1 || !strings.Contains(rep.Errors[0], "the listing has 4 orders whose placement got no answer") {
		t.Errorf("errors %q: want the recovered orders said, and no placement's failure", rep.Errors)
	}
	b, err := json.Marshal(rep)
	if err != nil || !strings.Contains(string(b), `"p50_ms":null`) || !strings.Contains(string(b), `"recovered":4`) {
		t.Errorf("JSON %s (%v): want no placement latency (no placement was answered), recovered 4", b, err)
	}
}

// An order service killed mid-load, and not restarted, stops the placing
// once it has taken no request for GiveUpAfter; the report says so and
// covers what was placed, and the progress line shows the last error.
// Each remaining order used to retry for RetryFor (90 s): 200 orders at
// concurrency 4 would have taken some 40 minutes, the error never shown.
func TestRunGivesUpOnAServiceThatIsGone(t *testing.T) {
	f := &fakeOrders{}
	srv := newFakeOrders(t, f)
	go func() { // the service dies after five orders
		for {
			f.mu.Lock()
			placed := len(f.orders)
			f.mu.Unlock()
			if placed >= 5 {
				srv.Close()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	var progress testenv.SyncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	began := time.Now()
	const n, giveUp = 200, 2 * time.Second
	rep, err := Run(ctx, Options{OrderURL: srv.URL, Orders: n, Concurrency: 4, Rate: 50, Mix: Mix{Approve: 1},
		GiveUpAfter: giveUp, SettleTimeout: time.Minute, Progress: &progress})
	took := time.Since(began)
	if err != nil || rep == nil {
		t.Fatalf("Run: %v, %v; want the report and no error", rep, err)
	}
	if rep.Accepted < 5 || rep.Accepted+rep.Failed+rep.NotPlaced != n || rep.NotPlaced < n/2 {
		t.Errorf("accepted %d, failed %d, not placed %d of %d: want 5 or more accepted, most not placed", rep.Accepted, rep.Failed, rep.NotPlaced, n)
	}
	if !strings.Contains(rep.GaveUp, "took no request for 2s") || !strings.Contains(rep.GaveUp, "connection refused") {
		t.Errorf("gave up %q: want the reason and the last error", rep.GaveUp)
	}
	if len(rep.Errors) == 0 || !strings.HasPrefix(rep.Errors[0], "placing stopped with ") {
		t.Errorf("errors %q: want the stop said first", rep.Errors)
	}
	// Placing stops after GiveUpAfter, waiting for the settling at the
	// first failed poll (the service has been gone that long already),
	// and the listing is retried for GiveUpAfter.
	if max := 3*giveUp + 5*time.Second; took > max {
		t.Errorf("Run took %s, want at most %s", took, max)
	}
	if p := progress.String(); !strings.Contains(p, "; last error ") || !strings.Contains(p, "connection refused") {
		t.Errorf("progress %q: want the last error shown", p)
	}
}

// An order service that stops answering after the placing costs neither
// the settle timeout nor the report: the wait ends at SettleTimeout, the
// failed status polls are counted and said, and the orders whose state
// could not be read are reported unknown. Each poll and the final listing
// used to retry for RetryFor (90 s in shop load) and Run ended with the
// last one's error and no report (3 min for a --settle-timeout of 10 s).
func TestRunReportsWhenTheServiceDiesAfterPlacing(t *testing.T) {
	f := &fakeOrders{settleAfter: time.Hour}
	srv := newFakeOrders(t, f)
	const n = 8
	go func() { // the service dies once every order is in
		for {
			f.mu.Lock()
			placed := len(f.orders)
			f.mu.Unlock()
			if placed == n {
				srv.Close() // waits for the placements' answers
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	var progress testenv.SyncBuffer
	began := time.Now()
	const settle = 2 * time.Second
	rep, err := Run(context.Background(), Options{OrderURL: srv.URL, Orders: n, Concurrency: 4, Mix: Mix{Approve: 1},
		RetryFor: 5 * time.Second, SettleTimeout: settle, Progress: &progress})
	took := time.Since(began)
	if err != nil || rep == nil {
		t.Fatalf("Run: %v, %v; want the report and no error", rep, err)
	}
	if rep.Accepted != n || rep.Unknown != n || rep.ByKind[Approve].Unknown != n || rep.Pending != 0 || rep.Settled != 0 {
		t.Errorf("accepted %d, unknown %d (approve %d), pending %d, settled %d; want %d, %d, %d, 0, 0",
			rep.Accepted, rep.Unknown, rep.ByKind[Approve].Unknown, rep.Pending, rep.Settled, n, n, n)
	}
	if rep.FailedPolls == 0 || len(rep.Errors) < 2 || !strings.Contains(rep.Errors[0], "status polls failed") ||
		!strings.Contains(rep.Errors[0], "connection refused") || !strings.Contains(rep.Errors[1], "could not all be read") {
		t.Errorf("failed polls %d, errors %q: want the failed polls counted, the last one's error and the listing's said", rep.FailedPolls, rep.Errors)
	}
	if max := settle + readFor + 5*time.Second; took > max {
		t.Errorf("Run took %s, want at most the settle timeout and one listing's retries (%s)", took, max)
	}
	if p := progress.String(); !strings.Contains(p, "status polls failed, the last: ") || !strings.Contains(p, "connection refused") {
		t.Errorf("progress %q: want the failed polls and the last error", p)
	}
}

// On a terminal the progress is a bar redrawn in place, ending at 100%.
func TestRunDrawsAProgressBar(t *testing.T) {
	srv := newFakeOrders(t, &fakeOrders{})
	var out bytes.Buffer
	run(t, Options{OrderURL: srv.URL, Orders: 10, Concurrency: 2, Progress: &out, Terminal: true})
	s := out.String()
	if !strings.Contains(s, "\r\033[K[##############################] 100% placed 10/10") {
		t.Errorf("progress output %q: want a full bar for the placements", s)
	}
}

// The settling progress shows only while orders are pending: every run
// used to end with "waiting for 0 orders to settle", however quickly its
// orders settled.
func TestRunSettleProgressOnlyWhilePending(t *testing.T) {
	srv := newFakeOrders(t, &fakeOrders{})
	var out bytes.Buffer
	run(t, Options{OrderURL: srv.URL, Orders: 4, Concurrency: 2, SettleTimeout: time.Minute, Progress: &out})
	if s := out.String(); strings.Contains(s, "settle") {
		t.Errorf("orders settled at once, progress %q: want no settling line", s)
	}

	srv = newFakeOrders(t, &fakeOrders{settleAfter: time.Second})
	out.Reset()
	run(t, Options{OrderURL: srv.URL, Orders: 4, Concurrency: 2, SettleTimeout: time.Minute, Progress: &out, Terminal: true})
	s := out.String()
	if !strings.Contains(s, "waiting for 4 orders to settle") || !strings.HasSuffix(s, "% every order settled\n") ||
		strings.Contains(s, "waiting for 0") {
		t.Errorf("orders settling in 1 s, progress %q: want the count while waiting, ending with every order settled", s)
	}
}

// Interrupted (ctx ends), a load stops placing and reports what it placed
// and what of that settled; it used to end with the interruption as its
// error ("gave up after 1 attempts: ... context canceled") and no report.
func TestRunStopsWhenInterrupted(t *testing.T) {
	for _, tc := range []struct {
		name        string
		settleAfter time.Duration
		orders      int
	}{
		{"while placing", 0, 1000},
		{"while waiting", time.Hour, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeOrders{settleAfter: tc.settleAfter}
			srv := newFakeOrders(t, f)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() { // Ctrl-C once five orders are in
				for {
					f.mu.Lock()
					n := len(f.orders)
					f.mu.Unlock()
					if n >= 5 {
						time.Sleep(100 * time.Millisecond)
						cancel()
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
			}()
			var progress bytes.Buffer
			began := time.Now()
			rep, err := Run(ctx, Options{OrderURL: srv.URL, Orders: tc.orders, Concurrency: 2, Rate: 50, Mix: Mix{Approve: 1},
				SettleTimeout: time.Hour, Progress: &progress})
			if !errors.Is(err, ErrInterrupted) || !errors.Is(err, context.Canceled) || rep == nil {
				t.Fatalf("Run: %v, want the report and an error saying it was interrupted", err)
			}
			if took := time.Since(began); took > 20*time.Second {
				t.Errorf("Run returned %s after starting, want soon after the interruption", took)
			}
			// Five orders are in the service; the answers of up to two
			// (the concurrency) may be cut off in flight on a slow machine.
			if !rep.Interrupted || rep.Accepted < 3 || rep.Failed != 0 || rep.NotPlaced != tc.orders-rep.Accepted {
				t.Errorf("interrupted %v, accepted %d, failed %d, not placed %d of %d: want interrupted, 3 or more accepted, none failed, the rest not placed (errors %q)",
					rep.Interrupted, rep.Accepted, rep.Failed, rep.NotPlaced, tc.orders, rep.Errors)
			}
			// What settled is read after the interruption.
			if tc.settleAfter == 0 && (rep.Settled != rep.Accepted || rep.Pending != 0) {
				t.Errorf("settled %d, pending %d of %d accepted: want all settled", rep.Settled, rep.Pending, rep.Accepted)
			}
			if tc.settleAfter > 0 && (rep.Pending != rep.Accepted || rep.Settled != 0) {
				t.Errorf("settled %d, pending %d of %d accepted: want all pending", rep.Settled, rep.Pending, rep.Accepted)
			}
			if len(rep.Errors) != 0 {
				t.Errorf("errors %q: the interruption is no placement's failure", rep.Errors)
			}
			if !strings.Contains(progress.String(), "interrupted: placing stopped") {
				t.Errorf("progress %q: want the interruption said", progress.String())
			}
		})
	}
}

// TestRunInterruptedWhileCancelling: a load interrupted while a cancel is
// on its way (the service has cancelled the order; its answer is cut off)
// expects either end for that order. It used to take the cancel for never
// sent and report the order "(cancel) cancelled, expected confirmed
// (reason "cancelled by customer")", an unexpected outcome, as a trial's
// Ctrl-C and SIGTERM did for 1 to 15 orders.
func TestRunInterruptedWhileCancelling(t *testing.T) {
	f := &fakeOrders{settleAfter: time.Hour, holdCancels: true, cancelled: make(chan string, 1)}
	srv := newFakeOrders(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // Ctrl-C once the first cancel reached the service
		<-f.cancelled
		cancel()
	}()
	rep, err := Run(ctx, Options{OrderURL: srv.URL, Orders: 5, Concurrency: 1, Mix: Mix{Cancel: 1}, SettleTimeout: time.Hour})
	if !errors.Is(err, ErrInterrupted) || rep == nil {
		t.Fatalf("Run: %v, want the report and an error saying it was interrupted", err)
	}
	if rep.Accepted != 1 || rep.Cancelled != 1 || rep.Unexpected != 0 || rep.Failed != 0 || len(rep.Errors) != 0 {
		t.Errorf("accepted %d, cancelled %d, unexpected %d, failed %d, errors %q: want the one order cancelled, as expected",
			rep.Accepted, rep.Cancelled, rep.Unexpected, rep.Failed, rep.Errors)
	}
}

func TestRunRejectsBadOptions(t *testing.T) {
	for _, o := range []Options{
		{Orders: 1, Concurrency: 1},
		{OrderURL: "http://x", Orders: 0, Concurrency: 1},
		{OrderURL: "http://x", Orders: 1, Concurrency: 0},
		{OrderURL: "http://x", Orders: 1, Concurrency: 1, Rate: -1},
		{OrderURL: "http://x", Orders: 1, Concurrency: 1, Rate: math.NaN()},
		{OrderURL: "http://x", Orders: 1, Concurrency: 1, Rate: math.Inf(1)},
		{OrderURL: "http://x", Orders: 1, Concurrency: 1, Rate: 2e9},
		{OrderURL: "http://x", Orders: 1, Concurrency: 1, SettleTimeout: -time.Second},
	} {
		if _, err := Run(context.Background(), o); err == nil {
			t.Errorf("Run(%+v): no error", o)
		}
	}
}

func TestParseMix(t *testing.T) {
	m, err := ParseMix("approve=3, oos=1,cancel=0")
	if err != nil || m[Approve] != 3 || m[OutOfStock] != 1 || m[Cancel] != 0 || len(m) != 3 {
		t.Errorf("ParseMix: %v, %v", m, err)
	}
	for _, bad := range []string{"", "approve", "approve=x", "approve=-1", "refund=1", "approve=0,decline=0",
		"approve=50,approve=50", "oos=1,out-of-stock=1"} {
		if _, err := ParseMix(bad); err == nil {
			t.Errorf("ParseMix(%q): no error", bad)
		}
	}
}

// The JSON names are the contract of `shop load --json`.
func TestReportJSONNames(t *testing.T) {
	b, err := json.Marshal(&Report{})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"orders", "accepted_per_s", "settled_per_s", "p50_ms", "p99_ms", "e2e_p50_ms", "e2e_p99_ms", "e2e_sample"} {
		if _, ok := got[k]; !ok {
			t.Errorf("report JSON lacks %q: %s", k, b)
		}
	}
}

// A latency without a sample is null in JSON, not 0 ms: placement's when
// no order was accepted, end to end's when none settled.
func TestReportJSONLatenciesWithoutSamples(t *testing.T) {
	for _, tc := range []struct {
		rep  Report
		want string
	}{
		{Report{}, `"p50_ms":null,"p99_ms":null,"e2e_p50_ms":null,"e2e_p99_ms":null`},
		{Report{Accepted: 2, P50ms: 1.5, P99ms: 2}, `"p50_ms":1.5,"p99_ms":2,"e2e_p50_ms":null,"e2e_p99_ms":null`},
		{Report{Accepted: 2, Settled: 1, P50ms: 1.5, P99ms: 2, E2EP50ms: 30, E2EP99ms: 40}, `"p50_ms":1.5,"p99_ms":2,"e2e_p50_ms":30,"e2e_p99_ms":40`},
	} {
		b, err := json.Marshal(&tc.rep)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), tc.want) || strings.Count(string(b), `"p50_ms"`) != 1 {
			t.Errorf("accepted %d, settled %d: %s\nwant %s", tc.rep.Accepted, tc.rep.Settled, b, tc.want)
		}
	}
}

func TestPercentiles(t *testing.T) {
	d := make([]time.Duration, 100)
	for i := range d {
		d[len(d)-1-i] = time.Duration(i+1) * time.Millisecond // 100..1 ms, unsorted
	}
	if p50, p99 := percentiles(d); p50 != 50 || p99 != 99 {
		t.Errorf("percentiles = %v, %v; want 50, 99", p50, p99)
	}
}

// A suite that is not running, or not seeded, is reported before the
// load starts, not after every placement has been retried.
func TestRunChecksTheServiceFirst(t *testing.T) {
	closed := "http://" + testenv.FreeAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	began := time.Now()
	_, err := Run(ctx, Options{OrderURL: closed, Orders: 5, Concurrency: 1})
	if err == nil || !strings.Contains(err.Error(), "does not answer") || !strings.Contains(err.Error(), "make run") {
		t.Errorf("no service: %v, want it named with a hint", err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("no service: reported after %s, want at once", took)
	}

	f := &fakeOrders{unsold: []string{seed.OutOfStockSKU}}
	srv := newFakeOrders(t, f)
	_, err = Run(ctx, Options{OrderURL: srv.URL, Orders: 5, Concurrency: 1})
	if err == nil || !strings.Contains(err.Error(), "does not sell "+seed.OutOfStockSKU) || !strings.Contains(err.Error(), "shop seed") {
		t.Errorf("catalog without %s: %v, want it named with the hint", seed.OutOfStockSKU, err)
	}
	f.mu.Lock()
	tried := len(f.attempts)
	f.mu.Unlock()
	if tried != 0 {
		t.Errorf("%d placements tried against an unseeded catalog", tried)
	}
	// A mix without out-of-stock orders does not need that SKU.
	rep := run(t, Options{OrderURL: srv.URL, Orders: 5, Concurrency: 1, Mix: Mix{Approve: 1}})
	if rep.Accepted != 5 {
		t.Errorf("approvals only, without %s in the catalog: %d of 5 accepted (%v)", seed.OutOfStockSKU, rep.Accepted, rep.Errors)
	}
	// A product an admin moved to another currency cannot be ordered in
	// the load's: said before the load, not as 400s during it.
	eur := &fakeOrders{currency: map[string]string{seed.Catalog[2].SKU: "EUR"}}
	_, err = Run(ctx, Options{OrderURL: newFakeOrders(t, eur).URL, Orders: 5, Concurrency: 1})
	if err == nil || !strings.Contains(err.Error(), seed.Catalog[2].SKU+" (EUR)") {
		t.Errorf("catalog with %s in EUR: %v, want it named", seed.Catalog[2].SKU, err)
	}
}
