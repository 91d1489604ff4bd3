package app

import (
	"context"
	"time"

	"github.com/shopflow/shopflow/services/order/internal/order"
	"github.com/shopflow/shopflow/services/order/internal/store"
)

// Queued is one order for StoreGroup.
type Queued struct {
	Ctx   context.Context
	Order order.Order
	Res   store.Response
	Key   *Key
}

// StoreGroup stores qs as one placement group and returns each one's
// outcome, in order.
func (a *App) StoreGroup(ctx context.Context, qs ...Queued) []error {
	g := make([]*placement, len(qs))
	for i, q := range qs {
		g[i] = &placement{ctx: q.Ctx, o: q.Order, res: q.Res, key: q.Key, done: make(chan error, 1)}
	}
	a.storeGroup(ctx, g)
	errs := make([]error, len(g))
	for i, p := range g {
		errs[i] = <-p.done
	}
	return errs
}

// SetNow sets the App's clock.
func (a *App) SetNow(now func() time.Time) { a.now = now }

// SetExpireBatch sets how many orders one expiry transaction takes and
// returns the previous value.
func SetExpireBatch(n int) (old int) { old, expireBatch = expireBatch, n; return old }

// ExpirePendingUntil is expirePending with its batch limit.
func (a *App) ExpirePendingUntil(ctx context.Context, timeout time.Duration, answeredBy, until time.Time) (int, error) {
	return a.expirePending(ctx, timeout, answeredBy, until)
}
