// Package app holds the order service's use cases: place an order, cancel
// it, apply a step's result. Each owns its transaction and writes the
// events it causes to the outbox inside it.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/outbox"
	"github.com/shopflow/shopflow/pkg/platform/tracing"
	"github.com/shopflow/shopflow/services/order/internal/order"
	"github.com/shopflow/shopflow/services/order/internal/store"
)

// Source is the CloudEvents source of the order service's events.
const Source = events.SourceOrder

// App runs the use cases against the service's pool.
type App struct {
	pool       *pgxpool.Pool
	currencies map[string]bool
	log        *slog.Logger
	now        func() time.Time
	wake       func()
	counts     *store.StatusCounter
	catalog    catalog
	placer     *placer
	groupSizes prometheus.Histogram
	expired    prometheus.Counter
	conflicts  *prometheus.CounterVec
}

// DefaultPlacementBatches is how many placement batches (each one group
// of orders, see placer.go) are stored at a time when New is given 0.
// Two keep one batch executing while the other commits; more only make
// the groups smaller and the database's backends compete for its cores
// (BenchmarkPlaceOrder, 2 cores: 3,475 orders/s with 2, 1,387 with 5).
const DefaultPlacementBatches = 2

// New returns an App selling in currencies; wake is called after each
// commit that wrote events (the outbox relay's Wake; nil for none);
// batches bounds the placement batches stored at a time (0: the default).
func New(pool *pgxpool.Pool, currencies []string, log *slog.Logger, wake func(), batches int) *App {
	cs := make(map[string]bool, len(currencies))
	for _, c := range currencies {
		cs[c] = true
	}
	if wake == nil {
		wake = func() {}
	}
	if batches <= 0 {
		batches = DefaultPlacementBatches
	}
	sizes := newGroupSizes()
	a := &App{pool: pool, currencies: cs, log: log, now: time.Now, wake: wake, groupSizes: sizes,
		expired: newExpired(), conflicts: newConflicts(), counts: store.NewStatusCounter(time.Now)}
	a.placer = newPlacer(batches, func(n int) { sizes.Observe(float64(n)) }, a.storeGroup)
	return a
}

// Sells reports whether orders may be placed in currency.
func (a *App) Sells(currency string) bool { return a.currencies[currency] }

// FieldError is one rejected field of a request.
type FieldError struct {
	Field   string
	Message string
}

// ValidationError lists what is wrong with a request.
type ValidationError struct{ Fields []FieldError }

func (e *ValidationError) Error() string {
	return fmt.Sprintf("%d invalid fields, first %s: %s", len(e.Fields), e.Fields[0].Field, e.Fields[0].Message)
}

// Errors the HTTP layer maps to statuses.
var (
	ErrKeyMismatch = errors.New("Idempotency-Key was already used with a different request body")
	ErrKeyInFlight = errors.New("a request with this Idempotency-Key is still in progress")
	ErrNotFound    = store.ErrNotFound
	// ErrProductExists: a create-only PUT of a product whose SKU is in
	// the catalog already.
	ErrProductExists = store.ErrExists
)

// Item is one requested line: what and how many; the price comes from
// the catalog.
type Item struct {
	SKU      string
	Quantity int
}

// PlaceRequest is a validated order request (syntax checked by the HTTP
// layer; the catalog checks are Place's).
type PlaceRequest struct {
	CustomerID string
	Currency   string
	Items      []Item
	CardToken  string
	Address    order.Address
	// ExpectedTotalCents, when set, is the total the client showed its
	// customer: an order priced at another total is not placed
	// (*TotalChangedError), so a price changed under a filled cart is
	// never charged unseen.
	ExpectedTotalCents *int64
}

// TotalChangedError refuses a placement whose total, priced from the
// catalog, is not the one the client expected. Nothing was stored.
type TotalChangedError struct {
	Currency        string
	Expected, Total int64
}

func (e *TotalChangedError) Error() string {
	return fmt.Sprintf("the order's total is %d, not the expected %d (%s minor units): the prices changed", e.Total, e.Expected, e.Currency)
}

// Key is an Idempotency-Key and the fingerprint of the request body it
// came with.
type Key struct {
	Value       string
	Fingerprint []byte
}

// Render turns a placed order into the response to send (and to store
// for replays of its Idempotency-Key).
type Render func(order.Order) store.Response

// Place prices the request from the catalog and stores the order, its
// lines, its OrderPlaced event and (with a key) the response in one
// pipelined batch: one round trip, one implicit transaction, one commit,
// shared with the placements that arrived at the same time (placer.go).
// The batch's first statement takes the key with a transaction-scoped
// lock, so a request that dies lets go of it at once; it fails the whole
// batch, before anything is stored, when another request holds the key
// (ErrKeyInFlight) or one with it completed (its stored response is
// returned, or ErrKeyMismatch for another body). A request expecting
// another total than its lines cost is refused (*TotalChangedError)
// before anything is stored. The next statement checks the
// prices against the catalog table; when it changed since the products
// were cached, they are read again and the order is priced again.
func (a *App) Place(ctx context.Context, key *Key, req PlaceRequest, render Render) (store.Response, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return store.Response{}, err
	}
	// Three times at most: the catalog can change under a placement, and
	// a key found used can have expired by the time its answer is read.
	reread := false
	for range 3 {
		lines, err := a.price(ctx, req)
		if err != nil {
			return store.Response{}, err
		}
		o, err := order.New(id.String(), req.CustomerID, req.Currency, req.CardToken, lines, req.Address, a.now())
		if err != nil {
			return store.Response{}, err // price() enforces the same limits; a bug if reached
		}
		if req.ExpectedTotalCents != nil && *req.ExpectedTotalCents != o.TotalCents {
			if !reread {
				// The copy may be what is out of date (another replica
				// changed the price back): refuse on the table's prices.
				reread = true
				a.catalog.forget(skusOf(req)...)
				continue
			}
			// "Nothing was placed" must be true: a request with this key
			// still in flight (the one a retry follows) may yet place it,
			// so the retry hears that, not a refusal that invites a new
			// attempt under a new key (a second charge). A used key's
			// answer is replayed by the caller (StoredAnswer).
			if key != nil {
				if err := a.keyInFlight(ctx, key.Value); err != nil {
					return store.Response{}, err
				}
			}
			return store.Response{}, &TotalChangedError{Currency: o.Currency, Expected: *req.ExpectedTotalCents, Total: o.TotalCents}
		}
		res := render(o)
		err = a.placer.place(&placement{ctx: ctx, o: o, res: res, key: key})
		if err == nil {
			return res, nil
		}
		if store.PricesChanged(err) {
			a.catalog.forget(skusOf(req)...)
			continue
		}
		if key == nil {
			return store.Response{}, fmt.Errorf("store order: %w", err)
		}
		inFlight, used := store.KeyTaken(err)
		switch {
		case inFlight:
			return store.Response{}, ErrKeyInFlight
		case !used:
			return store.Response{}, fmt.Errorf("store order: %w", err)
		}
		stored, err := a.StoredAnswer(ctx, key)
		switch {
		case err != nil:
			return store.Response{}, err
		case stored == nil:
			continue // expired since it was found used
		}
		return *stored, nil
	}
	return store.Response{}, errors.New("store order: the catalog or the Idempotency-Key kept changing; try again")
}

// StoredAnswer returns what a completed request with key answered: the
// response to replay when the body is the same, ErrKeyMismatch when it is
// not, and nil when no request with key completed within the key's TTL.
// Place asks it when its batch finds the key used; the HTTP layer asks it
// for a request the rules refuse, whose key's first answer comes first.
func (a *App) StoredAnswer(ctx context.Context, key *Key) (*store.Response, error) {
	k, err := store.LookupKey(ctx, a.pool, key.Value, key.Fingerprint)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	case k.Mismatch:
		return nil, ErrKeyMismatch
	}
	return k.Replay, nil
}

// keyInFlight returns ErrKeyInFlight when another transaction holds key
// (a placement with it not yet committed), nil otherwise. It takes the
// key as a placement would, in a transaction it rolls back.
func (a *App) keyInFlight(ctx context.Context, key string) error {
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var b pgx.Batch
	store.QueueTakeKeys(&b, key)
	err = tx.SendBatch(ctx, &b).Close()
	if inFlight, used := store.KeyTaken(err); inFlight {
		return ErrKeyInFlight
	} else if used {
		return nil
	}
	return err
}

// KeyPlaced tells what became of the placements sent with key: the id of
// the order one of them placed (within the key's TTL), ErrKeyInFlight
// while one is being stored, or ErrNotFound when none placed an order and
// none is running. It takes the key as a placement would, in a
// transaction it rolls back, so a placement is never half-way stored
// when it answers "none". A client that never got its answer (a browser
// reloaded mid-checkout) asks it before sending the order again under a
// new key.
func (a *App) KeyPlaced(ctx context.Context, key string) (string, error) {
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		return "", err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var b pgx.Batch
	store.QueueTakeKeys(&b, key)
	err = tx.SendBatch(ctx, &b).Close()
	inFlight, used := store.KeyTaken(err)
	switch {
	case inFlight:
		return "", ErrKeyInFlight
	case used:
		loc, err := store.KeyLocation(ctx, a.pool, key)
		if err != nil {
			return "", err // ErrNotFound: it expired since
		}
		return strings.TrimPrefix(loc, "/v1/orders/"), nil
	case err != nil:
		return "", err
	}
	return "", ErrNotFound // and while this holds the key, none can be placed
}

func skusOf(req PlaceRequest) []string {
	skus := make([]string, len(req.Items))
	for i, it := range req.Items {
		skus[i] = it.SKU
	}
	return skus
}

// price checks the request against the catalog and returns priced lines.
func (a *App) price(ctx context.Context, req PlaceRequest) ([]order.Line, error) {
	products, missing := a.catalog.lookup(skusOf(req))
	// The copy is trusted only where check_prices re-checks it, when the
	// order is stored: a refusal it alone would make (another replica
	// moved the product to this currency) is read again first.
	for _, it := range req.Items {
		if p, ok := products[it.SKU]; ok && p.Currency != req.Currency {
			delete(products, it.SKU)
			missing = append(missing, it.SKU)
		}
	}
	if len(missing) > 0 {
		read, err := store.Products(ctx, a.pool, missing)
		if err != nil {
			return nil, err
		}
		for _, p := range read {
			products[p.SKU] = p
			a.catalog.keep(p)
		}
	}
	var bad []FieldError
	lines := make([]order.Line, len(req.Items))
	for i, it := range req.Items {
		p, ok := products[it.SKU]
		field := fmt.Sprintf("items.%d.sku", i)
		switch {
		case !ok:
			bad = append(bad, FieldError{field, fmt.Sprintf("unknown SKU %q", it.SKU)})
		case !p.Active:
			bad = append(bad, FieldError{field, fmt.Sprintf("%s (%s) is not on sale", it.SKU, p.Name)})
		case p.Currency != req.Currency:
			bad = append(bad, FieldError{field, fmt.Sprintf("%s is sold in %s, not %s", it.SKU, p.Currency, req.Currency)})
		}
		lines[i] = order.Line{SKU: it.SKU, Name: p.Name, Quantity: it.Quantity, UnitPriceCents: p.PriceCents}
	}
	if len(bad) > 0 {
		return nil, &ValidationError{Fields: bad}
	}
	return lines, nil
}

func placedEvent(o order.Order) events.OrderPlaced {
	items := make([]events.Line, len(o.Lines))
	for i, l := range o.Lines {
		items[i] = events.Line{SKU: l.SKU, Quantity: l.Quantity, UnitPriceCents: l.UnitPriceCents}
	}
	a := o.Address
	return events.OrderPlaced{
		OrderID: o.ID, CustomerID: o.CustomerID, Currency: o.Currency, TotalCents: o.TotalCents, Items: items,
		Payment: events.PaymentMethod{CardToken: o.CardToken},
		ShippingAddress: events.Address{Name: a.Name, Line1: a.Line1, Line2: a.Line2, City: a.City,
			PostalCode: a.PostalCode, Country: a.Country},
		PlacedAt: o.PlacedAt,
	}
}

// Cancel is the customer's cancel: a pending order becomes cancelled and
// OrderCancelled is emitted; a cancelled one is returned as it is; a
// confirmed one is order.ErrNotCancellable.
func (a *App) Cancel(ctx context.Context, id string) (order.Order, error) {
	err := pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
		o, err := store.LockOrder(ctx, tx, id)
		if err != nil {
			return err
		}
		out, err := o.Cancel(a.now())
		if err != nil || out == order.NoChange {
			return err
		}
		return a.save(ctx, tx, o, out)
	})
	if err != nil {
		return order.Order{}, err
	}
	a.wake()
	return store.GetOrder(ctx, a.pool, id)
}

// StepResult is one step result for ApplyAll: the order, the result,
// when it happened (its event's time; ApplyAll takes the App's clock
// instead when that is earlier), the id of the event that reported it,
// and the context its events are written under (the consumed event's
// trace).
type StepResult struct {
	Ctx     context.Context
	OrderID string
	Result  order.Result
	At      time.Time
	EventID string
}

// ResultError is ApplyAll's error for a result no retry can apply:
// results[Index] names no order of ours (Err wraps ErrNotFound), or its
// amount or lines are not its order's (order.Order.Mismatch).
type ResultError struct {
	Index int
	Err   error
}

func (e *ResultError) Error() string { return e.Err.Error() }
func (e *ResultError) Unwrap() error { return e.Err }

// ApplyAll records step results inside the consumer's transaction, in
// their order, emitting OrderConfirmed or OrderCancelled for each order
// that gets there, in two round trips whatever their number: lock the
// orders (in id order), reading the lines of those a stock result is
// about alongside, then their updates and events. A result for an
// unknown order, or one that does not fit its order, fails the whole call
// with a *ResultError before anything is applied. A result that
// contradicts its step's recorded outcome (order.Order.Contradicts)
// changes nothing; it is logged and counted
// (shop_order_conflicting_results_total).
func (a *App) ApplyAll(ctx context.Context, tx pgx.Tx, results []StepResult) error {
	if len(results) == 0 {
		return nil
	}
	ids := make([]string, 0, len(results))
	var withLines []string
	seen := make(map[string]bool, len(results))
	lines := make(map[string]bool)
	for _, r := range results {
		if !seen[r.OrderID] {
			seen[r.OrderID] = true
			ids = append(ids, r.OrderID)
		}
		if r.Result.Stock != nil && !lines[r.OrderID] {
			lines[r.OrderID] = true
			withLines = append(withLines, r.OrderID)
		}
	}
	orders, err := store.LockOrdersWithLines(ctx, tx, ids, withLines)
	if err != nil {
		return err
	}
	// Every result is checked before any is applied, so that a batch
	// failing on one does not log and count the others' conflicts twice.
	for i, r := range results {
		o, ok := orders[r.OrderID]
		if !ok {
			return &ResultError{Index: i, Err: fmt.Errorf("a result for unknown order %s: %w", r.OrderID, ErrNotFound)}
		}
		if m := o.Mismatch(r.Result); m != "" {
			return &ResultError{Index: i, Err: fmt.Errorf("result %q for order %s does not match the order: %s", r.Result.Step, r.OrderID, m)}
		}
	}
	var (
		changed []*order.Order
		evs     []events.Event
	)
	isChanged := make(map[string]bool, len(ids))
	now := a.now()
	for _, r := range results {
		o := orders[r.OrderID]
		if was, ok := o.Contradicts(r.Result); ok {
			// One of the two answers is not the step's service's own
			// (forged with its source, or a bug there): the first stands,
			// and someone must look (shop check names what is broken).
			a.log.WarnContext(r.Ctx, "a result contradicts its step's recorded outcome; the order is left as it is",
				"order_id", o.ID, "step", r.Result.Step.Service(), "recorded", was, "result", r.Result.Step,
				"event_id", r.EventID, "status", o.Status)
			a.conflicts.WithLabelValues(r.Result.Step.Service()).Inc()
			continue
		}
		// A result is dated by its producer (ce_time), but never later
		// than this service's clock, the one customer cancels and the
		// expiry use: the contract allows year 9999, and since an order's
		// times never move back, one such event pinned updated_at (and
		// confirmed_at) there for good, and shop check took the order
		// for one changed "-2562047h ago", still settling.
		at := r.At
		if at.IsZero() || at.After(now) {
			at = now
		}
		out := o.Apply(r.Result, at)
		if out == order.NoChange {
			continue
		}
		if !isChanged[o.ID] {
			isChanged[o.ID] = true
			changed = append(changed, o)
		}
		if ev, ok := outcomeEvent(*o, out); ok {
			ev.TraceParent = tracing.TraceParent(r.Ctx)
			evs = append(evs, ev)
		}
	}
	return writeOrders(ctx, tx, changed, evs)
}

// writeOrders stores the saga state of os and writes evs to the outbox,
// in one round trip; nothing to do without orders.
func writeOrders(ctx context.Context, tx pgx.Tx, os []*order.Order, evs []events.Event) error {
	if len(os) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	store.QueueUpdateOrders(b, os...)
	if err := outbox.Queue(ctx, b, evs...); err != nil {
		return err
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("update %d orders: %w", len(os), err)
	}
	return nil
}

// outcomeEvent is the event an outcome emits, if any.
func outcomeEvent(o order.Order, out order.Outcome) (events.Event, bool) {
	switch out {
	case order.BecameConfirmed:
		return events.New(Source, events.OrderConfirmed{OrderID: o.ID, ConfirmedAt: o.ConfirmedAt}), true
	case order.BecameCancelled:
		return events.New(Source, events.OrderCancelled{OrderID: o.ID, Reason: o.Reason(), CancelledAt: o.CancelledAt}), true
	}
	return events.Event{}, false
}

func (a *App) save(ctx context.Context, tx pgx.Tx, o order.Order, out order.Outcome) error {
	var evs []events.Event
	if ev, ok := outcomeEvent(o, out); ok {
		evs = append(evs, ev)
	}
	if err := writeOrders(ctx, tx, []*order.Order{&o}, evs); err != nil {
		return fmt.Errorf("order %s: %w", o.ID, err)
	}
	return nil
}

// StatusCounts returns how many orders are in each status (see
// store.StatusCounter: after the first call, it reads only the orders of
// the last minutes).
func (a *App) StatusCounts(ctx context.Context) (map[string]int64, error) {
	return a.counts.Counts(ctx, a.pool)
}

// CountOrders makes the status counter's first count, the one that reads
// every order, so that a scrape does not (on a large table it can take
// longer than a scrape may). Run it once at start; it returns when done.
func (a *App) CountOrders(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if _, err := a.counts.Counts(ctx, a.pool); err != nil && ctx.Err() == nil {
		a.log.Warn("counting orders by status failed; the next scrape tries again", "err", err)
	}
	return nil
}

// Get reads an order with its lines.
func (a *App) Get(ctx context.Context, id string) (order.Order, error) {
	return store.GetOrder(ctx, a.pool, id)
}

// List pages through orders; see store.ListOrders.
func (a *App) List(ctx context.Context, f store.Filter) ([]order.Order, bool, error) {
	return store.ListOrders(ctx, a.pool, f)
}

// Products lists the catalog.
func (a *App) Products(ctx context.Context) ([]order.Product, error) {
	return store.ListProducts(ctx, a.pool, false)
}

// PutProduct writes a catalog entry as w allows (store.PutProduct) and
// says whether it created it.
func (a *App) PutProduct(ctx context.Context, p order.Product, w store.ProductWrite) (stored order.Product, created bool, err error) {
	stored, created, err = store.PutProduct(ctx, a.pool, p, w)
	if err == nil {
		a.catalog.keep(stored)
	}
	return stored, created, err
}

// expireBatch bounds the orders one expiry transaction locks (a variable
// for the tests).
var expireBatch = 500

// ExpirePending cancels the orders still pending whose deadline (placed
// plus timeout) came before answeredBy, the time up to which every answer
// written has been applied (and every event this service wrote,
// published): those orders had their whole timeout to be answered. It
// emits OrderCancelled for each, so the other services release what they
// hold, and returns how many it cancelled. Each batch locks its orders
// like ApplyAll, so a result or a customer's cancel that commits first
// wins and the expiry of that order is NoChange.
func (a *App) ExpirePending(ctx context.Context, timeout time.Duration, answeredBy time.Time) (int, error) {
	return a.expirePending(ctx, timeout, answeredBy, time.Time{})
}

// expirePending is ExpirePending that takes no new batch after until
// (zero: no limit), after its first; the next round takes up the rest.
func (a *App) expirePending(ctx context.Context, timeout time.Duration, answeredBy, until time.Time) (int, error) {
	expired := 0
	for {
		now := a.now()
		ids, err := store.PendingBefore(ctx, a.pool, answeredBy.Add(-timeout), expireBatch)
		if err != nil || len(ids) == 0 {
			return expired, err
		}
		var done []*order.Order
		err = pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error {
			done = done[:0]
			orders, err := store.LockOrders(ctx, tx, ids)
			if err != nil {
				return err
			}
			var evs []events.Event
			for _, id := range ids {
				o, ok := orders[id]
				if !ok || o.Expire(now, timeout) != order.BecameCancelled {
					continue
				}
				done = append(done, o)
				ev, _ := outcomeEvent(*o, order.BecameCancelled)
				evs = append(evs, ev)
			}
			return writeOrders(ctx, tx, done, evs)
		})
		if err != nil {
			return expired, fmt.Errorf("expire %d pending orders: %w", len(ids), err)
		}
		if len(done) > 0 {
			a.wake()
		}
		for _, o := range done {
			a.log.Warn("order cancelled: it waited too long", "order_id", o.ID, "reason", o.Expiry,
				"placed_at", o.PlacedAt)
		}
		expired += len(done)
		a.expired.Add(float64(len(done)))
		if len(ids) < expireBatch || len(done) == 0 {
			// A full batch with none due: the clock stepped back behind
			// answeredBy. A later round takes them.
			return expired, nil
		}
		if !until.IsZero() && a.now().After(until) {
			return expired, nil // at least one batch a round, however slow the rest was
		}
	}
}

// ExpireLoop expires pending orders (ExpirePending) every interval until
// ctx ends. Only silence counts, so a round expires only the orders that
// had their whole timeout of events flowing:
//   - the events flow while this service's outbox holds nothing older than
//     an interval (outbox.Drained). The looks are recorded in the
//     database (store.WatchFlow), shared by the replicas and kept across
//     restarts; a replica looks only while the broker answers it
//     (readUpTo has not failed, or has succeeded without a failure for an
//     interval since), and a gap without a look longer than three
//     intervals and the slack (every replica down or cut off from the
//     broker, a restart) counts as a hold-up. An order's timeout counts
//     from when the events last began to flow, if that is later than its
//     placement: an OrderPlaced that waited out a broker outage was not
//     answered late;
//   - a hold-up up to that gap and an interval long can go unseen
//     between two looks, so the deadline is taken that much later, and
//     answers are read up to an interval ago: an order is expired five to
//     six intervals and the slack after its timeout, later after a
//     restart, a hold-up or lag;
//   - every answer written up to an interval ago must be applied
//     (readUpTo: the service's consumer group; else the round waits, as
//     an answer in its own backlog is an answer).
//
// Answers held up in another service (its relay stalled) are silence
// here, as that service being down is. Clocks are taken to agree (NTP):
// the deadline is the placing host's, the answers' times their
// producers'.
func (a *App) ExpireLoop(ctx context.Context, timeout, interval, slack time.Duration,
	readUpTo func(context.Context, time.Time) (bool, error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	var (
		st       expiryState
		logged   = "" // the kind of state last logged; "" running (or nothing logged yet)
		kind     = "" // this round's kind
		same     = 0  // rounds in a row of this kind
		ranAt    = a.now()
		warnedAt = ranAt
		// The first round can expire orders a timeout and the margin
		// after the start; well past that, not running is news.
		quiet = 2*timeout + 5*interval + 3*slack
	)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		now := a.now()
		k, why := a.expireRound(ctx, timeout, interval, slack, now, readUpTo, &st)
		if ctx.Err() != nil {
			return nil
		}
		if k == kind {
			same++
		} else {
			kind, same = k, 1
		}
		if k == "" {
			ranAt = now
		}
		// A state is logged once it has held three rounds: lag or an
		// outbox hovering about an interval would flap a line a round.
		if same == 3 && k != logged {
			if k == "" {
				a.log.Info("order expiry runs")
			} else {
				a.log.Info("order expiry waits", "why", why)
			}
			logged = k
		}
		if k != "" && now.Sub(ranAt) > quiet && now.Sub(warnedAt) > timeout {
			warnedAt = now
			a.log.Warn("order expiry has not run for a long time", "why", why, "since", ranAt, "timeout", timeout)
		}
	}
}

// expiryState is what one round of ExpireLoop leaves the next: since
// when readUpTo has failed (zero: it has not, or has since succeeded for
// an interval without a failure) and how often since, and since when it
// has succeeded.
type expiryState struct {
	failing, answering time.Time
	failures           int
}

// expireRound is one round of ExpireLoop at now: the kind of reason it
// could not expire orders and the reason ("" and "" when it could, and
// did if any were due).
func (a *App) expireRound(ctx context.Context, timeout, interval, slack time.Duration, now time.Time,
	readUpTo func(context.Context, time.Time) (bool, error), st *expiryState) (kind, why string) {
	maxGap := 3*interval + slack
	// A round bounded below the gap, so that even one that hits the
	// bound is followed by a look within it; one stuck on a lock says so.
	ctx, cancel := context.WithTimeout(ctx, maxGap-interval)
	defer cancel()
	// The look is stamped when the database read the outbox (its clock),
	// not later: a slow round must not claim more than it saw.
	drained, lookedAt, err := outbox.Drained(ctx, a.pool, interval)
	if err != nil {
		return "outbox", "cannot read the outbox: " + err.Error() // no look: a long failure is a gap
	}
	upTo := now.Add(-interval)
	rctx, rcancel := context.WithTimeout(ctx, min(interval, 10*time.Second))
	read, readErr := readUpTo(rctx, upTo)
	rcancel()
	switch {
	case readErr != nil:
		st.answering = time.Time{}
		if st.failing.IsZero() {
			st.failing = now
		}
		st.failures++
	case st.answering.IsZero():
		st.answering = now
	}
	if !st.failing.IsZero() && !st.answering.IsZero() && now.Sub(st.answering) >= interval {
		st.failing, st.failures = time.Time{}, 0 // answering without a failure for an interval
	}
	// Away: failing again and again for an interval, on and off or not; a
	// single failure (a blip) is not a hold-up.
	brokerAway := st.failures > 1 && now.Sub(st.failing) >= interval
	if brokerAway && drained {
		// This replica's own trouble (its route, its credentials): it
		// stops looking, as if it were down, and leaves the shared watch
		// to the replicas that reach the broker. Writing "not flowing"
		// there would stop expiry for all of them, for as long as this
		// one fails. When no replica reaches the broker, nobody looks,
		// and the gap counts as a hold-up.
		return "broker", "the broker has not answered reliably for an interval"
	}
	since, err := store.WatchFlow(ctx, a.pool, lookedAt, drained, maxGap)
	if err != nil {
		return "watch", err.Error()
	}
	// A hold-up up to maxGap and an interval long may have gone unseen.
	answeredBy := upTo.Add(-maxGap - interval)
	switch {
	case since.IsZero() && brokerAway:
		return "broker", "the broker has not answered reliably for an interval"
	case since.IsZero():
		return "outbox", "events older than " + interval.String() + " wait in the outbox, unpublished (shop_outbox_oldest_unsent_seconds)"
	case answeredBy.Sub(since) < timeout:
		return "flow", "the events have not yet flowed for the timeout and the margin"
	case readErr != nil:
		return "broker", "cannot tell whether the answers are applied: " + readErr.Error()
	case !read:
		return "lag", "answers written more than " + interval.String() + " ago wait unapplied (shop_consumer_lag)"
	}
	if _, err := a.expirePending(ctx, timeout, answeredBy, now.Add(interval)); err != nil {
		return "failed", "expiring failed: " + err.Error()
	}
	return "", ""
}

// PruneKeys deletes expired Idempotency-Keys every interval until ctx
// ends.
func (a *App) PruneKeys(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := store.PruneKeys(ctx, a.pool)
		if err != nil && ctx.Err() == nil {
			a.log.Warn("pruning idempotency keys failed", "err", err)
		} else if n > 0 {
			a.log.Info("pruned idempotency keys", "count", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
