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
// short SKU. It is the hot path, so claim, lines and locks go to the
// server in one round trip (store.Open): three in all with the outbox.
func (s *Service) Reserve(ctx context.Context, tx pgx.Tx, p events.OrderPlaced) (Outcome, error) {
	in := make([]stock.Line, len(p.Items))
	for i, it := range p.Items {
		in[i] = stock.Line{SKU: it.SKU, Quantity: int64(it.Quantity)}
	}
	lines, err := stock.Merge(in)
	if err != nil {
		return "", fmt.Errorf("reserve %s: %w", p.OrderID, err)
	}
	resID := uuid.Must(uuid.NewV7()).String()
	claimed, levels, err := store.Open(ctx, tx, p.OrderID, resID, lines, s.lockTimeout)
	if err != nil {
		return "", err
	}
	if !claimed {
		// Redelivered under a new event id, or placed after it was
		// cancelled: what was decided stands and was already published.
		s.log.InfoContext(ctx, "order already known; placed event recorded, nothing done", "order_id", p.OrderID)
		return Recorded, nil
	}
	if short := stock.Plan(lines, levels); len(short) > 0 {
		if err := store.SetStatus(ctx, tx, p.OrderID, stock.StatusRejected); err != nil {
			return "", err
		}
		ev := events.StockRejected{OrderID: p.OrderID, Short: make([]events.ShortLine, len(short))}
		for i, sh := range short {
			ev.Short[i] = events.ShortLine{SKU: sh.SKU, Requested: int(sh.Requested), Available: int(sh.Available)}
		}
		if err := outbox.Write(ctx, tx, events.New(Source, ev)); err != nil {
			return "", err
		}
		return Rejected, nil
	}
	ev := events.StockReserved{OrderID: p.OrderID, ReservationID: resID, Items: stockLines(lines)}
	published := &pgx.Batch{}
	if err := outbox.Queue(ctx, published, events.New(Source, ev)); err != nil {
		return "", err
	}
	if err := store.HoldWith(ctx, tx, lines, published); err != nil {
		return "", err
	}
	return Reserved, nil
}

// Release compensates a cancelled order inside tx: a held reservation is
// given back (StockReleased); anything else is recorded and changes
// nothing. An order never seen gets a cancelled reservation row, so a late
// OrderPlaced cannot hold stock for it.
func (s *Service) Release(ctx context.Context, tx pgx.Tx, p events.OrderCancelled) (Outcome, error) {
	if err := s.begin(ctx, tx); err != nil {
		return "", err
	}
	r, found, err := store.LockReservation(ctx, tx, p.OrderID)
	if err != nil {
		return "", err
	}
	action, unexpected := stock.OnCancel(r.Status, found)
	if unexpected {
		s.log.WarnContext(ctx, "order cancelled after its stock was committed; nothing to give back",
			"order_id", p.OrderID, "reason", p.Reason)
	}
	switch action {
	case stock.Tombstone:
		if _, err := store.Claim(ctx, tx, p.OrderID, uuid.Must(uuid.NewV7()).String(), stock.StatusCancelled); err != nil {
			return "", err
		}
	case stock.Release:
		lines, err := store.Lines(ctx, tx, p.OrderID)
		if err != nil {
			return "", err
		}
		if _, err := store.LockStock(ctx, tx, stock.SKUs(lines)); err != nil {
			return "", err
		}
		if err := store.Unhold(ctx, tx, lines); err != nil {
			return "", err
		}
		if err := store.SetStatus(ctx, tx, p.OrderID, stock.StatusReleased); err != nil {
			return "", err
		}
		ev := events.StockReleased{OrderID: p.OrderID, ReservationID: r.ReservationID, Items: stockLines(lines)}
		if err := outbox.Write(ctx, tx, events.New(Source, ev)); err != nil {
			return "", err
		}
	}
	if err := store.RecordCancel(ctx, tx, p.OrderID, p.Reason, p.CancelledAt); err != nil {
		return "", err
	}
	if action == stock.Release {
		return Released, nil
	}
	return Recorded, nil
}

// Commit takes a confirmed order's reserved lines off the shelf inside tx.
// A redelivery is recorded and changes nothing; confirming what is not
// held is a stock.ErrConflict (see stock.OnConfirm).
func (s *Service) Commit(ctx context.Context, tx pgx.Tx, p events.OrderConfirmed) (Outcome, error) {
	if err := s.begin(ctx, tx); err != nil {
		return "", err
	}
	r, found, err := store.LockReservation(ctx, tx, p.OrderID)
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
	lines, err := store.Lines(ctx, tx, p.OrderID)
	if err != nil {
		return "", err
	}
	if _, err := store.LockStock(ctx, tx, stock.SKUs(lines)); err != nil {
		return "", err
	}
	if err := store.Ship(ctx, tx, lines); err != nil {
		return "", err
	}
	if err := store.SetStatus(ctx, tx, p.OrderID, stock.StatusCommitted); err != nil {
		return "", err
	}
	return Committed, nil
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
