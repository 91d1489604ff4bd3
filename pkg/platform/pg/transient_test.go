package pg_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shopflow/shopflow/pkg/platform/pg"
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
		{"unique violation", code("23505"), false, false},
		{"statement cancelled", code("57014"), false, false},
		{"cancelled", context.Canceled, false, false},
		{"plain error", io.ErrShortWrite, false, false},
		{"other", errors.New("x"), false, false},
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
		{"out of memory", code("53200"), true},
		{"read-only transaction", code("25006"), true},
		{"connection failure", code("08006"), true},
		{"deadline", context.DeadlineExceeded, false},
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
