// Package app holds the inventory's use cases: reserve an order's stock,
// release it on cancellation, commit it on confirmation, and the admin's
// stock levels. Each event use case runs inside the caller's transaction
// (the inbox consumer's, holding the event's dedup row) and writes its
// result events through the outbox in that same transaction, so state,
// dedup and publication commit or vanish together.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/outbox"
	"github.com/shopflow/shopflow/pkg/platform/tracing"
	"github.com/shopflow/shopflow/services/inventory/internal/stock"
	"github.com/shopflow/shopflow/services/inventory/internal/store"
)

// Source is the ce_source of the events the inventory service publishes.
const Source = "/shopflow/inventory"

// Outcome says what a use case did, for logs and tests.
type Outcome string

// Outcomes.
const (
	Reserved  Outcome = "reserved"  // StockReserved written
	Rejected  Outcome = "rejected"  // StockRejected written
	Released  Outcome = "released"  // StockReleased written
	Committed Outcome = "committed" // stock left the shelf; nothing to publish
	Recorded  Outcome = "recorded"  // nothing to do or publish; the event was noted
)

// Service runs the use cases.
type Service struct {
	pool        *pgxpool.Pool
	log         *slog.Logger
	lockTimeout time.Duration
}

// New returns a Service on pool. lockTimeout bounds a reservation's wait
// for a stock row lock (0: no bound beyond the caller's context).
func New(pool *pgxpool.Pool, log *slog.Logger, lockTimeout time.Duration) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{pool: pool, log: log, lockTimeout: lockTimeout}
}

func (s *Service) begin(ctx context.Context, tx pgx.Tx) error {
	if s.lockTimeout <= 0 {
		return nil
	}
	return store.SetLockTimeout(ctx, tx, s.lockTimeout)
}

// Reserve holds every line of a placed order or none, inside tx. It claims
// the order's reservation row first (a second OrderPlaced for the order,
// however it arrives, then finds it and does nothing), locks the stock
// rows in SKU order, and either holds all lines and writes StockReserved,
// or marks the reservation rejected and writes StockRejected naming each
// short SKU. It is ReserveAll for one order: two round trips.
func (s *Service) Reserve(ctx context.Context, tx pgx.Tx, p events.OrderPlaced) (Outcome, error) {
	outs, err := s.ReserveAll(ctx, tx, []Placed{{Ctx: ctx, Event: p}})
	if err != nil {
		return "", err
	}
	return outs[0], nil
}

// Placed is one OrderPlaced for ReserveAll, with the context its result
// event is written under (the consumed event's trace).
type Placed struct {
	Ctx   context.Context
	Event events.OrderPlaced
}

// ReserveAll is Reserve for several placed orders, in their order, in two
// round trips whatever their number: claim them all and lock the stock of
// all their SKUs (store.OpenAll), then every hold, rejection and result
// event. Each order is planned against the stock left by the orders
// before it, so the outcome is what Reserve one by one would give. A
// second OrderPlaced for an order (in the batch or before it) is recorded
// and changes nothing.
func (s *Service) ReserveAll(ctx context.Context, tx pgx.Tx, ps []Placed) ([]Outcome, error) {
	outs := make([]Outcome, len(ps))
	opens := make([]store.Opening, 0, len(ps))
	first := make(map[string]int, len(ps)) // order id → index in opens
	for _, p := range ps {
		if _, dup := first[p.Event.OrderID]; dup {
			continue
		}
		in := make([]stock.Line, len(p.Event.Items))
		for i, it := range p.Event.Items {
			in[i] = stock.Line{SKU: it.SKU, Quantity: int64(it.Quantity)}
		}
		lines, err := stock.Merge(in)
		if err != nil {
			return nil, fmt.Errorf("reserve %s: %w", p.Event.OrderID, err)
		}
		first[p.Event.OrderID] = len(opens)
		opens = append(opens, store.Opening{OrderID: p.Event.OrderID, ReservationID: uuid.Must(uuid.NewV7()).String(), Lines: lines})
	}
	claimed, levels, err := store.OpenAll(ctx, tx, opens, s.lockTimeout)
	if err != nil {
		return nil, err
	}
	var (
		held     []stock.Line
		rejected []string
		evs      []events.Event
	)
	done := make(map[string]bool, len(opens))
	for i, p := range ps {
		id := p.Event.OrderID
		if done[id] || !claimed[id] {
			s.log.InfoContext(p.Ctx, "order already known; placed event recorded, nothing done", "order_id", id)
			outs[i] = Recorded
			continue
		}
		done[id] = true
		o := opens[first[id]]
		var result events.Payload
		if short := stock.Plan(o.Lines, levels); len(short) > 0 {
			rejected = append(rejected, id)
			ev := events.StockRejected{OrderID: id, Short: make([]events.ShortLine, len(short))}
			for k, sh := range short {
				ev.Short[k] = events.ShortLine{SKU: sh.SKU, Requested: int(sh.Requested), Available: int(sh.Available)}
			}
			result, outs[i] = ev, Rejected
		} else {
			for _, l := range o.Lines {
				lv := levels[l.SKU]
				lv.Reserved += l.Quantity
				levels[l.SKU] = lv
			}
			held = append(held, o.Lines...)
			result, outs[i] = events.StockReserved{OrderID: id, ReservationID: o.ReservationID, Items: stockLines(o.Lines)}, Reserved
		}
		ev := events.New(Source, result)
		ev.TraceParent = tracing.TraceParent(p.Ctx)
		evs = append(evs, ev)
	}
	if len(evs) == 0 {
		return outs, nil
	}
	b := &pgx.Batch{}
	if len(held) > 0 {
		total, err := stock.Merge(held)
		if err != nil {
			return nil, fmt.Errorf("reserve: %w", err)
		}
		store.QueueHold(b, total)
	}
	if len(rejected) > 0 {
		store.QueueSetStatus(b, stock.StatusRejected, rejected...)
	}
	if err := outbox.Queue(ctx, b, evs...); err != nil {
		return nil, err
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("reserve %d orders: %w", len(evs), err)
	}
	return outs, nil
}

// Release compensates a cancelled order inside tx: a held reservation is
// given back (StockReleased); anything else is recorded and changes
// nothing. An order never seen gets a cancelled reservation row, so a late
// OrderPlaced cannot hold stock for it. Two round trips: the locks with
// the lines they cover (store.LockReservation), then every write with the
// event.
func (s *Service) Release(ctx context.Context, tx pgx.Tx, p events.OrderCancelled) (Outcome, error) {
	r, found, held, err := store.LockReservation(ctx, tx, p.OrderID, s.lockTimeout)
	if err != nil {
		return "", err
	}
	action, unexpected := stock.OnCancel(r.Status, found)
	if unexpected {
		s.log.WarnContext(ctx, "order cancelled after its stock was committed; nothing to give back",
			"order_id", p.OrderID, "reason", p.Reason)
	}
	b := &pgx.Batch{}
	var released events.Payload
	switch action {
	case stock.Tombstone:
		store.QueueClaim(b, p.OrderID, uuid.Must(uuid.NewV7()).String(), stock.StatusCancelled)
	case stock.Release:
		// held: the reservation's lines, their stock rows locked.
		store.QueueUnhold(b, held)
		store.QueueSetStatus(b, stock.StatusReleased, p.OrderID)
		released = events.StockReleased{OrderID: p.OrderID, ReservationID: r.ReservationID, Items: stockLines(held)}
	}
	store.QueueRecordCancel(b, p.OrderID, p.Reason, p.CancelledAt)
	if err := save(ctx, tx, "release "+p.OrderID, b, released); err != nil {
		return "", err
	}
	if action == stock.Release {
		return Released, nil
	}
	return Recorded, nil
}

// Commit takes a confirmed order's reserved lines off the shelf inside tx.
// A redelivery is recorded and changes nothing; confirming what is not
// held is a stock.ErrConflict (see stock.OnConfirm). Two round trips, as
// for Release.
func (s *Service) Commit(ctx context.Context, tx pgx.Tx, p events.OrderConfirmed) (Outcome, error) {
	r, found, held, err := store.LockReservation(ctx, tx, p.OrderID, s.lockTimeout)
	if err != nil {
		return "", err
	}
	action, err := stock.OnConfirm(r.Status, found)
	if err != nil {
		return "", fmt.Errorf("commit %s: %w", p.OrderID, err)
	}
	if action != stock.Commit {
		return Recorded, nil
	}
	b := &pgx.Batch{}
	store.QueueShip(b, held)
	store.QueueSetStatus(b, stock.StatusCommitted, p.OrderID)
	if err := save(ctx, tx, "commit "+p.OrderID, b, nil); err != nil {
		return "", err
	}
	return Committed, nil
}

// save sends the writes queued in b and the outbox insert of their result
// event (none when result is nil) inside tx, in one round trip; what names
// the use case in the error.
func save(ctx context.Context, tx pgx.Tx, what string, b *pgx.Batch, result events.Payload) error {
	if result != nil {
		if err := outbox.Queue(ctx, b, events.New(Source, result)); err != nil {
			return err
		}
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// Stock returns the level of sku, or stock.ErrNotFound.
func (s *Service) Stock(ctx context.Context, sku string) (stock.Level, error) {
	return store.GetStock(ctx, s.pool, sku)
}

// SetOnHand sets the on-hand quantity of sku (creating it) in its own
// transaction and returns the new level; see store.SetOnHand.
func (s *Service) SetOnHand(ctx context.Context, sku string, n int64) (stock.Level, error) {
	var l stock.Level
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := s.begin(ctx, tx); err != nil {
			return err
		}
		var err error
		l, err = store.SetOnHand(ctx, tx, sku, n)
		return err
	})
	return l, err
}

func stockLines(lines []stock.Line) []events.StockLine {
	out := make([]events.StockLine, len(lines))
	for i, l := range lines {
		out[i] = events.StockLine{SKU: l.SKU, Quantity: int(l.Quantity)}
	}
	return out
}
