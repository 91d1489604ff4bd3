package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopflow/shopflow/cmd/shop/check"
	"github.com/shopflow/shopflow/cmd/shop/seed"
	"github.com/shopflow/shopflow/cmd/shop/suite"
)

// defaultCheckDatabaseURL is the database `shop dev` uses on the local
// server, for when DATABASE_URL is not set.
const defaultCheckDatabaseURL = "postgres://postgres@127.0.0.1:5432/shopflow?sslmode=disable"

const checkUsage = `usage: shop check [--database-url URL] [--data-dir DIR] [--wait DURATION] [--since TIME] [--no-baseline] [--json]

Checks shopflow's cross-service invariants by reading the orders, payments,
inventory and shipping schemas directly: the role in the URL must be able to
read all four (a service's own role cannot; use the owner or a read-only
operator role). The database is --database-url's, else $DATABASE_URL's, else
the one of the shop dev running with --data-dir (its private cluster's,
say), else the local server's shopflow; the last two are said on stderr.

Every confirmed order has a captured payment backed by one captured gateway
authorization, a committed reservation of its lines and a shipment ready
for pickup; every cancelled order has nothing left standing; nothing
exists for unknown orders; for every SKU, stock on hand is what the
inventory's adjustment ledger recorded (every PUT /v1/stock/{sku}, shop
seed's included) minus what was sold, and reserved matches the held
reservations; every SKU of the demo seed is in the inventory (not with
--no-baseline); no order is pending.

Orders still in flight (pending, with events about them not yet published,
or changed in the last %v and not yet consistent: results on their way
between the services) are not violations, and are not checked: they are
listed apart, each saying what it waits for (the steps still pending, the
outbox holding an event about it; else see shop dlq list), and counted;
run with --wait to check them once they have settled.

With --wait, waits for the orders placed before the check began to settle
(none pending, no outbox row about them, every one recorded by payment,
inventory and shipping) and re-checks until the invariants hold or the
wait runs out. Orders that have not settled by then are a violation too
(unsettled), naming what was still moving: the outbox still holding events
about them, the service that had not recorded them yet. On a terminal, a
line on stderr shows what the wait is still waiting for. Orders placed
after the check began are left out, so a shop that keeps taking orders can
be checked while it runs.

The check gives up when the database has not answered within the wait plus
%v (a lock another session holds on a table it reads, a server or network
that stopped answering) or the connection is lost: exit status 2, naming
the database.
Exit status: 0 every order and SKU checked and every invariant holds;
1 violations (each listed; with --wait, orders not settled by the end are
one); 2 error; 3 no violation in what was checked, but orders in flight
were not checked (without --wait only: run with --wait to check them).

flags:
`

// cmdCheck checks the invariants and fails (exit 1) listing violations.
func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer, _ *slog.Logger) error {
	fs := flag.NewFlagSet("shop check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), checkUsage, check.DefaultSettleTime, check.DefaultGrace)
		fs.PrintDefaults()
	}
	// The default is resolved after parsing so that -h never prints a
	// DATABASE_URL with its password.
	dbURL := fs.String("database-url", "", "PostgreSQL URL of the suite's database (default $DATABASE_URL, else the running shop dev's, else "+defaultCheckDatabaseURL+")")
	dataDir := fs.String("data-dir", defaultDataDir, dataDirUsage)
	wait := fs.Duration("wait", 0, "how long to wait for the shop to settle and the invariants to hold (0: check once, now)")
	since := fs.String("since", "", "check only orders placed at or after this RFC 3339 time (stock is always checked whole)")
	noBaseline := fs.Bool("no-baseline", false, "do not require the demo seed's SKUs in the inventory (for a shop stocked by other means; on hand is checked either way)")
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("check: unexpected argument %q", fs.Arg(0))
	}
	if *wait < 0 {
		return fmt.Errorf("check: --wait %v: must not be negative", *wait)
	}
	opts := check.Options{Wait: *wait, Baseline: seed.Initial()}
	if *noBaseline {
		opts.Baseline = nil
	}
	if *since != "" {
		t, err := time.Parse(time.RFC3339Nano, *since)
		if err != nil {
			return fmt.Errorf("check: --since %q: want an RFC 3339 time such as 2026-01-02T15:04:05Z", *since)
		}
		opts.Since = t
	}
	// Said in the error when the database does not answer.
	unreachable := "shop check reads the suite's database: pass --database-url or set DATABASE_URL"
	if *dbURL == "" {
		*dbURL = os.Getenv("DATABASE_URL")
	}
	if *dbURL == "" {
		dev, err := runningDev(fs, *dataDir, "--database-url or DATABASE_URL")
		if err != nil {
			return fmt.Errorf("check: %w", err)
		}
		switch {
		case dev == nil:
			*dbURL = defaultCheckDatabaseURL
		case dev.DatabaseURL == "":
			return fmt.Errorf("check: %s uses the database DATABASE_URL named (%s), whose URL it does not record "+
				"(it may hold a password): set DATABASE_URL as it was set for shop dev, or pass --database-url", devName(dev, *dataDir), dev.Database)
		default:
			*dbURL = dev.DatabaseURL
			unreachable = "it is the database of " + devName(dev, *dataDir) + ", which does not answer"
			if dev.Postgres == suite.SourcePrivate {
				unreachable = "it is the private PostgreSQL cluster of " + devName(dev, *dataDir) + ", which does not answer: stopped? its log: " +
					filepath.Join(*dataDir, "postgres", "server.log")
			}
		}
		sayTarget(stderr, "check", "database "+suite.MaskDatabaseURL(*dbURL), dev, *dataDir)
	}
	*dbURL = trimDatabaseURLSlash(*dbURL)
	cfg, err := pgxpool.ParseConfig(*dbURL)
	if err != nil {
		// pgx's parse errors can quote the URL; say only what is wrong.
		return errors.New("check: --database-url: not a valid PostgreSQL URL or connection string")
	}
	cfg.MaxConns = 2
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	defer closeWithin(pool, 250*time.Millisecond)

	done := func() {}
	if *wait > 0 && isTerminal(stderr) {
		opts.Progress, done = checkProgress(stderr, *wait)
	}
	rep, err := check.Run(ctx, pool, opts)
	done() // the report, or the error, starts on a clean line
	if err != nil {
		if _, ok := errors.AsType[*check.DatabaseError](err); ok {
			return err // it names the database and says what happened
		}
		if _, ok := errors.AsType[*pgconn.ConnectError](err); ok {
			return fmt.Errorf("%w (%s)", err, unreachable)
		}
		return err
	}
	if *asJSON {
		if rep.Violations == nil {
			rep.Violations = []check.Violation{}
		}
		if rep.InFlightOrders == nil {
			rep.InFlightOrders = []check.InFlightOrder{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printCheck(stdout, rep)
	}
	if n := len(rep.Violations); n > 0 {
		return &failure{msg: "check: " + count(n, "violation", "violations")}
	}
	if rep.InFlight > 0 {
		// Nothing found broken, but not everything looked at: a script's
		// "shop check && deploy" must not take that for "all hold", nor
		// for "broken" (exit 1), which sends someone looking for a bug.
		return &failure{msg: "check: " + count(rep.InFlight, "order", "orders") + " in flight not checked", status: exitUnchecked}
	}
	return nil
}

// exitUnchecked is shop check's exit status when it found no violation
// but left orders in flight unchecked (no --wait).
const exitUnchecked = 3

// progressWidth bounds the progress line: wider than the terminal, it
// would wrap, and redrawing it in place would leave a trail of lines.
const progressWidth = 79

// checkProgress returns an Options.Progress that redraws, in place on
// the terminal w, how long the check has waited of wait and what is still
// moving among the orders it checks ("waiting 2s of 1m0s: pending 1; in
// outbox: payments 2; unrecorded by: shipping 1"), and a done that clears
// the line before the report is printed.
func checkProgress(w io.Writer, wait time.Duration) (progress func(time.Duration, check.Motion), done func()) {
	drawn := false
	progress = func(waited time.Duration, moving check.Motion) {
		still := "settled; checking"
		if !moving.Quiet() {
			var parts []string
			if moving.Pending > 0 {
				parts = append(parts, fmt.Sprintf("pending %d", moving.Pending))
			}
			for _, m := range []struct {
				what string
				n    map[string]int
			}{{"in outbox:", moving.Outbox}, {"unrecorded by:", moving.Unrecorded}} {
				if len(m.n) > 0 {
					var each []string
					for _, k := range slices.Sorted(maps.Keys(m.n)) {
						each = append(each, fmt.Sprintf("%s %d", k, m.n[k]))
					}
					parts = append(parts, m.what+" "+strings.Join(each, ", "))
				}
			}
			still = strings.Join(parts, "; ")
		}
		line := fmt.Sprintf("waiting %v of %v: %s", waited.Round(100*time.Millisecond), wait, still)
		if r := []rune(line); len(r) > progressWidth {
			line = string(r[:progressWidth-1]) + "…"
		}
		fmt.Fprintf(w, "\r\033[K%s", line)
		drawn = true
	}
	done = func() {
		if drawn {
			fmt.Fprint(w, "\r\033[K")
		}
	}
	return progress, done
}

// closeWithin closes pool, waiting at most d for it. After a connection
// that stopped answering, pgx spends up to 15 s saying goodbye to the
// server through the same silent network (a cancel request, then a
// Terminate) before Close returns: the check has its answer by then and
// the process is about to end, which closes the sockets anyway.
func closeWithin(pool *pgxpool.Pool, d time.Duration) {
	closed := make(chan struct{})
	go func() {
		pool.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(d):
	}
}

// trimDatabaseURLSlash drops trailing slashes from the path of a
// postgres:// URL: pgx takes "postgres://host/shopflow/" to name the
// database "shopflow/", which does not exist. Keyword/value connection
// strings ("host=... dbname=...") are returned as they are.
func trimDatabaseURLSlash(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || (scheme != "postgres" && scheme != "postgresql") {
		return s
	}
	end := len(rest)
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		end = i
	}
	return scheme + "://" + strings.TrimRight(rest[:end], "/") + rest[end:]
}

// count says "1 violation", "2 violations", "0 violations".
func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// printCheck writes the report as text: what was checked, the wait, and
// each violation.
func printCheck(w io.Writer, rep check.Report) {
	total := 0
	var byStatus []string
	for _, st := range slices.Sorted(maps.Keys(rep.Orders)) {
		total += rep.Orders[st]
		byStatus = append(byStatus, fmt.Sprintf("%d %s", rep.Orders[st], st))
	}
	detail := ""
	if len(byStatus) > 0 {
		detail = " (" + strings.Join(byStatus, ", ") + ")"
	}
	fmt.Fprintf(w, "checked %s%s, %s, %s, %s, %s, %s\n", count(total, "order", "orders"), detail,
		count(rep.Payments, "payment", "payments"), count(rep.Charges, "gateway authorization", "gateway authorizations"),
		count(rep.Reservations, "reservation", "reservations"), count(rep.Shipments, "shipment", "shipments"), count(rep.SKUs, "SKU", "SKUs"))
	if rep.Waited > 0 {
		state := "settled"
		switch {
		case !rep.Settled:
			state = "did not settle"
		case len(rep.Violations) > 0:
			// It looks again until the wait ends, in case a result was
			// still between a relay and a consumer: these did not go.
			state = "settled, and the violations below held until the wait ran out"
			if len(rep.Violations) == 1 {
				state = "settled, and the violation below held until the wait ran out"
			}
		}
		fmt.Fprintf(w, "waited %v; the shop %s\n", rep.Waited, state)
	}
	if rep.InFlight > 0 {
		// Not broken, not checked either: say so, apart from the
		// violations, and how to check them.
		n := count(rep.InFlight, "order", "orders")
		if rep.Waited > 0 {
			fmt.Fprintf(w, "not checked: %s still in flight when the wait ran out (not counted as violations; the wait's running out is one):\n", n)
		} else {
			fmt.Fprintf(w, "not checked: %s still in flight, results on their way between the services (not violations):\n", n)
		}
		for _, o := range rep.InFlightOrders {
			fmt.Fprintf(w, "  %s\n", o)
		}
	}
	if len(rep.Violations) == 0 {
		if rep.InFlight > 0 {
			fmt.Fprintf(w, "no violation in what was checked, but not complete: run with --wait 1m to check the %s in flight once they have settled\n",
				count(rep.InFlight, "order", "orders"))
			return
		}
		fmt.Fprintln(w, "OK: every invariant holds")
		return
	}
	fmt.Fprintf(w, "%s:\n", count(len(rep.Violations), "violation", "violations"))
	for _, v := range rep.Violations {
		fmt.Fprintf(w, "  %s\n", v)
	}
}
