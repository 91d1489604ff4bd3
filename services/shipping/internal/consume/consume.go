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
// The inbox hands over the events of one transaction together
// (Handler.HandleBatch), and a batch costs two round trips whatever its
// size and mix: one locks the shipments of all its orders, in order-id
// order so concurrent batches queue rather than deadlock, reads their
// recorded cancellations and issues tracking numbers; the other sends
// every shipment, status change, history entry and result event. In
// between, the events are applied in memory in delivery order, so a
// batch has the outcome of its events applied one by one (Handle, which
// is a batch of one). There is no CPU-heavy work to spread: labels are
// rendered when fetched, not when booked.
package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"golang.org/x/text/unicode/norm"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/outbox"
	"github.com/shopflow/shopflow/pkg/platform/tracing"
	"github.com/shopflow/shopflow/services/shipping/internal/shipment"
	"github.com/shopflow/shopflow/services/shipping/internal/store"
)

// Source is the ce_source of the events the shipping service emits.
const Source = events.SourceShipping

// Handler applies order events to shipments.
type Handler struct {
	// Schedule books pickup slots.
	Schedule shipment.Schedule
	// Log receives a line per decision that is not the happy path.
	Log *slog.Logger
}

// Handle is an inbox.Handler: HandleBatch for one event.
func (h Handler) Handle(ctx context.Context, tx pgx.Tx, ev events.Event) error {
	return h.HandleBatch(ctx, tx, []inbox.Item{{Ctx: ctx, Event: ev}})
}

// HandleBatch is an inbox.BatchHandler: it applies items in delivery
// order inside tx, in two round trips whatever their number. The first
// locks the shipments of every order the items concern and reads what is
// known of them (store.LockOrders); the events are then applied to that
// state in memory, each seeing what the ones before it did, so the
// outcome is the per-event one; the second round trip sends every
// change, history entry and result event (each under its own event's
// trace). An event that fails (an address the carrier refuses) fails the
// batch with the error it has alone, and nothing is written; the inbox
// then applies smaller batches until that event is alone.
func (h Handler) HandleBatch(ctx context.Context, tx pgx.Tx, items []inbox.Item) error {
	var ids []string
	placed := map[string]bool{} // orders placed in the batch: at most one booking each
	for _, it := range items {
		switch p := it.Event.Payload.(type) {
		case events.OrderPlaced:
			ids = append(ids, p.OrderID)
			placed[p.OrderID] = true
		case events.OrderCancelled:
			ids = append(ids, p.OrderID)
		case events.OrderConfirmed:
			ids = append(ids, p.OrderID)
		}
	}
	if len(ids) == 0 {
		return nil // other order events are not shipping's business
	}
	orders, tracking, err := store.LockOrders(ctx, tx, ids, len(placed))
	if err != nil {
		return err
	}
	a := &apply{Handler: h, orders: orders, tracking: tracking}
	for _, it := range items {
		var err error
		switch p := it.Event.Payload.(type) {
		case events.OrderPlaced:
			err = a.placed(it, p)
		case events.OrderCancelled:
			a.cancelled(it, p)
		case events.OrderConfirmed:
			a.confirmed(it, p)
		}
		if err != nil {
			return err
		}
	}
	return a.send(ctx, tx)
}

func (h Handler) log() *slog.Logger {
	if h.Log == nil {
		return slog.Default()
	}
	return h.Log
}

// apply is one HandleBatch call's state: the orders as its events left
// them, and the writes that will make it so.
type apply struct {
	Handler
	orders   map[string]*store.State
	tracking []string // fresh tracking numbers, one per order placed in the batch

	inserts []store.Insert
	records []store.Cancellation
	ignored []string
	changes []store.StatusChange // in delivery order
	results []events.Event
}

// emit adds the result event of it, under its trace.
func (a *apply) emit(it inbox.Item, p events.Payload) {
	ev := events.New(Source, p)
	ev.TraceParent = tracing.TraceParent(it.Ctx)
	a.results = append(a.results, ev)
}

func (a *apply) placed(it inbox.Item, p events.OrderPlaced) error {
	st := a.orders[p.OrderID]
	switch {
	case st.Booked:
		a.log().InfoContext(it.Ctx, "order already has a shipment; OrderPlaced is a no-op", "order_id", p.OrderID, "event_id", it.Event.ID)
		return nil
	case st.CancelledFirst:
		a.log().WarnContext(it.Ctx, "order was cancelled before it was placed here; not scheduling", "order_id", p.OrderID, "event_id", it.Event.ID)
		a.ignored = append(a.ignored, p.OrderID)
		return nil
	}

	ad := p.ShippingAddress
	// In Unicode's composed form (NFC), as the order API stores it: a
	// letter and its combining accent are the label's one character.
	nfc := norm.NFC.String
	addr := shipment.Address{Name: nfc(ad.Name), Line1: nfc(ad.Line1), Line2: nfc(ad.Line2), City: nfc(ad.City),
		PostalCode: nfc(ad.PostalCode), Country: nfc(ad.Country)}
	if err := shipment.CheckAddress(addr); err != nil {
		return inbox.Permanent(fmt.Errorf("order %s: %w", p.OrderID, err))
	}
	if len(a.tracking) == 0 {
		return fmt.Errorf("order %s: no tracking number left for it", p.OrderID) // a bug: one is issued per order placed
	}
	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	pickup := a.Schedule.PickupAt(p.PlacedAt)
	s := shipment.Shipment{
		OrderID: p.OrderID, ShipmentID: id.String(), Carrier: shipment.Carrier, TrackingNumber: a.tracking[0],
		Status: shipment.StatusScheduled, Address: addr, PlacedAt: p.PlacedAt,
		PickupAt: pickup, PickupZone: pickup.Location().String(),
	}
	a.tracking = a.tracking[1:]
	// Lost to a concurrent booking, the insert fails with store.ErrBooked
	// and rolls back; the retry finds the shipment, which emitted the event.
	a.inserts = append(a.inserts, store.Insert{Shipment: s, EventID: it.Event.ID})
	st.Booked, st.ShipmentID, st.TrackingNumber, st.Status = true, s.ShipmentID, s.TrackingNumber, s.Status
	a.emit(it, events.ShipmentScheduled{OrderID: s.OrderID, ShipmentID: s.ShipmentID, Carrier: s.Carrier,
		TrackingNumber: s.TrackingNumber, PickupAt: pickup.UTC()})
	return nil
}

func (a *apply) cancelled(it inbox.Item, p events.OrderCancelled) {
	st := a.orders[p.OrderID]
	if !st.Booked {
		first := !st.CancelledFirst
		if first {
			a.records = append(a.records, store.Cancellation{OrderID: p.OrderID, EventID: it.Event.ID, Reason: p.Reason,
				CancelledAt: p.CancelledAt})
			st.CancelledFirst = true
		}
		a.log().InfoContext(it.Ctx, "cancellation of an order without a shipment recorded; nothing to compensate",
			"order_id", p.OrderID, "event_id", it.Event.ID, "first", first)
		return
	}
	next, changed := shipment.Cancel(st.Status)
	if !changed {
		a.log().InfoContext(it.Ctx, "shipment already cancelled; OrderCancelled is a no-op", "order_id", p.OrderID, "event_id", it.Event.ID)
		return
	}
	st.Status = next
	a.changes = append(a.changes, store.StatusChange{OrderID: p.OrderID, Status: next, EventID: it.Event.ID, Note: "order cancelled: " + p.Reason, Reason: p.Reason})
	a.emit(it, events.ShipmentCancelled{OrderID: p.OrderID, ShipmentID: st.ShipmentID, TrackingNumber: st.TrackingNumber})
}

func (a *apply) confirmed(it inbox.Item, p events.OrderConfirmed) {
	st := a.orders[p.OrderID]
	if !st.Booked {
		// The order service confirms only after ShipmentScheduled, so this
		// means the shipment was lost here: say so loudly, but retrying
		// cannot bring it back.
		a.log().ErrorContext(it.Ctx, "OrderConfirmed for an order without a shipment", "order_id", p.OrderID, "event_id", it.Event.ID)
		return
	}
	next, changed := shipment.Confirm(st.Status)
	if !changed {
		if st.Status == shipment.StatusCancelled {
			a.log().WarnContext(it.Ctx, "OrderConfirmed for a cancelled shipment; it stays cancelled", "order_id", p.OrderID, "event_id", it.Event.ID)
		}
		return
	}
	st.Status = next
	a.changes = append(a.changes, store.StatusChange{OrderID: p.OrderID, Status: next, EventID: it.Event.ID, Note: "order confirmed: ready for pickup"})
}

// send sends every write and the outbox insert of the result events in
// one round trip: new shipments before the status changes that may
// concern them, recorded cancellations before the notes on them. An
// event that fails its own contract is a bug no retry fixes: permanent.
func (a *apply) send(ctx context.Context, tx pgx.Tx) error {
	b := &pgx.Batch{}
	store.QueueInsert(b, a.inserts...)
	store.QueueRecordCancellations(b, a.records...)
	store.QueueMarkPlacedIgnored(b, a.ignored...)
	store.QueueSetStatuses(b, a.changes...)
	err := outbox.Queue(ctx, b, a.results...)
	var de *events.DecodeError
	if errors.As(err, &de) {
		return inbox.Permanent(err)
	}
	if err != nil {
		return err
	}
	if b.Len() == 0 {
		return nil
	}
	return tx.SendBatch(ctx, b).Close()
}
