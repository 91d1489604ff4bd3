package pg_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

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
