package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/shopflow/shopflow/cmd/shop/load"
)

// cmdLoad places orders against a running suite and reports. Ctrl-C
// stops the placing: the report covers what was placed, and the command
// ends as interrupted (exit status 130, 143 for SIGTERM); a second Ctrl-C ends the process
// at once.
func cmdLoad(ctx context.Context, args []string, stdout, stderr io.Writer, _ *slog.Logger) error {
	fs := flag.NewFlagSet("shop load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	orderURL := fs.String("order", "", "order service base URL (default: the running shop dev's, else "+defaultOrderURL+")")
	dataDir := fs.String("data-dir", defaultDataDir, dataDirUsage)
	orders := fs.Int("orders", 500, "orders to place")
	concurrency := fs.Int("concurrency", 16, "requests in flight at once")
	rate := fs.Float64("rate", 0, fmt.Sprintf("placements per second at most, up to %.0f (0: as fast as possible)", load.MaxRate))
	mix := fs.String("mix", "approve=70,decline=10,oos=10,flaky=5,cancel=5", "weights of the order kinds: "+load.KindNames())
	settle := fs.Duration("settle-timeout", 2*time.Minute, "how long to wait for every order to settle (0: do not wait; the orders not settled yet are reported pending)")
	giveUp := fs.Duration("give-up-after", 30*time.Second, "stop placing, and waiting for the orders to settle, once the order service has taken no request for this long (no answer, 5xx, 408, 429); the report covers what was done")
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		// Parsing stops at the first argument that is not a flag: the
		// flags after it would be ignored without a word.
		return fmt.Errorf("load: unexpected argument %q", fs.Arg(0))
	}
	if flagSet(fs, "order") {
		if err := checkBaseURL("order", *orderURL); err != nil {
			return fmt.Errorf("load: %w", err)
		}
	}
	m, err := load.ParseMix(*mix)
	if err != nil {
		return fmt.Errorf("load: --mix: %w", err)
	}
	if *orders <= 0 || *concurrency <= 0 {
		return fmt.Errorf("load: --orders and --concurrency must be positive")
	}
	if err := load.CheckRate(*rate); err != nil {
		// NaN passed a "< 0" check as no limit, and 2e9 or Inf made
		// the pacing ticker panic.
		return fmt.Errorf("load: --%w", err)
	}
	if *settle < 0 {
		return fmt.Errorf("load: --settle-timeout %v: must not be negative (0: do not wait)", *settle)
	}
	if *giveUp <= 0 {
		return fmt.Errorf("load: --give-up-after %v: must be positive", *giveUp)
	}
	if !flagSet(fs, "order") {
		dev, err := runningDev(fs, *dataDir, "--order")
		if err != nil {
			return fmt.Errorf("load: %w", err)
		}
		*orderURL = serviceURL(fs, "order", *orderURL, dev, defaultOrderURL)
		sayTarget(stderr, "load", "order service "+*orderURL, dev, *dataDir)
	}
	opts := load.Options{OrderURL: *orderURL, Orders: *orders, Concurrency: *concurrency, Rate: *rate, Mix: m,
		SettleTimeout: *settle, GiveUpAfter: *giveUp, Progress: stderr, Terminal: isTerminal(stderr)}
	// The first Ctrl-C ends ctx, which stops the placing; the next one
	// must not wait for the report.
	stopReset := context.AfterFunc(ctx, func() { signal.Reset(os.Interrupt, syscall.SIGTERM) })
	defer stopReset()
	rep, err := load.Run(ctx, opts)
	if err != nil && !errors.Is(err, load.ErrInterrupted) {
		if ctx.Err() != nil {
			return &interrupted{"load: interrupted before the first order was placed"}
		}
		return fmt.Errorf("load: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printReport(stdout, rep)
	}
	if rep.Interrupted {
		return &interrupted{fmt.Sprintf("load: interrupted: %d of %d orders placed, %d not placed", rep.Accepted, rep.Orders, rep.NotPlaced)}
	}
	if rep.GaveUp != "" {
		return &failure{msg: fmt.Sprintf("load: gave up: %s; %d of %d orders placed, %d failed, %d not placed", rep.GaveUp, rep.Accepted, rep.Orders, rep.Failed, rep.NotPlaced)}
	}
	// --settle-timeout 0 asked not to wait: the orders not settled yet
	// are reported, and are no failure (every such run exited 1).
	pending := rep.Pending
	if *settle == 0 {
		pending = 0
	}
	if rep.Failed > 0 || pending > 0 || rep.Unknown > 0 || rep.Unexpected > 0 {
		unknown := ""
		if rep.Unknown > 0 {
			unknown = fmt.Sprintf(", %d in a state not read", rep.Unknown)
		}
		return &failure{msg: fmt.Sprintf("load: %d failed, %d still pending%s, %d unexpected outcomes", rep.Failed, rep.Pending, unknown, rep.Unexpected)}
	}
	return nil
}

// printReport writes the report as text: totals, latencies, a table by
// kind and the sample of errors.
func printReport(w io.Writer, r *load.Report) {
	if r.Interrupted {
		fmt.Fprintf(w, "run %s: interrupted after %.1fs: %d of %d orders placed, %d not placed\n",
			r.RunID, r.DurationS, r.Accepted, r.Orders, r.NotPlaced)
	} else if r.GaveUp != "" {
		fmt.Fprintf(w, "run %s: gave up after %.1fs: %s\n", r.RunID, r.DurationS, r.GaveUp)
	} else {
		fmt.Fprintf(w, "run %s: %d orders in %.1fs\n", r.RunID, r.Orders, r.DurationS)
	}
	var more string
	if r.Recovered > 0 {
		more += fmt.Sprintf(", %d of them found stored after their placement got no answer", r.Recovered)
	}
	more += fmt.Sprintf("), failed %d", r.Failed)
	if r.NotPlaced > 0 && !r.Interrupted {
		more += fmt.Sprintf(", not placed %d", r.NotPlaced)
	}
	fmt.Fprintf(w, "  accepted    %d (%.1f/s%s, retries %d\n", r.Accepted, r.AcceptedPerS, more, r.Retries)
	unknown := ""
	if r.Unknown > 0 {
		unknown = fmt.Sprintf("; %d unknown (state not read)", r.Unknown)
	}
	fmt.Fprintf(w, "  settled     %d (%.1f/s): %d confirmed, %d cancelled; %d pending%s; %d unexpected\n",
		r.Settled, r.SettledPerS, r.Confirmed, r.Cancelled, r.Pending, unknown, r.Unexpected)
	// 0 ms would read as a measurement where there is no sample.
	switch {
	case r.Accepted > r.Recovered:
		fmt.Fprintf(w, "  placement   p50 %.1f ms, p99 %.1f ms\n", r.P50ms, r.P99ms)
	case r.Accepted == 0:
		fmt.Fprintln(w, "  placement   n/a (no order accepted)")
	default:
		fmt.Fprintln(w, "  placement   n/a (no placement was answered)")
	}
	if r.Settled > 0 {
		// The orders not settled are not in the figures, and they would
		// be the slowest: said, rather than read as the whole load's.
		partial := ""
		if r.E2ESample < r.Accepted {
			partial = fmt.Sprintf(" (of %d settled; %d of the %d accepted not in the figures)", r.E2ESample, r.Accepted-r.E2ESample, r.Accepted)
		}
		fmt.Fprintf(w, "  end to end  p50 %.1f ms, p99 %.1f ms%s\n", r.E2EP50ms, r.E2EP99ms, partial)
	} else {
		fmt.Fprintln(w, "  end to end  n/a (no order settled)")
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	// The unknown column only when some state was not read.
	fmt.Fprint(tw, "  kind\tplaced\tconfirmed\tcancelled\tpending\t")
	if r.Unknown > 0 {
		fmt.Fprint(tw, "unknown\t")
	}
	fmt.Fprintln(tw, "unexpected")
	for _, k := range load.Kinds {
		kr := r.ByKind[k]
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%d\t", k, kr.Placed, kr.Confirmed, kr.Cancelled, kr.Pending)
		if r.Unknown > 0 {
			fmt.Fprintf(tw, "%d\t", kr.Unknown)
		}
		fmt.Fprintf(tw, "%d\n", kr.Unexpected)
	}
	tw.Flush()
	for _, e := range r.Errors {
		fmt.Fprintln(w, "  !", e)
	}
}

// isTerminal reports whether w is a character device (a terminal), where
// a progress bar redrawn in place makes sense.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
