package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopflow/shopflow/cmd/shop/check"
	"github.com/shopflow/shopflow/cmd/shop/seed"
	"github.com/shopflow/shopflow/cmd/shop/suite"
	"github.com/shopflow/shopflow/cmd/shop/suite/suitetest"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// TestCheckCommand runs `shop check` against a running suite: unseeded,
// it wants the demo seed's SKUs unless --no-baseline; seeded, with one
// order and an admin's restock, it passes; it fails (exit status 1)
// listing a violation once the stock is tampered with, --no-baseline or
// not.
func TestCheckCommand(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.DatabaseURL(t)
	s := suitetest.Start(t, ctx, suite.Options{DatabaseURL: dbURL, AdminToken: "cmd-check-admin-token", Env: map[string]string{}})
	var out, errOut bytes.Buffer
	var fail *failure
	err := run(ctx, []string{"check", "--database-url", dbURL}, &out, &errOut)
	if n := len(seed.Catalog); !errors.As(err, &fail) || fail.msg != fmt.Sprintf("check: %d violations", n) ||
		strings.Count(out.String(), "but not in the inventory") != n {
		t.Fatalf("check of an unseeded shop: %v, want the %d seeded SKUs missing\n%s", err, n, out.String())
	}
	out.Reset()
	if err := run(ctx, []string{"check", "--database-url", dbURL, "--no-baseline"}, &out, &errOut); err != nil {
		t.Fatalf("check --no-baseline of an unseeded shop: %v\n%s", err, out.String())
	}
	if _, err := seed.Seed(ctx, s.URLs["order"], s.URLs["inventory"], "cmd-check-admin-token", nil); err != nil {
		t.Fatal(err)
	}
	body := `{"customer_id":"cust-1","currency":"USD","items":[{"sku":"SKU-0005","quantity":2}],"payment":{"card_token":"tok_visa"},` +
		`"shipping_address":{"name":"Ada Lovelace","line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}}`
	req, _ := http.NewRequest("POST", s.URLs["order"]+"/v1/orders", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "cmd-check-1")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("place order: %d", res.StatusCode)
	}
	// Seeding a running shop again (a second `make run`) puts the catalog
	// but leaves stock alone: it would put back the two SKU-0005 just
	// sold otherwise.
	again, err := seed.Seed(ctx, s.URLs["order"], s.URLs["inventory"], "cmd-check-admin-token", nil)
	if err != nil {
		t.Fatal(err)
	}
	if again != (seed.Result{ProductsPresent: len(seed.Catalog), StockPresent: len(seed.Catalog)}) {
		t.Fatalf("second seeding: %+v, want every product and every SKU's stock left as it was", again)
	}

	// An admin restocks as README says: read the level, PUT it with
	// If-Match. The check read this as "stock SKU-0001: on hand 100500,
	// want 100000 (seeded 100000 − committed 0)" when it held on hand to
	// the seed.
	restock(t, s.URLs["inventory"], "cmd-check-admin-token", "SKU-0001", 500)

	out.Reset()
	if err := run(ctx, []string{"check", "--database-url", dbURL, "--wait", "90s"}, &out, &errOut); err != nil {
		t.Fatalf("check: %v\n%s%s", err, out.String(), errOut.String())
	}
	for _, want := range []string{"checked 1 order (1 confirmed), 1 payment, 1 gateway authorization, 1 reservation, 1 shipment, 14 SKUs",
		"the shop settled", "OK: every invariant holds"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("output lacks %q:\n%s", want, out.String())
		}
	}

	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	checkInFlight(t, ctx, conn, dbURL)

	// A trailing slash on the URL's path is the same database (pgx took
	// it for part of the name: database "t_.../" does not exist).
	slashed := dbURL + "/"
	if base, query, ok := strings.Cut(dbURL, "?"); ok {
		slashed = base + "/?" + query
	}
	out.Reset()
	if err := run(ctx, []string{"check", "--database-url", slashed}, &out, &errOut); err != nil {
		t.Fatalf("check --database-url %s: %v\n%s", slashed, err, out.String())
	}

	if _, err := conn.Exec(ctx, `UPDATE inventory.stock SET on_hand = on_hand - 5 WHERE sku = 'SKU-0005'`); err != nil {
		t.Fatal(err)
	}
	want := []string{"\n1 violation:\n",
		fmt.Sprintf("stock SKU-0005: on hand %d, want %d (adjustments %d − committed 2): 5 fewer than the ledger accounts for; ",
			seed.Initial()["SKU-0005"]-7, seed.Initial()["SKU-0005"]-2, seed.Initial()["SKU-0005"]),
		"PUT /v1/stock/{sku}", "inventory.stock_adjustments"}
	// --no-baseline used to skip on hand altogether, and passed this.
	for _, args := range [][]string{{}, {"--no-baseline"}} {
		out.Reset()
		err = run(ctx, append([]string{"check", "--database-url", dbURL}, args...), &out, &errOut)
		if !errors.As(err, &fail) || fail.msg != "check: 1 violation" {
			t.Fatalf("check %v of tampered stock: %v, want the failure (exit 1) \"check: 1 violation\"\n%s", args, err, out.String())
		}
		for _, w := range want {
			if !strings.Contains(out.String(), w) {
				t.Fatalf("check %v: output lacks %q:\n%s", args, w, out.String())
			}
		}
	}

	out.Reset()
	err = run(ctx, []string{"check", "--database-url", dbURL, "--json"}, &out, &errOut)
	if !errors.As(err, &fail) {
		t.Fatalf("check --json: %v, want a failure", err)
	}
	var rep check.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	if len(rep.Violations) != 1 || rep.Violations[0].Rule != check.RuleStock || rep.Violations[0].SKU != "SKU-0005" || rep.Orders["confirmed"] != 1 {
		t.Fatalf("--json report %+v", rep)
	}
}

// checkInFlight: a check without a wait that finds an order in flight
// (here the shop's one order, set back as if ShipmentScheduled were still
// on its way) and nothing broken exits 3, lists the order apart as not
// checked and says it is no violation, in text and JSON. It used to exit
// 1 with "1 violations:" listing the order as "pending", which a script
// reads as a broken shop. The order is set back as it was at the end.
func checkInFlight(t *testing.T, ctx context.Context, conn *pgx.Conn, dbURL string) {
	t.Helper()
	if _, err := conn.Exec(ctx, `UPDATE orders.orders SET status = 'pending', shipping_step = 'pending'`); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if _, err := conn.Exec(ctx, `UPDATE orders.orders SET status = 'confirmed', shipping_step = 'scheduled'`); err != nil {
			t.Fatal(err)
		}
	}()
	var out, errOut bytes.Buffer
	var fail *failure
	err := run(ctx, []string{"check", "--database-url", dbURL}, &out, &errOut)
	if !errors.As(err, &fail) || fail.status != exitUnchecked || fail.msg != "check: 1 order in flight not checked" {
		t.Fatalf("check of a shop with an order in flight: %v, want the failure (exit 3) \"check: 1 order in flight not checked\"\n%s", err, out.String())
	}
	for _, want := range []string{"not checked: 1 order still in flight", "steps still pending: shipping",
		"no violation in what was checked, but not complete: run with --wait 1m"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "violations:") || strings.Contains(out.String(), "OK") {
		t.Errorf("an order in flight reported as a violation, or the check as OK:\n%s", out.String())
	}
	out.Reset()
	err = run(ctx, []string{"check", "--database-url", dbURL, "--json"}, &out, &errOut)
	var rep check.Report
	if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil || !errors.As(err, &fail) || fail.status != exitUnchecked {
		t.Fatalf("check --json: %v, %v, want exit 3 and a report\n%s", err, jerr, out.String())
	}
	if len(rep.Violations) != 0 || rep.InFlight != 1 || len(rep.InFlightOrders) != 1 || rep.Settled {
		t.Errorf("--json: violations %v, in flight %d %v, settled %v; want no violation, the order in flight, not settled",
			rep.Violations, rep.InFlight, rep.InFlightOrders, rep.Settled)
	}
}

// restock adds delta to the on hand of sku as an admin does: GET the
// level, PUT the new figure with If-Match its ETag.
func restock(t *testing.T, inventoryURL, token, sku string, delta int64) {
	t.Helper()
	res, err := http.Get(inventoryURL + "/v1/stock/" + sku)
	if err != nil {
		t.Fatal(err)
	}
	var level struct {
		OnHand int64 `json:"on_hand"`
	}
	err = json.NewDecoder(res.Body).Decode(&level)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/stock/%s: %d %v", sku, res.StatusCode, err)
	}
	req, _ := http.NewRequest("PUT", inventoryURL+"/v1/stock/"+sku, strings.NewReader(fmt.Sprintf(`{"on_hand":%d}`, level.OnHand+delta)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("If-Match", res.Header.Get("ETag"))
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("PUT /v1/stock/%s with If-Match: %d", sku, res.StatusCode)
	}
}

// TestCheckCommandErrors: bad flags and an unreachable database are errors
// (exit status 2), never a failure (exit 1) or a panic.
func TestCheckCommandErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--wait", "-1s"}, "must not be negative"},
		{[]string{"--wait", "soon"}, "invalid value"},
		{[]string{"--since", "yesterday"}, "RFC 3339"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"--database-url", "mysql://nope"}, "database-url"},
		{[]string{"--database-url", "postgres://postgres@127.0.0.1:1/shopflow?sslmode=disable&connect_timeout=2"}, "pass --database-url or set DATABASE_URL"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), append([]string{"check"}, c.args...), &out, &errOut)
			var fail *failure
			if err == nil || errors.As(err, &fail) {
				t.Fatalf("err = %v, want an error (exit 2)", err)
			}
			if !strings.Contains(err.Error()+errOut.String(), c.want) {
				t.Fatalf("err %v / %s: want %q", err, errOut.String(), c.want)
			}
		})
	}
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"check", "-h"}, &out, &errOut); !errors.Is(err, flag.ErrHelp) ||
		!strings.Contains(errOut.String(), "must be able to\nread all four") {
		t.Fatalf("check -h: %v\n%s", err, errOut.String())
	}
}

// TestTrimDatabaseURLSlash: only a postgres:// URL's path loses its
// trailing slashes; its query and keyword/value strings are untouched.
func TestTrimDatabaseURLSlash(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://u@h:5432/shopflow/":               "postgres://u@h:5432/shopflow",
		"postgresql://u@h/shopflow//?sslmode=disable": "postgresql://u@h/shopflow?sslmode=disable",
		"postgres://u@h:5432/":                        "postgres://u@h:5432",
		"postgres://u@h/shopflow?options=-c%20a%3Db/": "postgres://u@h/shopflow?options=-c%20a%3Db/",
		"host=/tmp/ dbname=shopflow":                  "host=/tmp/ dbname=shopflow",
		"postgres://u@h/shopflow?sslmode=disable":     "postgres://u@h/shopflow?sslmode=disable",
	} {
		if got := trimDatabaseURLSlash(in); got != want {
			t.Errorf("trimDatabaseURLSlash(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPrintCheckAfterTheWait: the report says whether the wait ended
// with the shop settled, and, when violations stayed through it, that
// waiting did not clear them (a settled shop with violations used to
// read "the shop settled" and nothing else). One of anything is singular
// ("1 violation:" read "1 violations:").
func TestPrintCheckAfterTheWait(t *testing.T) {
	t.Parallel()
	v := []check.Violation{{SKU: "SKU-0003", Rule: "stock", Detail: "on hand 540, want 99940"}}
	for _, tc := range []struct {
		rep  check.Report
		want string
	}{
		{check.Report{Waited: time.Second, Settled: true}, "waited 1s; the shop settled\n"},
		{check.Report{Waited: time.Second}, "waited 1s; the shop did not settle\n"},
		{check.Report{Waited: 30 * time.Second, Settled: true, Violations: v},
			"waited 30s; the shop settled, and the violation below held until the wait ran out\n1 violation:\n"},
		{check.Report{Waited: 30 * time.Second, Settled: true, Violations: append(v, v[0])},
			"waited 30s; the shop settled, and the violations below held until the wait ran out\n2 violations:\n"},
		{check.Report{Orders: map[string]int{"confirmed": 2}, Payments: 1}, "checked 2 orders (2 confirmed), 1 payment, 0 gateway authorizations,"},
		// Orders in flight are not broken, and not checked: the output
		// lists them apart from the violations, and says how to check them.
		{check.Report{InFlight: 1, InFlightOrders: []check.InFlightOrder{{Order: "o-1", Detail: "order still pending"}}, Violations: append(v, v[0])},
			"not checked: 1 order still in flight, results on their way between the services (not violations):\n  o-1: order still pending\n2 violations:\n"},
		{check.Report{InFlight: 2, InFlightOrders: []check.InFlightOrder{{Order: "o-1"}, {Order: "o-2"}}},
			"no violation in what was checked, but not complete: run with --wait 1m to check the 2 orders in flight once they have settled\n"},
		{check.Report{Waited: time.Second, InFlight: 1, Violations: v}, "waited 1s; the shop did not settle\nnot checked: 1 order still in flight when the wait ran out"},
	} {
		var out bytes.Buffer
		printCheck(&out, tc.rep)
		if !strings.Contains(out.String(), tc.want) {
			t.Errorf("printCheck(%+v) =\n%s\nwant a line %q", tc.rep, out.String(), tc.want)
		}
	}
}

// TestCheckProgress: on a terminal, a check with a wait redraws in place
// what it is still waiting for, cut to fit a line, and clears it before
// the report. It used to print nothing while it waited.
func TestCheckProgress(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	progress, done := checkProgress(&out, time.Minute)
	progress(1200*time.Millisecond, check.Motion{Pending: 1, Outbox: map[string]int{"shipping": 1}, OutboxAge: map[string]time.Duration{"shipping": time.Second}})
	progress(2*time.Second, check.Motion{Unrecorded: map[string]int{"payment": 3, "inventory": 2, "shipping": 12}, Outbox: map[string]int{"orders": 40, "payments": 3}})
	progress(3*time.Second, check.Motion{})
	done()
	want := "\r\033[Kwaiting 1.2s of 1m0s: pending 1; in outbox: shipping 1" +
		"\r\033[Kwaiting 2s of 1m0s: in outbox: orders 40, payments 3; unrecorded by: inventory…" +
		"\r\033[Kwaiting 3s of 1m0s: settled; checking" +
		"\r\033[K"
	if out.String() != want {
		t.Errorf("progress:\n%q\nwant\n%q", out.String(), want)
	}
}
