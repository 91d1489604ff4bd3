// Package consume turns the order events the inventory consumes into use
// cases, and classifies their failures for the inbox: an error no retry can
// fix (the event contradicts the contract or what was recorded, or the
// database rejects the data itself) is inbox.Permanent and goes to the
// dead-letter topic with its reason at once; anything else (a lost
// connection, a lock timeout, a deadlock) is returned as is and retried
// with capped backoff.
//
// The inbox hands over the events of one transaction together
// (BatchHandler), and the inventory's events among them, whatever their
// number and mix of OrderPlaced, OrderCancelled and OrderConfirmed, cost
// two round trips (app.Service.Apply): one claims, locks and reads
// everything they touch, the other writes every change and result event.
// The consumer is one serial line of transactions (one worker: every
// order locks rows of the same few SKUs), so round trips per event are
// its throughput. Handler, for one event, is the same code.
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

// Handler returns the inbox handler for shop.orders: the batch handler
// for one event. Event types other than OrderPlaced, OrderCancelled and
// OrderConfirmed are not the inventory's business and are skipped (their
// inbox row still records them).
func Handler(svc *app.Service, log *slog.Logger) inbox.Handler {
	apply := applier(svc, log)
	return func(ctx context.Context, tx pgx.Tx, ev events.Event) error {
		_, err := apply(ctx, tx, []inbox.Item{{Ctx: ctx, Event: ev}})
		return err
	}
}

// BatchHandler returns the inbox's batch handler for shop.orders: every
// OrderPlaced, OrderCancelled and OrderConfirmed of the batch goes to
// Service.Apply together, in delivery order, in two round trips whatever
// their number and mix; other events are skipped. An event that fails is
// named to the inbox (inbox.ItemFailed) with its error classified as
// Handler's would be, so the inbox applies the events before it as one
// batch, it alone (retries, dead letter), and the rest as a batch.
func BatchHandler(svc *app.Service, log *slog.Logger) inbox.BatchHandler {
	apply := applier(svc, log)
	return func(ctx context.Context, tx pgx.Tx, items []inbox.Item) error {
		failed, err := apply(ctx, tx, items)
		if failed >= 0 {
			return inbox.ItemFailed(failed, err)
		}
		return err
	}
}

// applier returns the function both handlers run: it applies the
// inventory's events among items and returns the classified error, and
// the index in items of the event that failed, if one did (else -1).
func applier(svc *app.Service, log *slog.Logger) func(ctx context.Context, tx pgx.Tx, items []inbox.Item) (int, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return func(ctx context.Context, tx pgx.Tx, items []inbox.Item) (int, error) {
		evs := make([]app.Event, 0, len(items))
		at := make([]int, 0, len(items)) // evs[k] is items[at[k]]
		for i, it := range items {
			switch it.Event.Payload.(type) {
			case events.OrderPlaced, events.OrderCancelled, events.OrderConfirmed:
				evs = append(evs, app.Event{Ctx: it.Ctx, Payload: it.Event.Payload})
				at = append(at, i)
			}
		}
		if len(evs) == 0 {
			return -1, nil
		}
		outs, err := svc.Apply(ctx, tx, evs)
		if ee, ok := errors.AsType[*app.EventError](err); ok {
			return at[ee.Index], Classify(ee.Err)
		}
		if err != nil {
			return -1, Classify(err)
		}
		for k, out := range outs {
			ev := items[at[k]]
			log.DebugContext(ev.Ctx, "applied", "type", ev.Event.Type, "event_id", ev.Event.ID, "order_id", ev.Event.Subject, "outcome", out)
		}
		return -1, nil
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
