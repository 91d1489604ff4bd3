package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/shopflow/shopflow/cmd/shop/load"
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
