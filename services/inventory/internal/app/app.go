// Package app holds the inventory's use cases: reserve an order's stock,
// release it on cancellation, commit it on confirmation, and the admin's
// stock levels. Each event use case runs inside the caller's transaction
// (the inbox consumer's, holding the event's dedup row) and writes its
// result events through the outbox in that same transaction, so state,
// dedup and publication commit or vanish together.
//
// The events of one transaction go through Apply together, in any mix,
// at a constant cost: two round trips (one claims, locks and reads
// everything, one writes everything), or one when nothing changes, where
// applying them one by one cost two each. The consumer applies one
// transaction at a time (every order locks rows of the same few SKUs), so
// this is its throughput. Reserve, Release and Commit are Apply for one
// event, one code path.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
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
const Source = events.SourceInventory

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

// Event is one consumed order event for Apply: an events.OrderPlaced,
// events.OrderCancelled or events.OrderConfirmed, with the context its
// result event is written under (the consumed event's trace).
type Event struct {
	Ctx     context.Context
	Payload events.Payload
}

// EventError is Apply's error when one of its events fails: evs[Index]
// fails with Err (what it fails with when applied alone), and the events
// before it do not.
type EventError struct {
	Index int
	Err   error
}

func (e *EventError) Error() string { return e.Err.Error() }
func (e *EventError) Unwrap() error { return e.Err }

// Reserve holds every line of a placed order or none, inside tx: it
// claims the order's reservation (a second OrderPlaced for the order,
// however it arrives, then finds it and does nothing) and either holds
// all lines and writes StockReserved, or marks the reservation rejected
// and writes StockRejected naming each short SKU. It is Apply for one
// event.
func (s *Service) Reserve(ctx context.Context, tx pgx.Tx, p events.OrderPlaced) (Outcome, error) {
	return s.one(ctx, tx, p)
}

// Release compensates a cancelled order inside tx: a held reservation is
// given back (StockReleased); anything else is recorded and changes
// nothing. An order never seen gets a cancelled reservation row, so a late
// OrderPlaced cannot hold stock for it. The first cancellation's time and
// reason are noted on the reservation. It is Apply for one event.
func (s *Service) Release(ctx context.Context, tx pgx.Tx, p events.OrderCancelled) (Outcome, error) {
	return s.one(ctx, tx, p)
}

// Commit takes a confirmed order's reserved lines off the shelf inside tx.
// A redelivery is recorded and changes nothing; confirming what is not
// held is a stock.ErrConflict (see stock.OnConfirm). It is Apply for one
// event.
func (s *Service) Commit(ctx context.Context, tx pgx.Tx, p events.OrderConfirmed) (Outcome, error) {
	return s.one(ctx, tx, p)
}

func (s *Service) one(ctx context.Context, tx pgx.Tx, p events.Payload) (Outcome, error) {
	outs, err := s.Apply(ctx, tx, []Event{{Ctx: ctx, Payload: p}})
	if ee, ok := errors.AsType[*EventError](err); ok {
		return "", ee.Err
	}
	if err != nil {
		return "", err
	}
	return outs[0], nil
}

// Apply applies order events (OrderPlaced, OrderCancelled,
// OrderConfirmed, in any mix, several for one order if need be) in their
// order inside tx, in two round trips whatever their number:
//
//  1. store.Lock claims the reservation of every order whose first event
//     here could start one (a placement, or a cancellation that came
//     first) and stores the lines of the placed ones it wins, locks every
//     order's reservation and reads it, reads the lines held for the
//     orders confirmed or cancelled, and locks the stock rows of all
//     those SKUs, in SKU order.
//  2. One pipelined batch writes everything: the stock moves summed per
//     SKU, each reservation's new status and cancellation record, and
//     every result event (each under its own event's trace).
//
// In between, the events are applied in memory in their order, each
// seeing what the ones before it did (a placement is planned against the
// stock the earlier events left; a cancellation releases what an earlier
// placement held), so the outcome, the rows and the result events are
// those of applying the events one at a time. An event that fails (lines
// no order may have, confirming what is not held) fails the call with an
// *EventError naming the earliest failing event, with the error it has
// alone, and nothing is written. When nothing changes (repeats only), the
// second round trip is skipped.
func (s *Service) Apply(ctx context.Context, tx pgx.Tx, evs []Event) ([]Outcome, error) {
	if len(evs) == 0 {
		return nil, nil
	}
	b := batch{Service: s, orders: map[string]*order{}}
	if err := b.plan(evs); err != nil {
		return nil, err
	}
	lk, err := store.Lock(ctx, tx, b.claims, b.ids, b.settle, b.skus, s.lockTimeout)
	if err != nil {
		return nil, err
	}
	b.start(lk)
	outs := make([]Outcome, len(evs))
	for i, e := range evs {
		if outs[i], err = b.apply(i, e); err != nil {
			return nil, &EventError{Index: i, Err: err}
		}
	}
	if err := b.save(ctx, tx); err != nil {
		return nil, err
	}
	return outs, nil
}

// batch is one Apply call's state: what to lock, then the orders and the
// stock as its events leave them, and the result events.
type batch struct {
	*Service
	// From the events alone.
	claims []store.Claim
	ids    []string       // every order, once, in first-seen order
	settle []string       // orders confirmed or cancelled
	skus   []string       // of every placed order's lines, once
	lines  [][]stock.Line // per event: a placed order's merged lines
	bad    []error        // per event: why it fails before anything is read

	// As the events leave them.
	orders  map[string]*order
	claimed map[string]store.Claim // by order: claims that inserted their row
	levels  map[string]stock.Level
	before  map[string]stock.Level
	results []events.Event
}

// order is one order's reservation as the events applied so far leave it.
type order struct {
	found     bool // the order has a reservation (before the batch or from an event in it)
	row       bool // its row exists in the database now (found before, or claimed)
	status    stock.Status
	stored    stock.Status // the row's status in the database now
	id        string       // reservation id
	held      []stock.Line // what the reservation holds (status reserved)
	cancelled bool         // a cancellation is recorded on it
	cancelAt  *time.Time   // a cancellation to record
	reason    string
}

// plan reads what the events need locked: the claims, every order, the
// orders to settle and the SKUs of the placed lines. A placement's lines
// are merged here; one that cannot be is remembered as its event's
// failure.
func (b *batch) plan(evs []Event) error {
	b.lines, b.bad = make([][]stock.Line, len(evs)), make([]error, len(evs))
	seen, settling, skus := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for i, e := range evs {
		var (
			id      string
			claim   *store.Claim // what the event makes of an order unknown so far
			settles bool         // the event needs the lines the order holds
		)
		switch p := e.Payload.(type) {
		case events.OrderPlaced:
			id = p.OrderID
			in := make([]stock.Line, len(p.Items))
			for k, it := range p.Items {
				in[k] = stock.Line{SKU: it.SKU, Quantity: int64(it.Quantity)}
			}
			lines, err := stock.Merge(in)
			if err != nil {
				b.bad[i] = fmt.Errorf("reserve %s: %w", id, err)
				break
			}
			b.lines[i] = lines
			for _, l := range lines {
				if !skus[l.SKU] {
					skus[l.SKU] = true
					b.skus = append(b.skus, l.SKU)
				}
			}
			claim = &store.Claim{Status: stock.StatusReserved, Lines: lines}
		case events.OrderCancelled:
			id, claim, settles = p.OrderID, &store.Claim{Status: stock.StatusCancelled}, true
		case events.OrderConfirmed:
			id, settles = p.OrderID, true // confirming an order never seen fails: nothing to claim
		default:
			b.bad[i] = fmt.Errorf("%w: %T is not an order event the inventory applies", stock.ErrInvalid, e.Payload)
			continue
		}
		if settles && !settling[id] {
			settling[id] = true
			b.settle = append(b.settle, id)
		}
		if seen[id] {
			continue
		}
		seen[id] = true
		b.ids = append(b.ids, id)
		// Only the order's first event can meet it unknown; if that event
		// fails (bad lines, a confirmation), nothing after it applies.
		if claim != nil {
			claim.OrderID, claim.ReservationID = id, uuid.Must(uuid.NewV7()).String()
			b.claims = append(b.claims, *claim)
		}
	}
	if len(b.ids) == 0 { // nothing but failures: the first one
		for i, err := range b.bad {
			if err != nil {
				return &EventError{Index: i, Err: err}
			}
		}
	}
	return nil
}

// start sets the orders and the stock as Lock found them: an order whose
// claim won was unknown before the batch.
func (b *batch) start(lk store.Locked) {
	b.claimed = map[string]store.Claim{}
	for _, c := range b.claims {
		if lk.Claimed[c.OrderID] {
			b.claimed[c.OrderID] = c
		}
	}
	for _, id := range b.ids {
		o := &order{}
		if c, ok := b.claimed[id]; ok {
			o.row, o.stored = true, c.Status
		} else if r, ok := lk.Reservations[id]; ok {
			o.found, o.row, o.status, o.stored, o.id = true, true, r.Status, r.Status, r.ReservationID
			o.cancelled = r.CancelledAt != nil
			if r.Status == stock.StatusReserved {
				o.held = lk.Held[id]
			}
		}
		b.orders[id] = o
	}
	b.levels = lk.Levels
	b.before = maps.Clone(lk.Levels)
}

// apply applies evs[i] to the state in memory, as Reserve, Release or
// Commit one by one would, and returns its outcome.
func (b *batch) apply(i int, e Event) (Outcome, error) {
	if err := b.bad[i]; err != nil {
		return "", err
	}
	switch p := e.Payload.(type) {
	case events.OrderPlaced:
		return b.placed(e.Ctx, p.OrderID, b.lines[i])
	case events.OrderCancelled:
		return b.cancelled(e.Ctx, p)
	case events.OrderConfirmed:
		return b.confirmed(p)
	}
	return "", fmt.Errorf("%w: %T", stock.ErrInvalid, e.Payload) // plan marked it bad
}

func (b *batch) placed(ctx context.Context, id string, lines []stock.Line) (Outcome, error) {
	o := b.orders[id]
	if o.found {
		b.log.InfoContext(ctx, "order already known; placed event recorded, nothing done", "order_id", id)
		return Recorded, nil
	}
	c, ok := b.claimed[id]
	if !ok || c.Status != stock.StatusReserved { // a row neither there nor inserted: a concurrent change; retry
		return "", fmt.Errorf("reserve %s: reservation neither found nor claimed", id)
	}
	o.found, o.id = true, c.ReservationID
	var result events.Payload
	out := Reserved
	if short := stock.Plan(lines, b.levels); len(short) > 0 {
		o.status, out = stock.StatusRejected, Rejected
		ev := events.StockRejected{OrderID: id, Short: make([]events.ShortLine, len(short))}
		for k, sh := range short {
			ev.Short[k] = events.ShortLine{SKU: sh.SKU, Requested: int(sh.Requested), Available: int(sh.Available)}
		}
		result = ev
	} else {
		o.status, o.held = stock.StatusReserved, lines
		b.move(lines, 0, 1)
		result = events.StockReserved{OrderID: id, ReservationID: o.id, Items: stockLines(lines)}
	}
	b.emit(ctx, result)
	return out, nil
}

func (b *batch) cancelled(ctx context.Context, p events.OrderCancelled) (Outcome, error) {
	o := b.orders[p.OrderID]
	action, unexpected := stock.OnCancel(o.status, o.found)
	if unexpected {
		b.log.WarnContext(ctx, "order cancelled after its stock was committed; nothing to give back",
			"order_id", p.OrderID, "reason", p.Reason)
	}
	out := Recorded
	switch action {
	case stock.Tombstone:
		c, ok := b.claimed[p.OrderID]
		if !ok || c.Status != stock.StatusCancelled { // as in placed
			return "", fmt.Errorf("release %s: reservation neither found nor claimed", p.OrderID)
		}
		o.found, o.status, o.id = true, stock.StatusCancelled, c.ReservationID
	case stock.Release:
		b.move(o.held, 0, -1)
		b.emit(ctx, events.StockReleased{OrderID: p.OrderID, ReservationID: o.id, Items: stockLines(o.held)})
		o.status, o.held, out = stock.StatusReleased, nil, Released
	}
	if !o.cancelled {
		at := p.CancelledAt
		o.cancelled, o.cancelAt, o.reason = true, &at, p.Reason
	}
	return out, nil
}

func (b *batch) confirmed(p events.OrderConfirmed) (Outcome, error) {
	o := b.orders[p.OrderID]
	action, err := stock.OnConfirm(o.status, o.found)
	if err != nil {
		return "", fmt.Errorf("commit %s: %w", p.OrderID, err)
	}
	if action != stock.Commit {
		return Recorded, nil
	}
	b.move(o.held, -1, -1)
	o.status, o.held = stock.StatusCommitted, nil
	return Committed, nil
}

// move changes the stock of lines by their quantities times the signs.
func (b *batch) move(lines []stock.Line, onHandSign, reservedSign int64) {
	for _, l := range lines {
		lv := b.levels[l.SKU]
		lv.OnHand += onHandSign * l.Quantity
		lv.Reserved += reservedSign * l.Quantity
		b.levels[l.SKU] = lv
	}
}

// emit adds a result event, under the trace of the event that caused it.
func (b *batch) emit(ctx context.Context, p events.Payload) {
	ev := events.New(Source, p)
	ev.TraceParent = tracing.TraceParent(ctx)
	b.results = append(b.results, ev)
}

// save sends every change the events made in one round trip: the stock
// moves per SKU, the reservations' changes and the result events.
func (b *batch) save(ctx context.Context, tx pgx.Tx) error {
	var moves []store.Move
	for _, sku := range slices.Sorted(maps.Keys(b.levels)) {
		now, was := b.levels[sku], b.before[sku]
		if d := (store.Move{SKU: sku, OnHand: now.OnHand - was.OnHand, Reserved: now.Reserved - was.Reserved}); d.OnHand != 0 || d.Reserved != 0 {
			moves = append(moves, d)
		}
	}
	var changes []store.Change
	for _, id := range b.ids {
		o := b.orders[id]
		if o.row && (o.status != o.stored || o.cancelAt != nil) {
			changes = append(changes, store.Change{OrderID: id, Status: o.status, CancelledAt: o.cancelAt, CancelReason: o.reason})
		}
	}
	if len(moves) == 0 && len(changes) == 0 && len(b.results) == 0 {
		return nil
	}
	bt := &pgx.Batch{}
	if len(moves) > 0 {
		store.QueueMoves(bt, moves)
	}
	if len(changes) > 0 {
		store.QueueChanges(bt, changes)
	}
	if err := outbox.Queue(ctx, bt, b.results...); err != nil {
		return err
	}
	if err := tx.SendBatch(ctx, bt).Close(); err != nil {
		return fmt.Errorf("apply %d orders' events: %w", len(b.ids), err)
	}
	return nil
}

// Stock returns the level of sku, or stock.ErrNotFound.
func (s *Service) Stock(ctx context.Context, sku string) (stock.Level, error) {
	return store.GetStock(ctx, s.pool, sku)
}

// SetOnHand sets the on-hand quantity of sku (creating it) in its own
// transaction, if the level meets pre, and returns the new level and
// whether the SKU was new; see store.SetOnHand.
func (s *Service) SetOnHand(ctx context.Context, sku string, n int64, pre stock.Precondition) (l stock.Level, created bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := s.begin(ctx, tx); err != nil {
			return err
		}
		var err error
		l, created, err = store.SetOnHand(ctx, tx, sku, n, pre)
		return err
	})
	return l, created, err
}

func stockLines(lines []stock.Line) []events.StockLine {
	out := make([]events.StockLine, len(lines))
	for i, l := range lines {
		out[i] = events.StockLine{SKU: l.SKU, Quantity: int(l.Quantity)}
	}
	return out
}
