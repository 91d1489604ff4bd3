package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/shopflow/shopflow/cmd/shop/load"
	"github.com/shopflow/shopflow/cmd/shop/seed"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// TestLoadAndSeedRefuseArguments: a word that is not a flag is an error
// (exit status 2) naming it, as shop dev, check and dlq say. Flag parsing
// stops at it, so `shop load extra --order URL` ran against the default
// URL, the --order after it ignored.
func TestLoadAndSeedRefuseArguments(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"load", "extra", "--order", "http://127.0.0.1:1"},
		{"load", "--orders", "1", "extra"},
		{"seed", "extra", "--order", "http://127.0.0.1:1", "--inventory", "http://127.0.0.1:1"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, &out, &errOut)
		var fail *failure
		if err == nil || errors.As(err, &fail) {
			t.Errorf("shop %s: %v, want an error (exit 2)", strings.Join(args, " "), err)
			continue
		}
		if want := args[0] + `: unexpected argument "extra"`; err.Error() != want {
			t.Errorf("shop %s: %v, want %q", strings.Join(args, " "), err, want)
		}
	}
}

// A service address that is no URL is refused naming its flag, before
// anything is sent (seed said `Put "notaurl/v1/products/SKU-0001":
// unsupported protocol scheme ""`).
func TestLoadAndSeedCheckServiceURLs(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"load", "--order", "localhost:8080"}, `load: --order: "localhost:8080" is not a base URL: want http:// or https://, a host, and no query or fragment (like http://127.0.0.1:8080)`},
		// A query would end up before the paths put after the base.
		{[]string{"load", "--order", "http://127.0.0.1:8080/?x=1"}, `load: --order: "http://127.0.0.1:8080/?x=1" is not a base URL: want http:// or https://, a host, and no query or fragment (like http://127.0.0.1:8080)`},
		{[]string{"seed", "--order", "notaurl", "--inventory", "ftp://x"},
			"seed: --order: \"notaurl\" is not a base URL: want http:// or https://, a host, and no query or fragment (like http://127.0.0.1:8080)\n--inventory: \"ftp://x\" is not a base URL: want http:// or https://, a host, and no query or fragment (like http://127.0.0.1:8080)"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), c.args, &out, &errOut)
		var fail *failure
		if err == nil || errors.As(err, &fail) || err.Error() != c.want {
			t.Errorf("shop %s: %v, want an error (exit 2) %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}

// TestLoadRefusesANegativeSettleTimeout: --settle-timeout below 0 is an
// error naming the flag (it silently meant 2 minutes, as 0 did).
func TestLoadRefusesANegativeSettleTimeout(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"load", "--settle-timeout", "-1s", "--order", "http://127.0.0.1:1"}, &out, &errOut)
	var fail *failure
	if err == nil || errors.As(err, &fail) || !strings.Contains(err.Error(), "--settle-timeout -1s: must not be negative") {
		t.Errorf("shop load --settle-timeout -1s: %v, want an error (exit 2) naming the flag", err)
	}
}

// TestLoadRefusesABadRate: a --rate that is not a number from 0 to
// load.MaxRate is an error (exit 2) naming the flag and the range. 2e9
// and Inf made the pacing ticker panic ("non-positive interval for
// NewTicker"), and NaN was taken for no limit.
func TestLoadRefusesABadRate(t *testing.T) {
	t.Parallel()
	for _, rate := range []string{"2e9", "Inf", "-Inf", "NaN", "-1", "1000001"} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), []string{"load", "--rate", rate, "--order", "http://127.0.0.1:1"}, &out, &errOut)
		var fail *failure
		if err == nil || errors.As(err, &fail) || !strings.HasPrefix(err.Error(), "load: --rate ") ||
			!strings.Contains(err.Error(), "from 0 (no limit) to 1000000") {
			t.Errorf("shop load --rate %s: %v, want an error (exit 2) naming --rate and its range", rate, err)
		}
	}
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"load", "--rate", "1e6", "--order", "http://127.0.0.1:1"}, &out, &errOut); err == nil ||
		strings.Contains(err.Error(), "--rate") {
		t.Errorf("shop load --rate 1e6: %v, want it accepted (the error is the service's)", err)
	}
}

// TestLoadRefusesANonPositiveGiveUpAfter: --give-up-after must be
// positive, said naming the flag (exit 2).
func TestLoadRefusesANonPositiveGiveUpAfter(t *testing.T) {
	t.Parallel()
	for _, d := range []string{"0", "-1s"} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), []string{"load", "--give-up-after", d, "--order", "http://127.0.0.1:1"}, &out, &errOut)
		var fail *failure
		if err == nil || errors.As(err, &fail) || !strings.Contains(err.Error(), "--give-up-after "+strings.TrimSuffix(d, "0")) ||
			!strings.Contains(err.Error(), "must be positive") {
			t.Errorf("shop load --give-up-after %s: %v, want an error (exit 2) naming the flag", d, err)
		}
	}
}

// TestPrintReportGaveUp: a load that gave up on the service says why at
// the top, with the orders not placed; orders found stored after their
// placement got no answer are said beside the accepted count.
func TestPrintReportGaveUp(t *testing.T) {
	t.Parallel()
	rep := &load.Report{RunID: "r1", Orders: 200, Accepted: 7, Recovered: 2, Failed: 3, NotPlaced: 190, DurationS: 33,
		GaveUp: "the order service took no request for 30s, the last error: connection refused", ByKind: map[load.Kind]*load.KindReport{}}
	for _, k := range load.Kinds {
		rep.ByKind[k] = &load.KindReport{}
	}
	var out bytes.Buffer
	printReport(&out, rep)
	for _, want := range []string{"run r1: gave up after 33.0s: the order service took no request for 30s, the last error: connection refused\n",
		"  accepted    7 (0.0/s, 2 of them found stored after their placement got no answer), failed 3, not placed 190, retries 0\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	rep.Accepted = rep.Recovered
	out.Reset()
	printReport(&out, rep)
	if want := "  placement   n/a (no placement was answered)\n"; !strings.Contains(out.String(), want) {
		t.Errorf("report with only recovered orders lacks %q:\n%s", want, out.String())
	}
}

// TestPrintReportWithoutSamples: latencies without a sample read n/a, not
// "p50 0.0 ms, p99 0.0 ms".
func TestPrintReportWithoutSamples(t *testing.T) {
	t.Parallel()
	rep := &load.Report{RunID: "r1", Orders: 3, Accepted: 3, P50ms: 12.5, P99ms: 20, Pending: 3, ByKind: map[load.Kind]*load.KindReport{}}
	for _, k := range load.Kinds {
		rep.ByKind[k] = &load.KindReport{}
	}
	var out bytes.Buffer
	printReport(&out, rep)
	for _, want := range []string{"  placement   p50 12.5 ms, p99 20.0 ms\n", "  end to end  n/a (no order settled)\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	rep.Accepted, rep.Failed = 0, 3
	out.Reset()
	printReport(&out, rep)
	if want := "  placement   n/a (no order accepted)\n"; !strings.Contains(out.String(), want) || strings.Contains(out.String(), "0.0 ms") {
		t.Errorf("report with nothing accepted:\n%s\nwant %q and no 0.0 ms", out.String(), want)
	}
}

// TestLoadMix: the help and the error list the kinds by the same names
// (the help said oos, the error out-of-stock), and a kind given twice is
// refused rather than the last weight winning.
func TestLoadMix(t *testing.T) {
	t.Parallel()
	const kinds = "approve, decline, out-of-stock (or oos), flaky, cancel"
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"load", "-h"}, &out, &errOut); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("shop load -h: %v", err)
	}
	if !strings.Contains(errOut.String(), "weights of the order kinds: "+kinds+" (default") {
		t.Errorf("shop load -h does not list the kinds as %q:\n%s", kinds, errOut.String())
	}
	for mix, want := range map[string]string{
		// Each says "mix" once: the flag's name ("--mix: mix: all
		// weights are 0" said it twice).
		"refund=1":              "load: --mix: \"refund=1\": want kind=weight pairs, kinds " + kinds,
		"approve=50,approve=50": "load: --mix: \"approve=50\": approve given twice: give each kind once",
		"oos=5,out-of-stock=5":  "load: --mix: \"out-of-stock=5\": out-of-stock given twice: give each kind once",
		"approve=-1":            "load: --mix: \"approve=-1\": weight must be a whole number ≥ 0",
		"approve=0":             "load: --mix: all weights are 0: give at least one kind a weight above 0",
	} {
		err := run(context.Background(), []string{"load", "--mix", mix, "--order", "http://127.0.0.1:1"}, &out, &errOut)
		var fail *failure
		if err == nil || errors.As(err, &fail) || err.Error() != want {
			t.Errorf("shop load --mix %s: %v, want an error (exit 2): %s", mix, err, want)
		}
	}
}

// fakeOrderService is the order service as shop load uses it, in memory:
// the catalog, placements (every one accepted and confirmed at once) and
// the listing by customer and status. While hold is set, the listing of
// all of a customer's orders (the report's) does not answer.
type fakeOrderService struct {
	hold atomic.Bool
	// broken answers every listing with 503.
	broken atomic.Bool
	// pending lists every order as pending (they are confirmed at once
	// otherwise).
	pending atomic.Bool

	mu     sync.Mutex
	orders []fakeOrder
}

// fakeOrder is one order the fake holds: its id and its customer.
type fakeOrder struct{ id, customer string }

// newFakeOrderService starts a fakeOrderService, stopped when the test ends.
func newFakeOrderService(t *testing.T) (*fakeOrderService, *httptest.Server) {
	t.Helper()
	f := &fakeOrderService{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/products", func(w http.ResponseWriter, _ *http.Request) {
		var page struct {
			Products []map[string]any `json:"products"`
		}
		for _, p := range seed.Catalog {
			page.Products = append(page.Products, map[string]any{"sku": p.SKU, "currency": p.Currency, "active": true})
		}
		json.NewEncoder(w).Encode(page) //nolint:errcheck // the client sees a short body
	})
	mux.HandleFunc("POST /v1/orders", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			CustomerID string `json:"customer_id"`
		}
		json.NewDecoder(r.Body).Decode(&req) //nolint:errcheck // the customer is all it keeps
		f.mu.Lock()
		o := fakeOrder{fmt.Sprintf("order-%d", len(f.orders)), req.CustomerID}
		f.orders = append(f.orders, o)
		f.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":%q,"status":"pending"}`, o.id)
	})
	mux.HandleFunc("GET /v1/orders", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if f.broken.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, "no healthy upstream")
			return
		}
		if q.Get("status") == "" && f.hold.Load() {
			<-r.Context().Done()
			return
		}
		type state struct {
			ID          string     `json:"id"`
			Status      string     `json:"status"`
			PlacedAt    time.Time  `json:"placed_at"`
			ConfirmedAt *time.Time `json:"confirmed_at"`
		}
		var page struct {
			Orders []state `json:"orders"`
		}
		page.Orders = []state{}
		now := time.Now()
		st := state{Status: "confirmed", PlacedAt: now.Add(-time.Millisecond), ConfirmedAt: &now}
		if f.pending.Load() {
			st.Status, st.ConfirmedAt = "pending", nil
		}
		if q.Get("status") == "" || q.Get("status") == st.Status {
			f.mu.Lock()
			for _, o := range f.orders {
				if o.customer == q.Get("customer_id") {
					st.ID = o.id
					page.Orders = append(page.Orders, st)
				}
			}
			f.mu.Unlock()
		}
		json.NewEncoder(w).Encode(page) //nolint:errcheck // the client sees a short body
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, srv
}

// placed returns how many orders the fake holds.
func (f *fakeOrderService) placed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.orders)
}

// startLoad runs `shop load args...` as a program (see TestMain) and
// sends it SIGINT (Ctrl-C) once f holds at least n orders.
func startLoad(t *testing.T, f *fakeOrderService, n int, sig os.Signal, args ...string) (cmd *exec.Cmd, stdout, stderr *testenv.SyncBuffer) {
	t.Helper()
	cmd = exec.Command(os.Args[0], append([]string{"load"}, args...)...)
	cmd.Env = append(os.Environ(), "SHOP_TEST_RUN_MAIN=1")
	stdout, stderr = &testenv.SyncBuffer{}, &testenv.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() }) //nolint:errcheck // gone already, usually
	for deadline := time.Now().Add(time.Minute); f.placed() < n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d orders placed after a minute, want %d", f.placed(), n)
		}
	}
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	return cmd, stdout, stderr
}

// waitExit waits up to 30 s for cmd to end.
func waitExit(t *testing.T, cmd *exec.Cmd) *os.ProcessState {
	t.Helper()
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }() //nolint:errcheck // the state says how it ended
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("shop load still running 30 s after Ctrl-C")
	}
	return cmd.ProcessState
}

// TestLoadReportsStatesNotRead: an order service that places the orders
// but cannot list them gets the report all the same, with the orders'
// state unknown and why, within the settle timeout and one listing's
// retries; exit status 1 (orders not known to have settled). It ended
// with exit status 2, "shop: load: gave up after 94 attempts: ...", and
// no report, after retrying each poll for 90 s.
func TestLoadReportsStatesNotRead(t *testing.T) {
	t.Parallel()
	f, srv := newFakeOrderService(t)
	f.broken.Store(true)
	var out, errOut testenv.SyncBuffer
	began := time.Now()
	err := run(context.Background(), []string{"load", "--order", srv.URL, "--orders", "5", "--concurrency", "2", "--mix", "approve=1",
		"--settle-timeout", "1s"}, &out, &errOut)
	var fail *failure
	if !errors.As(err, &fail) || !strings.Contains(err.Error(), "5 in a state not read") {
		t.Errorf("shop load: %v, want a failure (exit 1) counting the orders not read", err)
	}
	if took := time.Since(began); took > 20*time.Second {
		t.Errorf("took %s, want the 1 s settle timeout and 10 s of retries of the listing at most", took)
	}
	for _, want := range []string{"  accepted    5 (", "; 0 pending; 5 unknown (state not read); 0 unexpected\n", "pending  unknown  unexpected\n",
		"status polls failed while waiting for the orders to settle, the last: GET /v1/orders?limit=100&status=pending&",
		"the orders' states could not all be read: gave up after ", "503 no healthy upstream"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(errOut.String(), "status polls failed, the last: ") {
		t.Errorf("progress lacks the failed polls:\n%s", errOut.String())
	}
}

// TestLoadSettleTimeoutZero: --settle-timeout 0 asks not to wait, so
// the orders not settled yet are reported pending but are no failure:
// exit status 0 (every such run exited 1, "N still pending"). A wait
// that ends with orders pending is still one (exit 1).
func TestLoadSettleTimeoutZero(t *testing.T) {
	t.Parallel()
	f, srv := newFakeOrderService(t)
	f.pending.Store(true)
	args := []string{"load", "--order", srv.URL, "--orders", "3", "--concurrency", "2", "--mix", "approve=1"}
	var out, errOut testenv.SyncBuffer
	if err := run(context.Background(), append(args, "--settle-timeout", "0"), &out, &errOut); err != nil {
		t.Errorf("shop load --settle-timeout 0 with the orders pending: %v, want exit status 0\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "; 3 pending; 0 unexpected\n") {
		t.Errorf("report lacks the 3 orders pending:\n%s", out.String())
	}
	err := run(context.Background(), append(args, "--settle-timeout", "500ms"), &out, &errOut)
	var fail *failure
	if !errors.As(err, &fail) || !strings.Contains(err.Error(), "3 still pending") {
		t.Errorf("shop load --settle-timeout 500ms with the orders pending: %v, want a failure (exit 1)", err)
	}
}

// TestPrintReportPartialSample: with orders not settled, the end-to-end
// figures say they cover only the settled ones; they read as the whole
// load's, though the slowest orders were missing from them.
func TestPrintReportPartialSample(t *testing.T) {
	t.Parallel()
	rep := &load.Report{RunID: "r1", Orders: 20, Accepted: 20, Settled: 19, Confirmed: 19, Pending: 1, E2ESample: 19, E2EP50ms: 30, E2EP99ms: 40,
		ByKind: map[load.Kind]*load.KindReport{}}
	for _, k := range load.Kinds {
		rep.ByKind[k] = &load.KindReport{}
	}
	var out bytes.Buffer
	printReport(&out, rep)
	if want := "  end to end  p50 30.0 ms, p99 40.0 ms (of 19 settled; 1 of the 20 accepted not in the figures)\n"; !strings.Contains(out.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, out.String())
	}
	rep.Settled, rep.Confirmed, rep.Pending, rep.E2ESample = 20, 20, 0, 20
	out.Reset()
	printReport(&out, rep)
	if want := "  end to end  p50 30.0 ms, p99 40.0 ms\n"; !strings.Contains(out.String(), want) {
		t.Errorf("report with every order settled lacks %q:\n%s", want, out.String())
	}
}

// TestLoadInterrupted: Ctrl-C stops the placing; shop load says it was
// interrupted, prints the report of what it placed (and what of that
// settled), as text or JSON, and exits with status 130. It used to print
// `shop: load: gave up after 1 attempts: ...: interrupt signal received`
// and no report, exit status 2.
func TestLoadInterrupted(t *testing.T) {
	t.Parallel()
	for _, asJSON := range []bool{false, true} {
		f, srv := newFakeOrderService(t)
		args := []string{"--order", srv.URL, "--orders", "100000", "--rate", "50", "--concurrency", "2", "--mix", "approve=1"}
		if asJSON {
			args = append(args, "--json")
		}
		cmd, stdout, stderr := startLoad(t, f, 5, os.Interrupt, args...)
		st := waitExit(t, cmd)
		if st.ExitCode() != 130 {
			t.Errorf("--json %v: exit status %d, want 130\n%s%s", asJSON, st.ExitCode(), stdout, stderr)
		}
		// An order whose placement the interruption cut off may be in
		// the service but not in the report: the report's count is
		// checked against the service's, and the report against itself.
		m := regexp.MustCompile(`shop: load: interrupted: (\d+) of 100000 orders placed, (\d+) not placed\n`).FindStringSubmatch(stderr.String())
		if m == nil || !strings.Contains(stderr.String(), "interrupted: placing stopped") {
			t.Errorf("--json %v: stderr does not say it was interrupted:\n%s", asJSON, stderr)
			continue
		}
		placed, _ := strconv.Atoi(m[1])
		// Five were in the service at the Ctrl-C; the answers of up to
		// two (the concurrency) may have been cut off in flight.
		if notPlaced, _ := strconv.Atoi(m[2]); placed < 3 || placed > f.placed() || placed+notPlaced != 100000 {
			t.Errorf("--json %v: %s: want 3 to %d placed, the rest not", asJSON, strings.TrimSpace(m[0]), f.placed())
		}
		if !asJSON {
			for _, want := range []string{fmt.Sprintf(": %d of 100000 orders placed, %d not placed\n", placed, 100000-placed),
				fmt.Sprintf("  settled     %d (", placed)} {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("report lacks %q:\n%s", want, stdout)
				}
			}
			continue
		}
		var rep struct {
			Interrupted bool `json:"interrupted"`
			Accepted    int  `json:"accepted"`
			Failed      int  `json:"failed"`
			NotPlaced   int  `json:"not_placed"`
			Settled     int  `json:"settled"`
		}
		if err := json.Unmarshal([]byte(stdout.String()), &rep); err != nil {
			t.Fatalf("--json report: %v\n%s", err, stdout)
		}
		if !rep.Interrupted || rep.Accepted != placed || rep.Failed != 0 || rep.NotPlaced != 100000-placed || rep.Settled != placed {
			t.Errorf("--json report %+v, want interrupted with %d orders placed and settled\n%s", rep, placed, stdout)
		}
	}
}

// TestLoadInterruptedTwice: a second Ctrl-C ends shop load at once,
// while the first still has it reading the orders' states.
func TestLoadInterruptedTwice(t *testing.T) {
	t.Parallel()
	f, srv := newFakeOrderService(t)
	f.hold.Store(true)
	cmd, stdout, stderr := startLoad(t, f, 5, os.Interrupt, "--order", srv.URL, "--orders", "100000", "--rate", "50", "--concurrency", "2", "--mix", "approve=1")
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(stderr.String(), "interrupted: placing stopped"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no word of the interruption after 30 s:\n%s", stderr)
		}
	}
	began := time.Now()
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	st := waitExit(t, cmd)
	if ws, ok := st.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGINT {
		t.Errorf("after the second Ctrl-C: %v, want killed by SIGINT\n%s%s", st, stdout, stderr)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("ended %s after the second Ctrl-C, want at once", took)
	}
}

// TestLoadTerminated: SIGTERM stops shop load as Ctrl-C does, with the
// report, and the exit status a shell gives for SIGTERM, 143 (it was 130,
// Ctrl-C's, for both).
func TestLoadTerminated(t *testing.T) {
	t.Parallel()
	f, srv := newFakeOrderService(t)
	cmd, stdout, stderr := startLoad(t, f, 5, syscall.SIGTERM, "--order", srv.URL, "--orders", "100000", "--rate", "50",
		"--concurrency", "2", "--mix", "approve=1")
	if st := waitExit(t, cmd); st.ExitCode() != 143 || !strings.Contains(stderr.String(), "shop: load: interrupted: ") ||
		!strings.Contains(stdout.String(), "interrupted after") {
		t.Errorf("exit status %d, want 143 with the report\n%s%s", st.ExitCode(), stdout, stderr)
	}
}
