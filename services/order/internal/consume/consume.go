// Package consume turns the payment, inventory and shipping services'
// result events into saga results for the order use cases (consumer group
// "order", through the inbox).
package consume

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/services/order/internal/app"
	"github.com/shopflow/shopflow/services/order/internal/order"
)

// Handler returns the inbox's batch handler applying results through a:
// the results of one transaction go to App.ApplyAll together. A batch
// that fails is split by the inbox until the failing event is alone; the
// errors are classified for that case: an event about no order of ours
// is permanent (dead-lettered), anything else is retried.
func Handler(a *app.App) inbox.BatchHandler {
	return func(ctx context.Context, tx pgx.Tx, items []inbox.Item) error {
		results := make([]app.StepResult, 0, len(items))
		for _, it := range items {
			id, r, ok := Translate(it.Event.Payload)
			if !ok {
				continue // not a result (or not one the order tracks)
			}
			if _, err := uuid.Parse(id); err != nil {
				return inbox.Permanent(fmt.Errorf("%s for %q: not an order id", it.Event.Type, id))
			}
			results = append(results, app.StepResult{Ctx: it.Ctx, OrderID: id, Result: r, At: it.Event.Time})
		}
		err := a.ApplyAll(ctx, tx, results)
		if errors.Is(err, app.ErrNotFound) {
			// Orders exist before any event about them is published, so
			// this is someone else's (or a corrupt) event: retrying won't help.
			return inbox.Permanent(err)
		}
		return err
	}
}

// Translate maps a result event to its order and saga result; ok is false
// for events that are not step results.
func Translate(p events.Payload) (orderID string, r order.Result, ok bool) {
	switch e := p.(type) {
	case events.PaymentAuthorized:
		return e.OrderID, order.Result{Step: order.PaymentAuthorized}, true
	case events.PaymentDeclined:
		return e.OrderID, order.Result{Step: order.PaymentDeclined, Reason: e.Reason}, true
	case events.PaymentRefunded:
		step := order.PaymentRefunded
		if e.Kind == "void" {
			step = order.PaymentVoided
		}
		return e.OrderID, order.Result{Step: step}, true
	case events.StockReserved:
		return e.OrderID, order.Result{Step: order.StockReserved}, true
	case events.StockRejected:
		short := make([]string, len(e.Short))
		for i, s := range e.Short {
			short[i] = fmt.Sprintf("%s (wanted %d, %d available)", s.SKU, s.Requested, s.Available)
		}
		return e.OrderID, order.Result{Step: order.StockRejected, Reason: strings.Join(short, ", ")}, true
	case events.StockReleased:
		return e.OrderID, order.Result{Step: order.StockReleased}, true
	case events.ShipmentScheduled:
		return e.OrderID, order.Result{Step: order.ShipmentScheduled, TrackingNumber: e.TrackingNumber}, true
	case events.ShipmentCancelled:
		return e.OrderID, order.Result{Step: order.ShipmentCancelled}, true
	}
	return "", order.Result{}, false
}
