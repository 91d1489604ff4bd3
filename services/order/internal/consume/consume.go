// Package consume turns the payment, inventory and shipping services'
// result events into saga results for the order use cases (consumer group
// "order", through the inbox).
package consume

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/services/order/internal/app"
	"github.com/shopflow/shopflow/services/order/internal/order"
)

// Handler returns the inbox's batch handler applying results through a:
// the results of one transaction go to App.ApplyAll together. Errors are
// classified for the inbox: a result not from the service that owns its
// step (its ce_source), or one that does not fit its order (a
// *app.ResultError: no such order, another amount or other lines), is
// permanent and named as the failing item, so the inbox applies the
// others without it and dead-letters it; anything else is retried (the
// batch split in halves until the failing event is alone).
func Handler(a *app.App) inbox.BatchHandler {
	return func(ctx context.Context, tx pgx.Tx, items []inbox.Item) error {
		results := make([]app.StepResult, 0, len(items))
		at := make([]int, 0, len(items)) // results[k] is items[at[k]]
		for i, it := range items {
			id, r, ok := Translate(it.Event.Payload)
			if !ok {
				continue // not a result (or not one the order tracks)
			}
			// An upper-case id of a real order was dead-lettered as an
			// unknown order (found by PostgreSQL, missed by the lookup by
			// text), a "urn:uuid:" one retried as a database failure.
			if err := events.CheckOrderID(id); err != nil {
				return inbox.ItemFailed(i, inbox.Permanent(fmt.Errorf("%s: %w", it.Event.Type, err)))
			}
			// Anyone who may write to a result topic could otherwise
			// answer for a step: a forged authorization confirmed an
			// order whose payment was then declined.
			if want := it.Event.Type.Source(); it.Event.Source != want {
				return inbox.ItemFailed(i, inbox.Permanent(fmt.Errorf("%s for order %s comes from %q: the order service applies it only from %q",
					it.Event.Type, id, it.Event.Source, want)))
			}
			results = append(results, app.StepResult{Ctx: it.Ctx, OrderID: id, Result: r, At: it.Event.Time,
				EventID: it.Event.ID})
			at = append(at, i)
		}
		err := a.ApplyAll(ctx, tx, results)
		if re, ok := errors.AsType[*app.ResultError](err); ok {
			// Orders exist before any event about them is published, and
			// their totals and lines do not change: retrying won't help.
			return inbox.ItemFailed(at[re.Index], inbox.Permanent(re.Err))
		}
		return err
	}
}

// Translate maps a result event to its order and saga result; ok is false
// for events that are not step results. The result keeps the money and
// the stock lines the event names, for ApplyAll to check against the
// order.
func Translate(p events.Payload) (orderID string, r order.Result, ok bool) {
	switch e := p.(type) {
	case events.PaymentAuthorized:
		return e.OrderID, order.Result{Step: order.PaymentAuthorized, Amount: amount(e.AmountCents, e.Currency)}, true
	case events.PaymentDeclined:
		return e.OrderID, order.Result{Step: order.PaymentDeclined, Reason: e.Reason, Amount: amount(e.AmountCents, e.Currency)}, true
	case events.PaymentRefunded:
		step := order.PaymentRefunded
		if e.Kind == events.RefundKindVoid {
			step = order.PaymentVoided
		}
		return e.OrderID, order.Result{Step: step, Amount: amount(e.AmountCents, e.Currency)}, true
	case events.StockReserved:
		return e.OrderID, order.Result{Step: order.StockReserved, Stock: stock(e.Items)}, true
	case events.StockRejected:
		short := make([]string, len(e.Short))
		asked := make(map[string]int, len(e.Short))
		for i, s := range e.Short {
			short[i] = fmt.Sprintf("%s (wanted %d, %d available)", s.SKU, s.Requested, s.Available)
			asked[s.SKU] += s.Requested
		}
		return e.OrderID, order.Result{Step: order.StockRejected, Reason: strings.Join(short, ", "),
			Stock: asked, Partial: true}, true
	case events.StockReleased:
		return e.OrderID, order.Result{Step: order.StockReleased, Stock: stock(e.Items)}, true
	case events.ShipmentScheduled:
		return e.OrderID, order.Result{Step: order.ShipmentScheduled, TrackingNumber: e.TrackingNumber}, true
	case events.ShipmentCancelled:
		return e.OrderID, order.Result{Step: order.ShipmentCancelled}, true
	}
	return "", order.Result{}, false
}

func amount(cents int64, currency string) *order.Amount {
	return &order.Amount{Cents: cents, Currency: currency}
}

// stock sums lines by SKU.
func stock(lines []events.StockLine) map[string]int {
	q := make(map[string]int, len(lines))
	for _, l := range lines {
		q[l.SKU] += l.Quantity
	}
	return q
}
