package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopflow/shopflow/cmd/shop/suite"
	"github.com/shopflow/shopflow/cmd/shop/suite/suitetest"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// TestCheckGivesUpInTime: `shop check --wait 1s` ends within about the
// wait plus its grace (10 s) when the database stops answering, whether a
// session holds a lock on a table the check reads or the network holds
// every byte (a proxy that was SIGSTOPped), and says which database did
// not answer; a connection lost mid-check says so too, naming the
// database rather than only "unexpected EOF". Both are errors (exit 2),
// and the password in the URL is never shown. The check used to wait for
// as long as the lock was held, and for a stalled network until TCP gave
// up.
func TestCheckGivesUpInTime(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.DatabaseURL(t)
	suitetest.Start(t, ctx, suite.Options{DatabaseURL: dbURL, AdminToken: "cmd-check-admin-token", Env: map[string]string{}})
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	// An order still pending keeps a check with a wait looking.
	if _, err := conn.Exec(ctx, `INSERT INTO orders.orders (id, customer_id, status, currency, total_cents, shipping_address, placed_at, updated_at)
VALUES ('01990000-0000-7000-8000-0000000000aa', 'cust-bound', 'pending', 'USD', 100, '{}', now() - interval '1 minute', now() - interval '1 minute')`); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	dbName := strings.TrimPrefix(u.Path, "/")
	// The checks through a proxy log in as a read-only operator role with
	// a password they must not show. The password is real, not one pasted
	// into the URL: a server that checks passwords (the PostgreSQL
	// container) refused the pasted one before the check began.
	operator, password := testenv.Name(t, "check"), "sekret-pw-"+rand.Text()
	if _, err := conn.Exec(ctx, `CREATE ROLE `+pgx.Identifier{operator}.Sanitize()+` LOGIN PASSWORD '`+password+`' IN ROLE pg_read_all_data`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := conn.Exec(context.Background(), `DROP ROLE `+pgx.Identifier{operator}.Sanitize()); err != nil {
			t.Errorf("drop role %s: %v", operator, err)
		}
	})
	// through gives dbURL through p, as the operator.
	through := func(p *testenv.Proxy) string {
		v := *u
		v.Host = p.Addr().String()
		v.User = url.UserPassword(operator, password)
		return v.String()
	}
	// bound is how long a run with --wait 1s may take: the wait, the
	// grace, the network margin and a slack for a busy machine.
	const bound = 1*time.Second + 10*time.Second + time.Second + 3*time.Second

	t.Run("a lock held on a table the check reads", func(t *testing.T) {
		t.Parallel()
		locker, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { locker.Close(context.Background()) })
		tx, err := locker.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `LOCK TABLE shipping.shipments IN ACCESS EXCLUSIVE MODE`); err != nil {
			t.Fatal(err)
		}
		err, took := runCheckWithin(t, []string{"--database-url", dbURL, "--wait", "1s"}, 3*bound, func() { tx.Rollback(ctx) })
		tx.Rollback(ctx)
		wantGaveUp(t, err, took, bound, "did not answer in time", "database "+dbName+" on "+u.Host, "lock")
	})

	t.Run("a network that stops passing bytes mid-check", func(t *testing.T) {
		t.Parallel()
		p := testenv.StartProxy(t, u.Host)
		go func() {
			// The check is connected and polling the pending order by then.
			time.Sleep(500 * time.Millisecond)
			p.Stall()
		}()
		err, took := runCheckWithin(t, []string{"--database-url", through(p), "--wait", "1s"}, 3*bound, p.Restore)
		wantGaveUp(t, err, took, bound, "did not answer in time", "database "+dbName+" on "+p.Addr().String())
		if strings.Contains(err.Error(), password) {
			t.Errorf("the error shows the password: %v", err)
		}
	})

	t.Run("a connection dropped mid-check", func(t *testing.T) {
		t.Parallel()
		p := testenv.StartProxy(t, u.Host)
		go func() {
			// The check is polling the pending order by then.
			time.Sleep(2 * time.Second)
			p.Cut()
		}()
		err, took := runCheckWithin(t, []string{"--database-url", through(p), "--wait", "30s"}, 3*bound, p.Cut)
		wantGaveUp(t, err, took, 10*time.Second, "lost the connection to database "+dbName+" on "+p.Addr().String())
		if strings.Contains(err.Error(), password) {
			t.Errorf("the error shows the password: %v", err)
		}
	})
}

// runCheckWithin runs shop check with args and returns its error and how
// long it took. If it is still running after limit, unblock is called
// to let it end, and the test fails.
func runCheckWithin(t *testing.T, args []string, limit time.Duration, unblock func()) (error, time.Duration) {
	t.Helper()
	var out, errOut bytes.Buffer
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- run(context.Background(), append([]string{"check"}, args...), &out, &errOut) }()
	select {
	case err := <-done:
		return err, time.Since(start)
	case <-time.After(limit):
		unblock()
		err := <-done
		t.Fatalf("shop check %s still running after %v (it ended %v later once unblocked): %v\n%s", strings.Join(args, " "),
			limit, time.Since(start)-limit, err, out.String())
		return nil, 0
	}
}

// wantGaveUp wants err to be an error (exit 2), not a failure, returned
// within bound, containing each of wants.
func wantGaveUp(t *testing.T, err error, took, bound time.Duration, wants ...string) {
	t.Helper()
	var fail *failure
	if err == nil || errors.As(err, &fail) {
		t.Fatalf("after %v: err = %v, want an error (exit 2)", took, err)
	}
	t.Logf("after %v: %v", took.Round(time.Millisecond), err)
	if took > bound {
		t.Errorf("took %v, want at most %v: %v", took, bound, err)
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
}
