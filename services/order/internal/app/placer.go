package app

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/config"
	"github.com/shopflow/shopflow/pkg/platform/groupcommit"
	"github.com/shopflow/shopflow/pkg/platform/httpserver"
	"github.com/shopflow/shopflow/pkg/platform/outbox"
	"github.com/shopflow/shopflow/pkg/platform/pg"
	"github.com/shopflow/shopflow/pkg/platform/tracing"
	"github.com/shopflow/shopflow/services/order/internal/order"
	"github.com/shopflow/shopflow/services/order/internal/store"
)

// Placements that arrive while others are being stored are stored together:
// one pipelined batch, one implicit transaction, one commit for the group,
// with each statement covering every order of it (group commit, done by
// the service rather than by PostgreSQL). A request never waits for a
// group to fill: a placement that finds a leader slot free starts a leader,
// which stores what is waiting at that moment, itself included, so an idle
// service stores each order alone, and a busy one in groups as large as
// the load makes them.
const (
	// maxGroup bounds the orders stored by one batch.
	maxGroup = 64
	// The batch does not run under any one request's context: its
	// leader's client going away must not fail the others' orders. It
	// ends when the last of its requests has given up on it: at the
	// latest of their deadlines (the HTTP server's request deadline,
	// HTTP_REQUEST_TIMEOUT) and groupGrace, which lets each request
	// answer at its own deadline first (503: send it again with the same
	// Idempotency-Key), so that a stalled database holds a connection
	// and a leader slot no longer than that. A placement without a
	// deadline (a caller other than an HTTP request) gives its group
	// groupTimeout, below the request deadline's default (25 s). The
	// service's shutdown ends it sooner, when it ends the requests still
	// running (httpserver.Detach): the batch then rolls back, each
	// request answers 503 naming its key, and the batch's connection no
	// longer holds the stopping process to the deadline.
	groupGrace   = time.Second
	groupTimeout = 20 * time.Second
)

// PlacementBound is how long after it reached the service a placement
// sent with an HTTP request deadline of requestTimeout (0: httpserver's
// default, MaxHTTPRequestTimeout) may still be stored: its key is taken
// by its batch's first statement, and until then it holds nothing
// KeyPlaced could see, whether it waits for a batch, a connection, or
// PostgreSQL (preparing the batch's statements on a new connection waits
// behind a lock on the orders table); its group's batch ends groupGrace
// after the last deadline of its requests.
func PlacementBound(requestTimeout time.Duration) time.Duration {
	if requestTimeout <= 0 {
		requestTimeout = config.MaxHTTPRequestTimeout
	}
	return requestTimeout + groupGrace
}

// placement is a priced order waiting to be stored, with what its request
// needs stored beside it.
type placement struct {
	ctx  context.Context // the request's: its trace goes into the event
	o    order.Order
	res  store.Response
	key  *Key
	done chan error // buffered: the leader never waits on the owner
}

// placer groups concurrent placements (pkg/platform/groupcommit); see
// maxGroup. Placements with one Idempotency-Key go to different groups,
// so the second finds the first's key taken.
type placer struct {
	q *groupcommit.Queue[*placement]
}

// newPlacer returns a placer storing at most groups groups at a time with
// store, observing each group's size with sizes (metrics; nil for none).
func newPlacer(groups int, sizes func(int), store func(context.Context, []*placement)) *placer {
	if sizes == nil {
		sizes = func(int) {}
	}
	key := func(p *placement) (string, bool) {
		if p.key == nil {
			return "", false
		}
		return p.key.Value, true
	}
	return &placer{q: groupcommit.New(maxGroup, groups, key, func(g []*placement) {
		if g = awaited(g); len(g) > 0 {
			sizes(len(g))
			storeSafely(g, store)
		}
	})}
}

// place stores p, alone or in a group, and returns its outcome: nil, or
// the error storing it alone gave (see storeGroup). When p's request ends
// first (its deadline passed, its client went away) place returns the
// cause: the request answers in time (503), and its order is stored or
// not, as the group it may be in turns out; its Idempotency-Key tells a
// retry which.
func (pl *placer) place(p *placement) error {
	p.done = make(chan error, 1)
	pl.q.Add(p)
	select {
	case err := <-p.done:
		return err
	case <-p.ctx.Done():
		return context.Cause(p.ctx)
	}
}

// awaited returns the placements of g whose requests still wait for
// them. The others ended while they queued (a stalled database holds the
// groups before them) and have answered that the order was not placed
// (503): storing them now would place orders their customers were told
// to send again, or gave up on.
func awaited(g []*placement) []*placement {
	live := g[:0]
	for _, p := range g {
		if p.ctx.Err() != nil {
			p.done <- context.Cause(p.ctx)
			continue
		}
		live = append(live, p)
	}
	return live
}

// groupDeadline is when a group's batch ends: the latest of its
// placements' deadlines and groupGrace, or groupTimeout from now if one
// of them has none.
func groupDeadline(g []*placement) time.Time {
	var last time.Time
	for _, p := range g {
		d, ok := p.ctx.Deadline()
		if !ok {
			return time.Now().Add(groupTimeout)
		}
		if d.After(last) {
			last = d
		}
	}
	return last.Add(groupGrace)
}

// storeSafely runs store on g. A panic in it fails the group's placements
// that have no outcome yet (their requests get a 500) instead of taking
// the service down with them or leaving them waiting.
func storeSafely(g []*placement, store func(context.Context, []*placement)) {
	detached, release := httpserver.Detach(g[0].ctx) // one server's requests, all of them
	defer release()
	ctx, cancel := context.WithDeadline(detached, groupDeadline(g))
	defer cancel()
	defer func() {
		if v := recover(); v != nil {
			err := fmt.Errorf("storing a group of %d orders panicked: %v", len(g), v)
			for _, p := range g {
				select {
				case p.done <- err:
				default: // it has its outcome already
				}
			}
		}
	}()
	store(ctx, g)
}

// storeGroup stores the group's orders, their lines, events and keyed
// responses in one batch and tells each placement the outcome. When the
// batch fails, the group is split in halves, stored one after the other
// the same way, down to single orders, so the order that failed it gets
// its own outcome (a key in use or used, a catalog changed under its
// prices) and the others are stored regardless, in as few batches as the
// failures allow (one bad order among 64: 13 batches); an error that would
// fail every batch alike goes to every order at once. The halves run on
// the group's own turn, one connection at a time: storing the members
// all at once took a connection each, up to the whole pool, which the
// ORDER_PLACEMENT_BATCHES limit is there to keep for reads, the saga and
// the relay.
func (a *App) storeGroup(ctx context.Context, g []*placement) {
	err := a.storeBatch(ctx, g)
	if err == nil || len(g) == 1 || everyOrdersFault(ctx, err) {
		for _, p := range g {
			p.done <- err
		}
		return
	}
	a.storeGroup(ctx, g[:len(g)/2])
	a.storeGroup(ctx, g[len(g)/2:])
}

// everyOrdersFault reports whether err would fail any batch of the group
// the same way (the group's time is up, the database went away), so that
// splitting would only repeat it, up to 2n-1 times. An error the server
// gave about the batch (a key taken, a price out of date, a lost deadlock
// race) may be one order's, or pass on a smaller batch: split then.
func everyOrdersFault(ctx context.Context, err error) bool {
	return ctx.Err() != nil || pg.Unavailable(err)
}

// storeBatch is storeGroup's one batch: take the keys, check the prices,
// insert the orders and lines, store the responses, write the events.
func (a *App) storeBatch(ctx context.Context, g []*placement) error {
	var (
		keys   []string
		stored []store.StoredKey
		os     = make([]order.Order, len(g))
		evs    = make([]events.Event, len(g))
	)
	for i, p := range g {
		if p.key != nil {
			keys = append(keys, p.key.Value)
			stored = append(stored, store.StoredKey{Key: p.key.Value, Fingerprint: p.key.Fingerprint, Response: p.res})
		}
		os[i] = p.o
		evs[i] = events.New(Source, placedEvent(p.o))
		evs[i].TraceParent = tracing.TraceParent(p.ctx)
	}
	b := &pgx.Batch{}
	store.QueueTakeKeys(b, keys...)
	store.QueueCheckPrices(b, os...)
	if err := store.QueueInsertOrders(b, os...); err != nil {
		return err
	}
	store.QueueStoreKeys(b, stored...)
	if err := outbox.Queue(ctx, b, evs...); err != nil {
		return err
	}
	if err := a.pool.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	a.wake()
	return nil
}
