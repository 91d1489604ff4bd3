package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
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
		"refund=1":              "load: --mix: mix \"refund=1\": want kind=weight pairs, kinds " + kinds,
		"approve=50,approve=50": "load: --mix: mix \"approve=50\": approve given twice: give each kind once",
		"oos=5,out-of-stock=5":  "load: --mix: mix \"out-of-stock=5\": out-of-stock given twice: give each kind once",
	} {
		err := run(context.Background(), []string{"load", "--mix", mix, "--order", "http://127.0.0.1:1"}, &out, &errOut)
		var fail *failure
		if err == nil || errors.As(err, &fail) || err.Error() != want {
			t.Errorf("shop load --mix %s: %v, want an error (exit 2): %s", mix, err, want)
		}
	}
}
