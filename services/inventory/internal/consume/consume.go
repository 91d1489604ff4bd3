// Package consume turns the order events the inventory consumes into use
// cases, and classifies their failures for the inbox: an error no retry can
// fix (the event contradicts the contract or what was recorded, or the
// database rejects the data itself) is inbox.Permanent and goes to the
// dead-letter topic with its reason at once; anything else (a lost
// connection, a lock timeout, a deadlock) is returned as is and retried
// with capped backoff.
package consume

import (
	"context"
	"errors"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/pg"
	"github.com/shopflow/shopflow/services/inventory/internal/app"
	"github.com/shopflow/shopflow/services/inventory/internal/stock"
)

// Handler returns the inbox handler for shop.orders. Event types other
// than OrderPlaced, OrderCancelled and OrderConfirmed are not the
// inventory's business and are skipped (their inbox row still records
// them).
func Handler(svc *app.Service, log *slog.Logger) inbox.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return func(ctx context.Context, tx pgx.Tx, ev events.Event) error {
		var (
			out app.Outcome
			err error
		)
		switch p := ev.Payload.(type) {
		case events.OrderPlaced:
			out, err = svc.Reserve(ctx, tx, p)
		case events.OrderCancelled:
			out, err = svc.Release(ctx, tx, p)
		case events.OrderConfirmed:
			out, err = svc.Commit(ctx, tx, p)
		default:
			return nil
		}
		if err != nil {
			return Classify(err)
		}
		log.DebugContext(ctx, "applied", "type", ev.Type, "event_id", ev.ID, "order_id", ev.Subject, "outcome", out)
		return nil
	}
}

// Classify marks err permanent when retrying cannot help: a broken
// business rule (stock.ErrInvalid, stock.ErrConflict), an event the outbox
// refuses to encode, or a PostgreSQL data exception (class 22) or
// integrity violation (class 23). Transient database failures and
// anything unknown stay retryable; the inbox dead-letters those after its
// MaxAttempts anyway.
func Classify(err error) error {
	if err == nil || inbox.IsPermanent(err) {
		return err
	}
	if pg.Transient(err) {
		return err
	}
	var decode *events.DecodeError
	if errors.Is(err, stock.ErrInvalid) || errors.Is(err, stock.ErrConflict) || errors.As(err, &decode) {
		return inbox.Permanent(err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && len(pgErr.Code) == 5 && (pgErr.Code[:2] == "22" || pgErr.Code[:2] == "23") {
		return inbox.Permanent(err)
	}
	return err
}
