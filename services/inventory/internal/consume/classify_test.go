package consume

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/services/inventory/internal/stock"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	pgErr := func(code string) error { return fmt.Errorf("hold stock: %w", &pgconn.PgError{Code: code}) }
	for _, tc := range []struct {
		name      string
		err       error
		permanent bool
	}{
		{"conflict", fmt.Errorf("commit o1: %w", stock.ErrConflict), true},
		{"invalid order", fmt.Errorf("reserve o1: %w", stock.ErrInvalid), true},
		{"unencodable event", fmt.Errorf("outbox: %w", &events.DecodeError{Kind: events.ErrInvalidField}), true},
		{"check violation", pgErr("23514"), true},
		{"numeric out of range", pgErr("22003"), true},
		{"already permanent", inbox.Permanent(errors.New("x")), true},
		{"deadlock", pgErr("40P01"), false},
		{"serialization", pgErr("40001"), false},
		{"lock timeout", pgErr("55P03"), false},
		{"connection lost", pgErr("08006"), false},
		{"deadline", context.DeadlineExceeded, false},
		{"undefined table (a deploy in progress)", pgErr("42P01"), false},
		{"unknown", errors.New("boom"), false},
	} {
		got := Classify(tc.err)
		if !errors.Is(got, tc.err) {
			t.Errorf("%s: Classify lost the cause: %v", tc.name, got)
		}
		if inbox.IsPermanent(got) != tc.permanent {
			t.Errorf("%s: Classify(%v) permanent = %v, want %v", tc.name, tc.err, inbox.IsPermanent(got), tc.permanent)
		}
	}
	if Classify(nil) != nil {
		t.Error("Classify(nil) != nil")
	}
}
