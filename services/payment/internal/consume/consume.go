// Package consume applies the order events the payment service consumes
// (shop.orders) inside the inbox's transaction:
//
//	OrderPlaced    → authorize at the gateway → PaymentAuthorized | PaymentDeclined
//	OrderConfirmed → capture (recorded in status and history; no event type exists)
//	OrderCancelled → void before capture, refund after → PaymentRefunded{kind}
//
// The service applies the events of one inbox transaction together
// (HandleBatch). It locks the payment rows of all their orders in one
// statement, in order id order so that concurrent batches cannot
// deadlock; walks each order's events in delivery order against its
// payment in memory, asking the domain what each means in the payment's
// state and calling the gateway if it must (the orders concurrently, up
// to gatewayCalls at a time); then writes every new state, history entry
// and result event (through the outbox) in one more round trip. Whatever
// the domain calls a no-op is still recorded in the history, and emits
// nothing. A batch thus costs two round trips however many events it
// holds, plus its gateway calls, made side by side rather than one after
// another; and the events of one order come out exactly as if applied one
// after the other. Handle is HandleBatch for one event.
//
// The gateway is called outside that transaction, by necessity: it is
// another system. Its calls carry the order id as idempotency key, so when
// the transaction rolls back after the gateway answered (the answer lost,
// the database failing, a crash) the retry gets the same answer and the
// card is not charged twice.
//
// Errors are classified for the inbox: gateway timeouts and unavailability
// are an outage (inbox.Outage: retried with backoff for up to
// inbox.Config.OutageFor, 5 minutes) and database hiccups are transient
// (retried with backoff); content no
// retry can fix (an invalid amount, a gateway rejection) is
// inbox.Permanent and goes to the dead-letter topic with the reason. An
// order in a currency the service does not take is declined
// (PaymentDeclined, reason unsupported_currency), so its saga ends. A
// batch fails as a whole on its first error; the inbox splits it until the
// failing event is alone, and that event's error decides its fate.
package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/outbox"
	"github.com/shopflow/shopflow/pkg/platform/tracing"
	"github.com/shopflow/shopflow/services/payment/internal/gateway"
	"github.com/shopflow/shopflow/services/payment/internal/payment"
	"github.com/shopflow/shopflow/services/payment/internal/store"
)

// Source is the ce_source of the events the payment service publishes.
const Source = events.SourcePayment

// Handler applies order events to payments. Use its HandleBatch method
// as the inbox.BatchHandler (the service does), or Handle as the
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

// Handle implements inbox.Handler: HandleBatch for one event (two round
// trips). Event types other than the three order events it acts on are
// ignored.
func (h *Handler) Handle(ctx context.Context, tx pgx.Tx, ev events.Event) error {
	err := h.HandleBatch(ctx, tx, []inbox.Item{{Ctx: ctx, Event: ev}})
	if _, ok := inbox.FailedItem(err); ok {
		return errors.Unwrap(err) // the event's own error, as classified
	}
	return err
}

// gatewayCalls bounds the gateway calls one HandleBatch makes at once.
// Calls made together are cheap for the fake gateway, which merges the
// calls that arrive during one statement into the next (gateway.Fake):
// at 16 its statements carried 3-5 calls each in shop load, at 64 about
// 9, and the suite's CPU per order fell ~10% more.
const gatewayCalls = 64

// HandleBatch implements inbox.BatchHandler: it applies the events of one
// inbox transaction as if one after the other, in two round trips
// whatever their number. It locks the payments of all their orders
// at once (store.LockAll, in order id order), then walks each order's
// events in delivery order against its payment in memory, calling the
// gateway where an event needs it (the orders concurrently, at most
// gatewayCalls at a time, each call under its event's context so its
// trace continues), and finally writes every payment change, history
// entry and result event at once (store.QueueChanges, outbox.Queue). A
// second event for an order sees the first's effect, as it would one by
// one: a second OrderPlaced is a recorded no-op, not a second
// authorization.
//
// A failure fails the batch as inbox.ItemFailed, naming the earliest
// failing event, with its error classified (see classify); the
// inbox applies the events before it without it, then it alone with its
// retries, then the rest. The calls already answered are made again
// then and get the same answers (idempotency keys).
func (h *Handler) HandleBatch(ctx context.Context, tx pgx.Tx, items []inbox.Item) error {
	type order struct {
		id    string
		items []int // indexes in items, in delivery order
		after *payment.Payment
	}
	var orders []*order
	byID := map[string]*order{}
	for i, it := range items {
		id, ok := orderOf(it.Event)
		if !ok {
			continue
		}
		o := byID[id]
		if o == nil {
			o = &order{id: id}
			byID[id] = o
			orders = append(orders, o)
		}
		o.items = append(o.items, i)
	}
	if len(orders) == 0 {
		return nil
	}
	ids := make([]string, len(orders))
	for i, o := range orders {
		ids[i] = o.id
	}
	before, err := store.LockAll(ctx, tx, ids)
	if err != nil {
		return err
	}

	// Each order's events are applied in delivery order, the orders side
	// by side. A failure stops its own order only: the other calls run to
	// their end, so the earliest failing event is known for sure, and the
	// inbox applies the events before it without it (ItemFailed) rather
	// than halving the batch, which would call the gateway again for each
	// half (a flaky card in every batch of any size).
	changes := make([]change, len(items))
	failedAt := make([]int, len(orders)) // per order: its failing item, or -1
	errs := make([]error, len(orders))
	var g errgroup.Group
	g.SetLimit(gatewayCalls)
	for k, o := range orders {
		failedAt[k] = -1
		g.Go(func() error {
			cur := before[o.id]
			for _, i := range o.items {
				c, err := h.apply(items[i].Ctx, items[i].Event, cur)
				if err != nil {
					failedAt[k], errs[k] = i, err
					return nil
				}
				changes[i], cur = c, c.after
			}
			o.after = cur
			return nil
		})
	}
	_ = g.Wait() // the goroutines report in failedAt and errs
	first := -1
	for k, i := range failedAt {
		if i >= 0 && (first < 0 || i < failedAt[first]) {
			first = k
		}
	}
	if first >= 0 {
		return inbox.ItemFailed(failedAt[first], classify(errs[first]))
	}

	var (
		w   store.Changes
		evs []events.Event
	)
	for _, o := range orders {
		switch was := before[o.id]; {
		case o.after == was: // unchanged
		case was == nil:
			w.Inserts = append(w.Inserts, o.after)
		default:
			w.Updates = append(w.Updates, o.after)
		}
	}
	for i, it := range items {
		id, ok := orderOf(it.Event)
		if !ok {
			continue
		}
		c := changes[i]
		w.History = append(w.History, store.Line{OrderID: id, Entry: c.entry})
		if c.result != nil {
			ev := events.New(Source, c.result)
			ev.TraceParent = tracing.TraceParent(it.Ctx)
			evs = append(evs, ev)
		}
	}
	b := &pgx.Batch{}
	store.QueueChanges(b, w)
	if err := outbox.Queue(ctx, b, evs...); err != nil {
		return err
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("save %d events' changes to %d payments: %w", len(w.History), len(orders), err)
	}
	return nil
}

// orderOf returns the order an event this package acts on is about.
func orderOf(ev events.Event) (string, bool) {
	switch p := ev.Payload.(type) {
	case events.OrderPlaced:
		return p.OrderID, true
	case events.OrderConfirmed:
		return p.OrderID, true
	case events.OrderCancelled:
		return p.OrderID, true
	}
	return "", false
}

// classify marks the errors no retry can fix as permanent, and the
// gateway's timeouts and unavailability as an outage (inbox.Outage:
// retried for minutes, not five quick attempts, so a gateway hiccup does
// not dead-letter a capture, void or refund). Everything else stays
// transient for the inbox: database errors (a constraint violation from a
// concurrent delivery of the same order is resolved by the retry, which
// finds the winner's row).
func classify(err error) error {
	switch {
	case err == nil, inbox.IsPermanent(err), inbox.IsOutage(err):
		return err
	case gateway.Transient(err):
		return inbox.Outage(err)
	case errors.Is(err, gateway.ErrRejected),
		errors.Is(err, payment.ErrInvalidAmount):
		return inbox.Permanent(err)
	}
	return err
}

// change is what one event does to its order's payment: the payment
// after it (the very pointer apply was given when the event changes
// nothing), its history entry and its result event, if any.
type change struct {
	after  *payment.Payment
	entry  store.Entry
	result events.Payload
}

// apply decides what ev means for the order's payment cur (nil: none),
// makes the gateway call the decision needs, and returns the change,
// writing nothing and leaving *cur as it is. Only the three order events
// are valid.
func (h *Handler) apply(ctx context.Context, ev events.Event, cur *payment.Payment) (change, error) {
	switch p := ev.Payload.(type) {
	case events.OrderPlaced:
		return h.placed(ctx, ev, p, cur)
	case events.OrderConfirmed:
		return h.confirmed(ctx, ev, p, cur)
	case events.OrderCancelled:
		return h.cancelled(ctx, ev, p, cur)
	}
	return change{}, fmt.Errorf("payment: no rule for %s", ev.Type)
}

func (h *Handler) placed(ctx context.Context, ev events.Event, p events.OrderPlaced, cur *payment.Payment) (change, error) {
	d := payment.OnPlaced(cur)
	if d.Step != payment.Authorize {
		return h.skip(ctx, ev, p.OrderID, cur, d), nil
	}
	if err := payment.CheckAmount(p.TotalCents, p.Currency); err != nil {
		if !errors.Is(err, payment.ErrUnsupportedCurrency) {
			return change{}, fmt.Errorf("order %s: %w", p.OrderID, err)
		}
		// A currency this service takes no payments in (the order
		// service may sell in more) is an answer for the customer,
		// not a broken record: decline, so the order is cancelled and
		// its stock and shipment released, rather than dead-letter the
		// event and leave the order pending for good. The gateway is
		// not asked.
		now := h.now()
		pay := &payment.Payment{OrderID: p.OrderID, PaymentID: uuid.Must(uuid.NewV7()).String(),
			AmountCents: p.TotalCents, Currency: p.Currency, Status: payment.StatusDeclined,
			Reason: gateway.ReasonUnsupportedCurrency, CreatedAt: now, UpdatedAt: now}
		return h.changed(ev, pay, "declined: "+err.Error(), events.PaymentDeclined{OrderID: p.OrderID,
			AmountCents: pay.AmountCents, Currency: pay.Currency, Reason: pay.Reason}), nil
	}
	auth, err := h.gw.Authorize(ctx, gateway.AuthorizeRequest{
		IdempotencyKey: p.OrderID, CardToken: p.Payment.CardToken, AmountCents: p.TotalCents, Currency: p.Currency})
	if err != nil {
		return change{}, fmt.Errorf("authorize order %s: %w", p.OrderID, err)
	}
	now := h.now()
	pay := &payment.Payment{OrderID: p.OrderID, PaymentID: uuid.Must(uuid.NewV7()).String(),
		AmountCents: p.TotalCents, Currency: p.Currency, ChargeID: auth.ChargeID, CreatedAt: now, UpdatedAt: now}
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
	return h.changed(ev, pay, detail, result), nil
}

func (h *Handler) confirmed(ctx context.Context, ev events.Event, p events.OrderConfirmed, cur *payment.Payment) (change, error) {
	d := payment.OnConfirmed(cur)
	if d.Step != payment.Capture {
		return h.skip(ctx, ev, p.OrderID, cur, d), nil
	}
	if _, err := h.gw.Capture(ctx, gateway.OperationRequest{IdempotencyKey: cur.OrderID, ChargeID: cur.ChargeID}); err != nil {
		return change{}, fmt.Errorf("capture order %s: %w", p.OrderID, err)
	}
	return h.changed(ev, moved(cur, payment.StatusCaptured, h.now()), d.Detail, nil), nil
}

func (h *Handler) cancelled(ctx context.Context, ev events.Event, p events.OrderCancelled, cur *payment.Payment) (change, error) {
	d := payment.OnCancelled(cur)
	d.Detail += " (order cancelled: " + p.Reason + ")"
	switch d.Step {
	case payment.Tombstone:
		// No payment here: OrderPlaced never applied (on one partition
		// it comes first, so it was dead-lettered). An attempt at it may
		// still have reached the gateway before failing for good, and
		// the gateway's ledger commits on its own: release any hold it
		// left under the order's key. Almost always there is none.
		detail := d.Detail
		rec, err := h.gw.Void(ctx, gateway.OperationRequest{IdempotencyKey: p.OrderID})
		switch {
		case err == nil:
			detail += "; voided authorization " + rec.ChargeID + " the gateway held for it"
			h.log.WarnContext(ctx, "order cancelled without a payment here, but the gateway held an authorization for it; voided",
				"order_id", p.OrderID, "charge_id", rec.ChargeID)
		case errors.Is(err, gateway.ErrNoAuthorization):
			h.log.InfoContext(ctx, "order cancelled before any payment; recorded, nothing to compensate", "order_id", p.OrderID)
		case errors.Is(err, gateway.ErrRejected):
			// Declined, or already captured: nothing held to void (a
			// capture needs a payment row, which there is not).
			detail += "; the gateway's authorization for it is not voidable: " + err.Error()
		default:
			return change{}, fmt.Errorf("void any hold for order %s: %w", p.OrderID, err)
		}
		now := h.now()
		tomb := &payment.Payment{OrderID: p.OrderID, Status: payment.StatusCancelled, Reason: p.Reason, CreatedAt: now, UpdatedAt: now}
		return h.changed(ev, tomb, detail, nil), nil
	case payment.Void, payment.Refund:
	default:
		return h.skip(ctx, ev, p.OrderID, cur, d), nil
	}
	req := gateway.OperationRequest{IdempotencyKey: cur.OrderID, ChargeID: cur.ChargeID}
	status, kind, call := payment.StatusVoided, events.RefundKindVoid, h.gw.Void
	if d.Step == payment.Refund {
		status, kind, call = payment.StatusRefunded, events.RefundKindRefund, h.gw.Refund
	}
	if _, err := call(ctx, req); err != nil {
		return change{}, fmt.Errorf("%s order %s: %w", kind, p.OrderID, err)
	}
	return h.changed(ev, moved(cur, status, h.now()), d.Detail, events.PaymentRefunded{OrderID: p.OrderID,
		PaymentID: cur.PaymentID, AmountCents: cur.AmountCents, Currency: cur.Currency, Kind: kind}), nil
}

// moved returns a copy of p in status s since at.
func moved(p *payment.Payment, s payment.Status, at time.Time) *payment.Payment {
	next := *p
	next.Status, next.UpdatedAt = s, at
	return &next
}

// changed is the change that leaves the payment after, recorded with
// detail, emitting result (nil: nothing).
func (h *Handler) changed(ev events.Event, after *payment.Payment, detail string, result events.Payload) change {
	return change{after: after, entry: h.entry(ev, after.Status, detail, after.UpdatedAt), result: result}
}

// skip is the change of an event that changes nothing: recorded in the
// history only, with a warning when the saga should never have sent it.
func (h *Handler) skip(ctx context.Context, ev events.Event, orderID string, cur *payment.Payment, d payment.Decision) change {
	level := slog.LevelInfo
	if d.Unexpected {
		level = slog.LevelWarn
	}
	h.log.Log(ctx, level, "event changes nothing; recorded", "order_id", orderID, "type", ev.Type,
		"event_id", ev.ID, "status", payment.StatusOf(cur), "detail", d.Detail)
	return change{after: cur, entry: h.entry(ev, payment.StatusOf(cur), d.Detail, h.now())}
}

// entry is the history entry ev leaves.
func (h *Handler) entry(ev events.Event, s payment.Status, detail string, at time.Time) store.Entry {
	return store.Entry{Status: s, EventID: ev.ID, EventType: string(ev.Type), Detail: detail, At: at}
}
