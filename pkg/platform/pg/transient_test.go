package pg_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shopflow/shopflow/pkg/platform/pg"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// TestTransientAndUnavailable: a lost race is worth retrying but says
// nothing about the database; a database or connection gone is both.
func TestTransientAndUnavailable(t *testing.T) {
	t.Parallel()
	code := func(c string) error { return fmt.Errorf("query: %w", &pgconn.PgError{Code: c}) }
	for _, tc := range []struct {
		name                   string
		err                    error
		transient, unavailable bool
	}{
		{"nil", nil, false, false},
		{"deadlock", code("40P01"), true, false},
		{"serialization failure", code("40001"), true, false},
		{"lock not available", code("55P03"), true, false},
		{"admin shutdown", code("57P01"), true, true},
		{"cannot connect now", code("57P03"), true, true},
		{"too many connections", code("53300"), true, true},
		{"read-only transaction", code("25006"), true, true},
		{"disk full", code("53100"), true, true},
		{"connection failure", code("08006"), true, true},
		{"deadline", context.DeadlineExceeded, true, true},
		// How pgx reports a connection closed under a statement (pg_ctl
		// -m immediate, a crash): no net.Error.
		{"connection closed mid-statement", fmt.Errorf("failed to receive message: %w", io.ErrUnexpectedEOF), true, true},
		{"connection closed", fmt.Errorf("read: %w", io.EOF), true, true},
		{"unique violation", code("23505"), false, false},
		{"statement cancelled", code("57014"), false, false},
		{"cancelled", context.Canceled, false, false},
		{"plain error", io.ErrShortWrite, false, false},
		{"other", errors.New("x"), false, false},
		// The connection to the server lost mid-statement: pgx returns
		// the network layer's error as it is.
		{"connection reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, true, true},
		// A handler's request to another service is not the database's,
		// and retrying it for ever left it out of MaxAttempts; a timeout
		// is still worth retrying, whoever's.
		{"a handler's HTTP call refused", fmt.Errorf("notify: %w", &url.Error{Op: "Post", URL: "http://carrier/labels",
			Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}), false, false},
		{"a handler's HTTP call reset", &url.Error{Op: "Post", URL: "http://carrier/labels",
			Err: &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}}, false, false},
		{"a handler's HTTP call cut short", &url.Error{Op: "Get", URL: "http://carrier/labels", Err: io.ErrUnexpectedEOF}, false, false},
		{"a handler's dial refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, false, false},
		{"a handler's HTTP call timed out", &url.Error{Op: "Post", URL: "http://carrier/labels", Err: context.DeadlineExceeded}, true, true},
	} {
		if got := pg.Transient(tc.err); got != tc.transient {
			t.Errorf("%s: Transient = %v, want %v", tc.name, got, tc.transient)
		}
		if got := pg.Unavailable(tc.err); got != tc.unavailable {
			t.Errorf("%s: Unavailable = %v, want %v", tc.name, got, tc.unavailable)
		}
	}
}

// TestDown: the database refused or could not be reached, and the work
// was not done; not a timeout, a lost connection or another service's
// network error, whose work may have been done or which are not the
// database's.
func TestDown(t *testing.T) {
	t.Parallel()
	code := func(c string) error { return fmt.Errorf("query: %w", &pgconn.PgError{Code: c}) }
	for _, tc := range []struct {
		name string
		err  error
		down bool
	}{
		{"nil", nil, false},
		{"admin shutdown", code("57P01"), true},
		{"cannot connect now", code("57P03"), true},
		{"too many connections", code("53300"), true},
		{"disk full", code("53100"), true},
		{"out of memory (a statement's own, maybe: dead-lettered after its attempts)", code("53200"), false},
		{"read-only transaction", code("25006"), true},
		{"connection failure", code("08006"), true},
		{"deadline", context.DeadlineExceeded, false},
		{"connection closed mid-statement", fmt.Errorf("failed to receive message: %w", io.ErrUnexpectedEOF), false},
		{"another service's dial", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, false},
		{"deadlock", code("40P01"), false},
		{"unique violation", code("23505"), false},
		{"cancelled", context.Canceled, false},
	} {
		if got := pg.Down(tc.err); got != tc.down {
			t.Errorf("%s: Down = %v, want %v", tc.name, got, tc.down)
		}
	}
	// A server that refuses the connection: what a pool gives while the
	// database is down.
	_, err := pgx.Connect(context.Background(), "postgres://postgres@127.0.0.1:1/x?connect_timeout=2")
	if err == nil || !pg.Down(err) {
		t.Errorf("connect to a closed port: %v, Down %v; want true", err, pg.Down(err))
	}
}

// What a real PostgreSQL gives when it goes away stays transient: a
// connection it ends mid-session (an admin shutdown, a crash: here its
// backend terminated), one the network cuts (a proxy between that resets
// it), and a server that refuses the connection.
func TestARealOutageIsTransient(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	admin, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend($1)`, conn.PgConn().PID()); err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, `SELECT 1`)
	if err == nil || !pg.Transient(err) || !pg.Unavailable(err) {
		t.Errorf("a query on a terminated backend: %v; Transient %v, Unavailable %v, want both", err, pg.Transient(err), pg.Unavailable(err))
	}

	proxy := testenv.StartProxy(t, net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))))
	proxied := cfg.Copy()
	proxied.Host, proxied.Port = "127.0.0.1", uint16(proxy.Addr().Port)
	viaProxy, err := pgx.ConnectConfig(ctx, proxied)
	if err != nil {
		t.Fatal(err)
	}
	defer viaProxy.Close(ctx)
	proxy.Reset()
	time.Sleep(100 * time.Millisecond) // the reset reaches the client
	_, err = viaProxy.Exec(ctx, `SELECT 1`)
	if err == nil || !pg.Transient(err) || !pg.Unavailable(err) {
		t.Errorf("a query on a connection the network reset: %v; Transient %v, Unavailable %v, want both", err, pg.Transient(err), pg.Unavailable(err))
	}
	_, err = pgx.Connect(ctx, "postgres://postgres@127.0.0.1:1/x?connect_timeout=2")
	if err == nil || !pg.Transient(err) {
		t.Errorf("connect to a closed port: %v, Transient %v; want true", err, pg.Transient(err))
	}
}
