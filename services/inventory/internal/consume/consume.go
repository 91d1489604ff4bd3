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

// BatchHandler returns the inbox's batch handler for shop.orders: runs of
// OrderPlaced go to Service.ReserveAll together (the hot path: two round
// trips for the run), every other event through Handler, all in delivery
// order. When a run fails, the inbox splits the batch until the failing
// event is alone, so its error is classified as Handler's would be.
func BatchHandler(svc *app.Service, log *slog.Logger) inbox.BatchHandler {
	one := Handler(svc, log)
	return func(ctx context.Context, tx pgx.Tx, items []inbox.Item) error {
		for i := 0; i < len(items); {
			var run []app.Placed
			for ; i < len(items); i++ {
				p, ok := items[i].Event.Payload.(events.OrderPlaced)
				if !ok {
					break
				}
				run = append(run, app.Placed{Ctx: items[i].Ctx, Event: p})
			}
			if len(run) > 0 {
				if _, err := svc.ReserveAll(ctx, tx, run); err != nil {
					return Classify(err)
				}
				continue
			}
			if err := one(items[i].Ctx, tx, items[i].Event); err != nil {
				return err
			}
			i++
		}
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
