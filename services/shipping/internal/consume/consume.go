// Package consume applies the order events the shipping service consumes
// from shop.orders, inside the inbox's transaction:
//
//   - OrderPlaced books a shipment (tracking number, pickup slot) and emits
//     ShipmentScheduled. An address the carrier cannot take is a permanent
//     error: the record goes to the dead-letter topic with the reason.
//   - OrderCancelled cancels the shipment and emits ShipmentCancelled. A
//     cancellation of an order never scheduled here is recorded and emits
//     nothing; cancelling a cancelled shipment changes nothing.
//   - OrderConfirmed marks the shipment ready for pickup (status only; no
//     event, since nobody waits on it).
//
// Each is idempotent beyond the inbox's per-event dedup: a second
// OrderPlaced for an order (a re-publication under a new event id) finds
// the shipment and does nothing. Database errors are returned as they are,
// which the inbox treats as transient and retries.
//
// Each costs two round trips: a read (the booking lookup, or the
// shipment's row lock), then the changes with their history entry and
// result event in one batch.
package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/outbox"
	"github.com/shopflow/shopflow/services/shipping/internal/shipment"
	"github.com/shopflow/shopflow/services/shipping/internal/store"
)

// Source is the ce_source of the events the shipping service emits.
const Source = "/shopflow/shipping"

// Handler applies order events to shipments.
type Handler struct {
	// Schedule books pickup slots.
	Schedule shipment.Schedule
	// Log receives a line per decision that is not the happy path.
	Log *slog.Logger
}

// Handle is an inbox.Handler.
func (h Handler) Handle(ctx context.Context, tx pgx.Tx, ev events.Event) error {
	switch p := ev.Payload.(type) {
	case events.OrderPlaced:
		return h.placed(ctx, tx, ev.ID, p)
	case events.OrderCancelled:
		return h.cancelled(ctx, tx, ev.ID, p)
	case events.OrderConfirmed:
		return h.confirmed(ctx, tx, ev.ID, p)
	}
	return nil // other order events are not shipping's business
}

func (h Handler) log() *slog.Logger {
	if h.Log == nil {
		return slog.Default()
	}
	return h.Log
}

func (h Handler) placed(ctx context.Context, tx pgx.Tx, eventID string, p events.OrderPlaced) error {
	b, err := store.PrepareBooking(ctx, tx, p.OrderID)
	switch {
	case err != nil:
		return err
	case b.Booked:
		h.log().Info("order already has a shipment; OrderPlaced is a no-op", "order_id", p.OrderID, "event_id", eventID)
		return nil
	case b.CancelledFirst:
		h.log().Warn("order was cancelled before it was placed here; not scheduling", "order_id", p.OrderID, "event_id", eventID)
		return store.MarkPlacedIgnored(ctx, tx, p.OrderID)
	}

	a := p.ShippingAddress
	addr := shipment.Address{Name: a.Name, Line1: a.Line1, Line2: a.Line2, City: a.City, PostalCode: a.PostalCode, Country: a.Country}
	if err := shipment.CheckAddress(addr); err != nil {
		return inbox.Permanent(fmt.Errorf("order %s: %w", p.OrderID, err))
	}
	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	pickup := h.Schedule.PickupAt(p.PlacedAt)
	s := shipment.Shipment{
		OrderID: p.OrderID, ShipmentID: id.String(), Carrier: shipment.Carrier, TrackingNumber: b.TrackingNumber,
		Status: shipment.StatusScheduled, Address: addr, PlacedAt: p.PlacedAt,
		PickupAt: pickup, PickupZone: pickup.Location().String(),
	}
	// Lost to a concurrent booking, this fails with store.ErrBooked and
	// rolls back; the retry finds the shipment, which emitted the event.
	batch := &pgx.Batch{}
	store.QueueInsert(batch, s, eventID)
	return send(ctx, tx, batch, events.ShipmentScheduled{OrderID: s.OrderID, ShipmentID: s.ShipmentID, Carrier: s.Carrier,
		TrackingNumber: s.TrackingNumber, PickupAt: pickup.UTC()})
}

func (h Handler) cancelled(ctx context.Context, tx pgx.Tx, eventID string, p events.OrderCancelled) error {
	s, err := store.Lock(ctx, tx, p.OrderID)
	if errors.Is(err, store.ErrNotFound) {
		fresh, err := store.RecordCancellation(ctx, tx, store.Cancellation{OrderID: p.OrderID, EventID: eventID,
			Reason: p.Reason, CancelledAt: p.CancelledAt})
		if err == nil {
			h.log().Info("cancellation of an order without a shipment recorded; nothing to compensate",
				"order_id", p.OrderID, "event_id", eventID, "first", fresh)
		}
		return err
	}
	if err != nil {
		return err
	}
	next, changed := shipment.Cancel(s.Status)
	if !changed {
		h.log().Info("shipment already cancelled; OrderCancelled is a no-op", "order_id", p.OrderID, "event_id", eventID)
		return nil
	}
	b := &pgx.Batch{}
	store.QueueSetStatus(b, p.OrderID, next, eventID, "order cancelled: "+p.Reason, p.Reason)
	return send(ctx, tx, b, events.ShipmentCancelled{OrderID: s.OrderID, ShipmentID: s.ShipmentID, TrackingNumber: s.TrackingNumber})
}

func (h Handler) confirmed(ctx context.Context, tx pgx.Tx, eventID string, p events.OrderConfirmed) error {
	s, err := store.Lock(ctx, tx, p.OrderID)
	if errors.Is(err, store.ErrNotFound) {
		// The order service confirms only after ShipmentScheduled, so this
		// means the shipment was lost here: say so loudly, but retrying
		// cannot bring it back.
		h.log().Error("OrderConfirmed for an order without a shipment", "order_id", p.OrderID, "event_id", eventID)
		return nil
	}
	if err != nil {
		return err
	}
	next, changed := shipment.Confirm(s.Status)
	if !changed {
		if s.Status == shipment.StatusCancelled {
			h.log().Warn("OrderConfirmed for a cancelled shipment; it stays cancelled", "order_id", p.OrderID, "event_id", eventID)
		}
		return nil
	}
	b := &pgx.Batch{}
	store.QueueSetStatus(b, p.OrderID, next, eventID, "order confirmed: ready for pickup", "")
	return send(ctx, tx, b, nil)
}

// send sends the changes queued in b and the outbox insert of their result
// event (none when p is nil) in one round trip. An event that fails its
// own contract is a bug no retry fixes: permanent.
func send(ctx context.Context, tx pgx.Tx, b *pgx.Batch, p events.Payload) error {
	if p != nil {
		err := outbox.Queue(ctx, b, events.New(Source, p))
		var de *events.DecodeError
		if errors.As(err, &de) {
			return inbox.Permanent(err)
		}
		if err != nil {
			return err
		}
	}
	return tx.SendBatch(ctx, b).Close()
}
