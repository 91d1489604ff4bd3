// Package consume applies the order events the payment service consumes
// (shop.orders) inside the inbox's transaction:
//
//	OrderPlaced    → authorize at the gateway → PaymentAuthorized | PaymentDeclined
//	OrderConfirmed → capture (recorded in status and history; no event type exists)
//	OrderCancelled → void before capture, refund after → PaymentRefunded{kind}
//
// Each application locks the order's payment row, asks the domain what the
// event means in the payment's state, calls the gateway if it must, and
// writes the new state, a history entry and any result event (through the
// outbox) in the inbox's transaction. Whatever the domain calls a no-op is
// still recorded in the history, and emits nothing. An event costs two
// round trips of its own: the lock, then its writes and result event
// together (see save).
//
// The gateway is called outside that transaction, by necessity: it is
// another system. Its calls carry the order id as idempotency key, so when
// the transaction rolls back after the gateway answered (the answer lost,
// the database failing, a crash) the retry gets the same answer and the
// card is not charged twice.
//
// Errors are classified for the inbox: gateway timeouts and unavailability
// and database hiccups are transient (retried with backoff); content no
// retry can fix (an unsupported currency, a gateway rejection) is
// inbox.Permanent and goes to the dead-letter topic with the reason.
package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/outbox"
	"github.com/shopflow/shopflow/services/payment/internal/gateway"
	"github.com/shopflow/shopflow/services/payment/internal/payment"
	"github.com/shopflow/shopflow/services/payment/internal/store"
)

// Source is the ce_source of the events the payment service publishes.
const Source = "/shopflow/payment"

// Handler applies order events to payments. Use its Handle method as the
// inbox.Handler.
type Handler struct {
	gw  gateway.Gateway
	log *slog.Logger
	now func() time.Time
}

// New returns a Handler calling gw.
func New(gw gateway.Gateway, log *slog.Logger) *Handler {
	if log == nil {
		log = slog.Default()
	}
	return &Handler{gw: gw, log: log.With("component", "consume"), now: func() time.Time { return time.Now().UTC() }}
}

// Handle implements inbox.Handler. Event types other than the three order
// events it acts on are ignored.
func (h *Handler) Handle(ctx context.Context, tx pgx.Tx, ev events.Event) error {
	var err error
	switch p := ev.Payload.(type) {
	case events.OrderPlaced:
		err = h.placed(ctx, tx, ev, p)
	case events.OrderConfirmed:
		err = h.confirmed(ctx, tx, ev, p)
	case events.OrderCancelled:
		err = h.cancelled(ctx, tx, ev, p)
	default:
		return nil
	}
	return classify(err)
}

// classify marks the errors no retry can fix as permanent. Everything else
// stays transient for the inbox: gateway timeouts and unavailability,
// database errors (a constraint violation from a concurrent delivery of the
// same order is resolved by the retry, which finds the winner's row).
func classify(err error) error {
	switch {
	case err == nil, inbox.IsPermanent(err), gateway.Transient(err):
		return err
	case errors.Is(err, gateway.ErrRejected),
		errors.Is(err, payment.ErrUnsupportedCurrency),
		errors.Is(err, payment.ErrInvalidAmount):
		return inbox.Permanent(err)
	}
	return err
}

func (h *Handler) placed(ctx context.Context, tx pgx.Tx, ev events.Event, p events.OrderPlaced) error {
	cur, err := store.Lock(ctx, tx, p.OrderID)
	if err != nil {
		return err
	}
	d := payment.OnPlaced(cur)
	if d.Step != payment.Authorize {
		return h.skip(ctx, tx, ev, p.OrderID, cur, d)
	}
	if err := payment.CheckAmount(p.TotalCents, p.Currency); err != nil {
		return fmt.Errorf("order %s: %w", p.OrderID, err)
	}
	auth, err := h.gw.Authorize(ctx, gateway.AuthorizeRequest{
		IdempotencyKey: p.OrderID, CardToken: p.Payment.CardToken, AmountCents: p.TotalCents, Currency: p.Currency})
	if err != nil {
		return fmt.Errorf("authorize order %s: %w", p.OrderID, err)
	}
	now := h.now()
	pay := &payment.Payment{OrderID: p.OrderID, PaymentID: uuid.Must(uuid.NewV7()).String(),
		AmountCents: p.TotalCents, Currency: p.Currency, ChargeID: auth.ChargeID, CreatedAt: now}
	var (
		result events.Payload
		detail string
	)
	if auth.Approved {
		pay.Status, pay.AuthorizationCode = payment.StatusAuthorized, auth.Code
		detail = "authorized by the gateway, code " + auth.Code
		result = events.PaymentAuthorized{OrderID: p.OrderID, PaymentID: pay.PaymentID,
			AmountCents: pay.AmountCents, Currency: pay.Currency, AuthorizationCode: auth.Code}
	} else {
		pay.Status, pay.Reason = payment.StatusDeclined, auth.DeclineReason
		detail = "declined by the gateway: " + auth.DeclineReason
		result = events.PaymentDeclined{OrderID: p.OrderID, AmountCents: pay.AmountCents,
			Currency: pay.Currency, Reason: auth.DeclineReason}
	}
	b := &pgx.Batch{}
	store.QueueInsert(b, pay, h.entry(ev, pay.Status, detail, now))
	return save(ctx, tx, p.OrderID, b, result)
}

func (h *Handler) confirmed(ctx context.Context, tx pgx.Tx, ev events.Event, p events.OrderConfirmed) error {
	cur, err := store.Lock(ctx, tx, p.OrderID)
	if err != nil {
		return err
	}
	d := payment.OnConfirmed(cur)
	if d.Step != payment.Capture {
		return h.skip(ctx, tx, ev, p.OrderID, cur, d)
	}
	if _, err := h.gw.Capture(ctx, gateway.OperationRequest{IdempotencyKey: cur.OrderID, ChargeID: cur.ChargeID}); err != nil {
		return fmt.Errorf("capture order %s: %w", p.OrderID, err)
	}
	b := &pgx.Batch{}
	store.QueueSetStatus(b, p.OrderID, h.entry(ev, payment.StatusCaptured, d.Detail, h.now()))
	return save(ctx, tx, p.OrderID, b, nil)
}

func (h *Handler) cancelled(ctx context.Context, tx pgx.Tx, ev events.Event, p events.OrderCancelled) error {
	cur, err := store.Lock(ctx, tx, p.OrderID)
	if err != nil {
		return err
	}
	d := payment.OnCancelled(cur)
	d.Detail += " (order cancelled: " + p.Reason + ")"
	detail := d.Detail
	now := h.now()
	switch d.Step {
	case payment.Tombstone:
		tomb := &payment.Payment{OrderID: p.OrderID, Status: payment.StatusCancelled, Reason: p.Reason, CreatedAt: now}
		h.log.Info("order cancelled before any payment; recorded, nothing to compensate", "order_id", p.OrderID)
		b := &pgx.Batch{}
		store.QueueInsert(b, tomb, h.entry(ev, payment.StatusCancelled, detail, now))
		return save(ctx, tx, p.OrderID, b, nil)
	case payment.Void, payment.Refund:
	default:
		return h.skip(ctx, tx, ev, p.OrderID, cur, d)
	}
	req := gateway.OperationRequest{IdempotencyKey: cur.OrderID, ChargeID: cur.ChargeID}
	status, kind, call := payment.StatusVoided, events.RefundKindVoid, h.gw.Void
	if d.Step == payment.Refund {
		status, kind, call = payment.StatusRefunded, events.RefundKindRefund, h.gw.Refund
	}
	if _, err := call(ctx, req); err != nil {
		return fmt.Errorf("%s order %s: %w", kind, p.OrderID, err)
	}
	b := &pgx.Batch{}
	store.QueueSetStatus(b, p.OrderID, h.entry(ev, status, detail, now))
	return save(ctx, tx, p.OrderID, b, events.PaymentRefunded{OrderID: p.OrderID,
		PaymentID: cur.PaymentID, AmountCents: cur.AmountCents, Currency: cur.Currency, Kind: kind})
}

// save sends the state change queued in b and the outbox insert of its
// result event (none when result is nil) in one round trip.
func save(ctx context.Context, tx pgx.Tx, orderID string, b *pgx.Batch, result events.Payload) error {
	if result != nil {
		if err := outbox.Queue(ctx, b, events.New(Source, result)); err != nil {
			return err
		}
	}
	return store.Send(ctx, tx, orderID, b)
}

// skip records an event that changes nothing, and warns when the saga
// should never have sent it.
func (h *Handler) skip(ctx context.Context, tx pgx.Tx, ev events.Event, orderID string, cur *payment.Payment, d payment.Decision) error {
	level := slog.LevelInfo
	if d.Unexpected {
		level = slog.LevelWarn
	}
	h.log.Log(ctx, level, "event changes nothing; recorded", "order_id", orderID, "type", ev.Type,
		"event_id", ev.ID, "status", payment.StatusOf(cur), "detail", d.Detail)
	return store.Record(ctx, tx, orderID, h.entry(ev, payment.StatusOf(cur), d.Detail, h.now()))
}

// entry is the history entry ev leaves.
func (h *Handler) entry(ev events.Event, s payment.Status, detail string, at time.Time) store.Entry {
	return store.Entry{Status: s, EventID: ev.ID, EventType: string(ev.Type), Detail: detail, At: at}
}
