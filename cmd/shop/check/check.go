// Package check verifies shopflow's cross-service invariants by reading
// the four services' schemas (orders, payments, inventory, shipping)
// directly. It is an operator tool: the database role it connects as must
// be able to read all four schemas, which no service's own role can.
//
// The invariants (issue 5):
//   - every confirmed order has a captured payment backed by exactly one
//     approved gateway authorization that was captured and neither voided
//     nor refunded, the payment and the gateway's authorization and
//     capture all for the order's total, a committed reservation whose
//     lines equal the order's lines, and a shipment ready for pickup
//     (the live shipment the issue names, moved on by the confirmation,
//     as the payment is captured and the reservation committed) whose
//     tracking number is the one the order shows;
//   - every cancelled order has nothing left standing: no authorized or
//     captured payment, no money held or taken at the gateway (its
//     approved void is of what was authorized, its approved refund of
//     what was captured, amount and currency), no reserved or committed
//     stock, no live shipment;
//   - no payment, charge, reservation or shipment exists for an order the
//     order service does not know (orphans), and no order has more than
//     one of each;
//   - stock is conserved: for every SKU, on hand = the sum of its
//     recorded adjustments (inventory.stock_adjustments: every admin
//     change, the seed's included, and the opening balance the ledger
//     started with) − what was sold (committed), reserved = the
//     quantities of the reservations still held, and neither goes
//     negative; no adjustment, sale or reservation names a SKU the
//     inventory does not have, and every SKU of the baseline (the demo
//     seed) is there;
//   - every service has a record of every order that ended (payment,
//     inventory and shipping each keep one even for an order cancelled
//     before they saw it), so no event about it is stuck or lost;
//   - after the wait, no order is pending, and nothing about the orders
//     is still moving (no outbox row, no service without a record).
//
// The services settle asynchronously, so a single look at a busy system
// can see an order confirmed whose capture is still on its way. Such an
// order is in flight, not broken: one still pending, one an event about
// which waits in an outbox, or one that changed less than SettleTime ago
// and does not hold yet is not a violation. It is listed apart
// (Report.InFlightOrders, counted by Report.InFlight), saying what it
// waits for, and its invariants are checked once it has settled; until
// then the report is not Settled, so it cannot be read as "every
// invariant holds". Run with a Wait therefore waits for the orders in scope to go quiet (none pending,
// no outbox row about them, every one recorded by every service) and then
// re-checks until the invariants hold or the wait runs out; only what is
// still wrong at the end is reported, and a wait that ran out before the
// orders went quiet is itself a violation (unsettled) that says what was
// still moving. A stale state always shows as a
// violation (a missing record included), so "quiet and no violations"
// means settled. Orders placed after the check began are out of scope, so
// a shop that keeps taking orders can be checked while it runs.
//
// A check never outlasts its Wait by more than its Grace: every statement
// carries a server-side timeout and the run a deadline, so a lock held on
// a table it reads or a database that stopped answering ends it with a
// *DatabaseError naming the database, as does a connection lost.
package check

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Rules, the Rule of a Violation.
const (
	RuleConfirmedPayment     = "confirmed.payment"     // confirmed order without a captured payment of its total
	RuleConfirmedCharge      = "confirmed.charge"      // confirmed order whose gateway ledger is not one captured authorization
	RuleConfirmedReservation = "confirmed.reservation" // confirmed order without a committed reservation of its lines
	RuleConfirmedShipment    = "confirmed.shipment"    // confirmed order without a shipment ready for pickup
	RuleCancelledPayment     = "cancelled.payment"     // cancelled order with a payment still authorized or captured
	RuleCancelledCharge      = "cancelled.charge"      // cancelled order with money held or taken at the gateway (or only partly given back)
	RuleCancelledReservation = "cancelled.reservation" // cancelled order with stock still reserved or committed
	RuleCancelledShipment    = "cancelled.shipment"    // cancelled order with a live shipment
	RuleDuplicate            = "duplicate"             // more than one payment, reservation or shipment for an order
	RuleOrphan               = "orphan"                // a row in another service for an order the order service does not know
	RuleUnseen               = "unseen"                // a cancelled order a service has no record of (an event not consumed)
	RuleStock                = "stock"                 // stock not conserved, or negative
	RuleUnsettled            = "unsettled"             // the orders in scope still moving when the wait ran out
)

// Options configure a check. The zero value checks once, now, every order
// and every SKU, with no baseline (no SKU required to exist).
type Options struct {
	// Wait is how long to wait for the orders in scope to settle (none
	// pending, no outbox row about them) and the invariants to hold. Zero
	// checks once.
	Wait time.Duration
	// Baseline is the stock seeded per SKU (shop seed's demo stock):
	// each of its SKUs must be in the inventory. On hand is checked
	// against the adjustment ledger for every SKU, in the baseline or
	// not; the quantities only describe a missing SKU.
	Baseline map[string]int64
	// Since, if not zero, limits the order checks to orders placed at or
	// after it (and the orphan checks to rows created at or after it).
	// Orders placed after the check began are never in scope. Stock is
	// always checked as a whole.
	Since time.Time
	// Poll is the interval between looks while waiting; default 250ms.
	Poll time.Duration
	// Progress, if set, is called after each look while waiting with how
	// long the check has waited and what was still moving (quiet, once
	// the orders have settled and the check looks at them).
	Progress func(waited time.Duration, moving Motion)
	// SettleTime is how long after an order's last change a state of it
	// that does not hold yet is taken for results still on their way
	// (published, not yet consumed) rather than a broken invariant;
	// default DefaultSettleTime. See InFlight.
	SettleTime time.Duration
	// Grace is how long past Wait the check may still take (its last
	// look); default DefaultGrace. The whole Run is bounded by Wait +
	// Grace: a database that stops answering, or a table locked by
	// another session, ends it with a *DatabaseError.
	Grace time.Duration
}

// DefaultSettleTime is Options.SettleTime's default: far longer than a
// result takes from one service to the next, even under load.
const DefaultSettleTime = 30 * time.Second

// DefaultGrace is Options.Grace's default: enough to read a busy shop's
// four schemas once, short enough to be waited for.
const DefaultGrace = 10 * time.Second

// networkMargin is how much longer than its statements (bounded server
// side, see inTx) a Run lets the network take before it stops waiting for
// an answer: the server's own timeout, which says what held the query
// up, normally arrives first.
const networkMargin = time.Second

// Violation is one broken invariant.
type Violation struct {
	// Order is the order id concerned; empty for stock violations.
	Order string `json:"order,omitempty"`
	// SKU is the SKU concerned by a stock violation.
	SKU string `json:"sku,omitempty"`
	// Rule names the invariant (the Rule* constants).
	Rule string `json:"rule"`
	// Detail says what was found, for people.
	Detail string `json:"detail"`
}

// InFlightOrder is an order whose results were still on their way at the
// check's last look: not broken, and not checked.
type InFlightOrder struct {
	Order string `json:"order"`
	// Detail says what it waits for (the steps still pending, the outbox
	// holding an event about it), for people.
	Detail string `json:"detail"`
}

func (o InFlightOrder) String() string { return o.Order + ": " + o.Detail }

func (v Violation) String() string {
	subject := cmp.Or(v.Order, v.SKU)
	if subject == "" {
		return fmt.Sprintf("%s: %s", v.Rule, v.Detail)
	}
	return fmt.Sprintf("%s %s: %s", v.Rule, subject, v.Detail)
}

// Report is what a check found.
type Report struct {
	// Orders counts the orders checked by status.
	Orders map[string]int `json:"orders"`
	// Payments, Charges (gateway authorizations), Reservations and
	// Shipments count the rows of the orders checked.
	Payments     int `json:"payments"`
	Charges      int `json:"charges"`
	Reservations int `json:"reservations"`
	Shipments    int `json:"shipments"`
	// SKUs counts the stock rows checked.
	SKUs int `json:"skus"`
	// InFlight counts the orders still in flight: pending, named by an
	// event not yet published, or changed less than SettleTime ago in a
	// state that does not hold yet. Their invariants are not checked, and
	// they are no violation: InFlightOrders lists them.
	InFlight int `json:"in_flight"`
	// InFlightOrders are the orders InFlight counts, ordered by id, each
	// saying what it waits for.
	InFlightOrders []InFlightOrder `json:"in_flight_orders"`
	// Settled is false when orders were still in flight at the last look,
	// or the wait ran out before the system went quiet; after a wait the
	// Violations then say what was still moving (RuleUnsettled). Without
	// a wait, a report with no violation that is not Settled says that
	// nothing checked was broken, not that everything holds.
	Settled bool `json:"settled"`
	// Waited is how long the check waited (zero without Options.Wait).
	Waited time.Duration `json:"waited_ns"`
	// Violations are the broken invariants, ordered by rule, then subject.
	Violations []Violation `json:"violations"`
}

// Run checks the invariants through pool, which must be able to read the
// orders, payments, inventory and shipping schemas. Violations are in the
// Report; the error is for failures to check at all: a *DatabaseError
// when the database did not answer within Wait + Grace or the connection
// to it was lost.
func Run(ctx context.Context, pool *pgxpool.Pool, opts Options) (Report, error) {
	start := time.Now()
	r := runner{pool: pool, start: start, wait: opts.Wait, grace: cmp.Or(opts.Grace, DefaultGrace)}
	// Every statement gives up server side by r.until() (inTx); the
	// context's deadline, a little later, covers a network that holds
	// every byte, where no answer, not even that one, comes back.
	rctx, cancel := context.WithDeadline(ctx, r.until().Add(networkMargin))
	defer cancel()
	rep, err := r.run(rctx, opts)
	if err != nil {
		return Report{}, r.explain(ctx, rctx, err)
	}
	return rep, nil
}

// runner is one Run's access to the database, and its time.
type runner struct {
	pool        *pgxpool.Pool
	start       time.Time
	wait, grace time.Duration
}

// until is when the run's statements must have ended.
func (r runner) until() time.Time { return r.start.Add(r.wait + r.grace) }

func (r runner) run(ctx context.Context, opts Options) (Report, error) {
	start := r.start
	// Orders placed after the check began are not its business: on a shop
	// still taking orders they are in flight, not broken, and waiting for
	// them would never end. The bound is the database's clock (placed_at
	// is the order service's; on one host they agree, and a skew only
	// moves an order at the edge in or out of scope).
	var until time.Time
	err := r.inTx(ctx, pgx.ReadCommitted, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT now()`).Scan(&until)
	})
	if err != nil {
		return Report{}, err
	}
	poll := cmp.Or(opts.Poll, 250*time.Millisecond)
	deadline := start.Add(opts.Wait)
	quietPolls := 0
	for {
		last := !time.Now().Before(deadline)
		quiet := false
		var moving Motion
		if opts.Wait > 0 {
			var err error
			if moving, err = r.motion(ctx, opts.Since, until); err != nil {
				return Report{}, err
			}
			if moving.Quiet() {
				quietPolls++
			} else {
				quietPolls = 0
			}
			if opts.Progress != nil {
				opts.Progress(time.Since(start), moving)
			}
			// Two quiet looks in a row: a relay that was between taking a
			// batch and publishing it has had a poll interval to finish.
			quiet = quietPolls >= 2
		}
		if opts.Wait == 0 || quiet || last {
			rep, err := r.checkOnce(ctx, opts, until)
			if err != nil {
				return Report{}, err
			}
			rep.Settled = (opts.Wait == 0 || quiet) && rep.InFlight == 0
			if opts.Wait > 0 {
				rep.Waited = time.Since(start).Round(time.Millisecond)
			}
			if !rep.Settled && opts.Wait > 0 {
				// Not settled is not "OK": what was not checked settled
				// cannot be said to hold.
				still := moving.String()
				switch {
				case !moving.Quiet():
				case rep.InFlight > 0:
					still = fmt.Sprintf("%s changed in the last %v still not consistent",
						plural(rep.InFlight, "order", "orders"), cmp.Or(opts.SettleTime, DefaultSettleTime))
				default:
					still = "it went quiet only at the last look, too late to tell whether a result was still between a relay and a consumer"
				}
				rep.Violations = append([]Violation{{Rule: RuleUnsettled,
					Detail: fmt.Sprintf("the orders checked did not settle within the %v wait: %s", opts.Wait, still)}}, rep.Violations...)
				sortViolations(rep.Violations)
			}
			if opts.Wait == 0 || last || len(rep.Violations) == 0 {
				return rep, nil
			}
			// Quiet but not yet right: a result may still be between a
			// relay and a consumer. Look again until the deadline.
		}
		t := time.NewTimer(min(poll, max(time.Until(deadline), time.Millisecond)))
		select {
		case <-ctx.Done():
			t.Stop()
			return Report{}, ctx.Err()
		case <-t.C:
		}
	}
}

// inTx runs f in a read-only transaction at iso whose statements the
// server itself cancels once the run's time is up: a statement waiting
// for a lock another session holds (a migration, a LOCK TABLE) would
// otherwise wait as long as that session pleases, and a client that
// merely stopped waiting would leave it queued for the lock, in the way
// of every session behind it. lock_timeout ends a little sooner than
// statement_timeout so that a lock wait is reported as one.
func (r runner) inTx(ctx context.Context, iso pgx.TxIsoLevel, f func(pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, r.pool, pgx.TxOptions{IsoLevel: iso, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		left := time.Until(r.until())
		stmt, lock := max(left.Milliseconds(), 1), max((left-100*time.Millisecond).Milliseconds(), 1)
		if _, err := tx.Exec(ctx, `SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', $2, true)`,
			strconv.FormatInt(stmt, 10), strconv.FormatInt(lock, 10)); err != nil {
			return err
		}
		return f(tx)
	})
}

// DatabaseError is a Run that could not finish because the database did
// not answer in time or the connection to it was lost. It names the
// database by name, host and port, never with the URL's password.
type DatabaseError struct {
	// Database is "database NAME on HOST:PORT".
	Database string
	// TimedOut is true when the database did not answer in time, false
	// when the connection was lost.
	TimedOut bool
	// After is how long the run had been going when it gave up.
	After time.Duration
	// Wait and Grace are the run's Options.Wait and Options.Grace.
	Wait, Grace time.Duration
	// Err is what the driver or the server said.
	Err error
}

func (e *DatabaseError) Error() string {
	if !e.TimedOut {
		return fmt.Sprintf("check: lost the connection to %s after %v: %v", e.Database, e.After, e.Err)
	}
	allowed := fmt.Sprintf("the %v wait + %v", e.Wait, e.Grace)
	if e.Wait == 0 {
		allowed = e.Grace.String()
	}
	cause := e.Err.Error()
	if pgErr, ok := errors.AsType[*pgconn.PgError](e.Err); ok && pgErr.Code == "55P03" {
		cause += "; another session holds a lock on a table the check reads"
	}
	return fmt.Sprintf("check: %s did not answer in time: gave up after %v (allowed: %s): %s", e.Database, e.After, allowed, cause)
}

func (e *DatabaseError) Unwrap() error { return e.Err }

// explain turns err, which ended the run, into the error Run returns: a
// *DatabaseError when the database did not answer in time or the
// connection was lost, err itself when the caller's ctx ended, err with
// the likely cause added when a table is missing.
func (r runner) explain(ctx, rctx context.Context, err error) error {
	if ctx.Err() != nil {
		return err // the caller stopped the check (an interrupt)
	}
	cfg := r.pool.Config().ConnConfig
	db := fmt.Sprintf("database %s on %s", cfg.Database, net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))))
	after := time.Since(r.start).Round(100 * time.Millisecond)
	pgErr, isPg := errors.AsType[*pgconn.PgError](err)
	switch {
	case rctx.Err() != nil || pgconn.Timeout(err) ||
		// query_canceled (statement_timeout), lock_not_available (lock_timeout)
		isPg && (pgErr.Code == "57014" || pgErr.Code == "55P03"):
		return &DatabaseError{Database: db, TimedOut: true, After: after, Wait: r.wait, Grace: r.grace, Err: err}
	case lostConnection(err):
		return &DatabaseError{Database: db, After: after, Wait: r.wait, Grace: r.grace, Err: err}
	}
	return fmt.Errorf("check: %w", explainSchema(err))
}

// lostConnection reports whether err says the connection to the server
// broke (as opposed to a query the server refused): the server or a
// proxy closed or reset it, or the server ended the session (FATAL, as
// when it shuts down or an administrator terminates the backend). A
// connection that could not be made at all is not lost: the caller says
// where it tried (pgconn.ConnectError).
func lostConnection(err error) bool {
	if _, ok := errors.AsType[*pgconn.ConnectError](err); ok {
		return false
	}
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		return pgErr.Severity == "FATAL" || pgErr.Severity == "PANIC"
	}
	_, isNet := errors.AsType[net.Error](err)
	return isNet || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "conn closed")
}

// Motion is what was still moving among the orders in scope at one look.
// The zero Motion is quiet.
type Motion struct {
	// Pending counts the orders still pending.
	Pending int
	// Outbox counts, per schema (orders, payments, inventory, shipping),
	// the events about the orders not yet published by that service's
	// relay; OutboxAge is how long the oldest of them had been waiting.
	Outbox    map[string]int
	OutboxAge map[string]time.Duration
	// Unrecorded counts, per service (payment, inventory, shipping), the
	// orders it has no record of yet: events about them it has not
	// consumed (lag), or never will (dead-lettered).
	Unrecorded map[string]int
}

// Quiet reports whether nothing was moving.
func (m Motion) Quiet() bool {
	return m.Pending == 0 && len(m.Outbox) == 0 && len(m.Unrecorded) == 0
}

// String says what was moving, for people: "1 order pending; 2 events
// in the payments outbox not yet published (the oldest waiting 5.1s); 1
// order not yet recorded by shipping".
func (m Motion) String() string {
	var parts []string
	if m.Pending > 0 {
		parts = append(parts, plural(m.Pending, "order", "orders")+" pending")
	}
	for _, schema := range slices.Sorted(maps.Keys(m.Outbox)) {
		parts = append(parts, fmt.Sprintf("%s in the %s outbox not yet published (the oldest waiting %v)",
			plural(m.Outbox[schema], "event", "events"), schema, m.OutboxAge[schema].Round(100*time.Millisecond)))
	}
	for _, service := range slices.Sorted(maps.Keys(m.Unrecorded)) {
		parts = append(parts, fmt.Sprintf("%s not yet recorded by %s", plural(m.Unrecorded[service], "order", "orders"), service))
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, "; ")
}

// plural says "1 order", "2 orders".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// motion looks at what is still moving among the orders in scope
// (placed since, and before until): pending, named by an outbox row, or
// unknown to a service. An order a service has not recorded yet is one
// whose events it is still consuming (or retrying): without this, a
// cancelled order would look clean while its payment is still being
// authorized.
func (r runner) motion(ctx context.Context, since, until time.Time) (Motion, error) {
	// Outbox rows are keyed by order id: only those of orders in scope
	// count, so orders placed meanwhile do not keep a busy shop "loud".
	const q = `
WITH scope AS (SELECT id::text AS key, status FROM orders.orders WHERE placed_at >= $1 AND placed_at < $2),
outbox AS (
    SELECT 'orders' AS schema, x.created_at FROM orders.outbox x JOIN scope ON x.key = convert_to(scope.key, 'UTF8')
    UNION ALL SELECT 'payments', x.created_at FROM payments.outbox x JOIN scope ON x.key = convert_to(scope.key, 'UTF8')
    UNION ALL SELECT 'inventory', x.created_at FROM inventory.outbox x JOIN scope ON x.key = convert_to(scope.key, 'UTF8')
    UNION ALL SELECT 'shipping', x.created_at FROM shipping.outbox x JOIN scope ON x.key = convert_to(scope.key, 'UTF8'))
SELECT 'pending', '', count(*), 0::float8 FROM scope WHERE status = 'pending'
UNION ALL SELECT 'outbox', schema, count(*), extract(epoch FROM now() - min(created_at))::float8 FROM outbox GROUP BY schema
UNION ALL SELECT 'unrecorded', 'payment', count(*), 0 FROM scope
    WHERE NOT EXISTS (SELECT 1 FROM payments.payments p WHERE p.order_id = scope.key)
UNION ALL SELECT 'unrecorded', 'inventory', count(*), 0 FROM scope
    WHERE NOT EXISTS (SELECT 1 FROM inventory.reservations r WHERE r.order_id = scope.key)
UNION ALL SELECT 'unrecorded', 'shipping', count(*), 0 FROM scope
    WHERE NOT EXISTS (SELECT 1 FROM shipping.shipments s WHERE s.order_id = scope.key)
      AND NOT EXISTS (SELECT 1 FROM shipping.unscheduled_cancellations u WHERE u.order_id = scope.key)`
	var m Motion
	err := r.inTx(ctx, pgx.RepeatableRead, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, q, since, until)
		if err != nil {
			return err
		}
		var kind, name string
		var n int
		var age float64
		_, err = pgx.ForEachRow(rows, []any{&kind, &name, &n, &age}, func() error {
			switch {
			case n == 0:
			case kind == "pending":
				m.Pending = n
			case kind == "outbox":
				m.Outbox = setIn(m.Outbox, name, n)
				m.OutboxAge = setIn(m.OutboxAge, name, time.Duration(age*float64(time.Second)))
			case kind == "unrecorded":
				m.Unrecorded = setIn(m.Unrecorded, name, n)
			}
			return nil
		})
		return err
	})
	return m, err
}

// setIn sets m[k] = v, making m if it is nil, and returns m.
func setIn[V any](m map[string]V, k string, v V) map[string]V {
	if m == nil {
		m = map[string]V{}
	}
	m[k] = v
	return m
}

// explainSchema adds the likely cause to a missing-table error: a database
// the suite never ran on, or a role that cannot see every schema.
func explainSchema(err error) error {
	if strings.Contains(err.Error(), "SQLSTATE 42P01") || strings.Contains(err.Error(), "SQLSTATE 3F000") ||
		strings.Contains(err.Error(), "SQLSTATE 42501") {
		return fmt.Errorf("%w (is this the suite's database, and can this role read the orders, payments, inventory and shipping schemas?)", err)
	}
	return err
}

// The state of the orders in scope, as each service sees it.
type (
	orderRow struct {
		id, status, currency string
		total                int64
		lines                map[string]int64 // sku → quantity
		age                  time.Duration    // since the order last changed (updated_at)
		steps                [3]string        // payment, inventory, shipping: the saga's steps (orders.*_step)
		tracking             string           // the tracking number the order shows (from ShipmentScheduled)
	}
	paymentRow struct {
		status, currency, chargeID string
		amount                     int64
	}
	chargeRow struct {
		operation, outcome, chargeID, currency string
		amount                                 int64
	}
	reservationRow struct {
		status string
		lines  map[string]int64
	}
	shipmentRow struct {
		status, tracking string
	}
)

// snapshot is everything read for one check, from one repeatable-read
// transaction so the four schemas are seen at one moment.
type snapshot struct {
	orders       map[string]*orderRow
	payments     map[string][]paymentRow
	charges      map[string][]chargeRow
	reservations map[string][]*reservationRow
	shipments    map[string][]shipmentRow
	unscheduled  map[string]bool           // orders shipping heard cancelled before placed
	outbox       map[string]map[string]int // order → schema → events about it not yet published
	stock        []stockRow
	adjusted     map[string]adjustments // sku → its recorded on-hand adjustments
	held         map[string]int64       // sku → quantity of reservations still reserved
	sold         map[string]int64       // sku → quantity of committed reservations
	violations   []Violation
}

type stockRow struct {
	sku                         string
	onHand, reserved, available int64
}

// adjustments sums a SKU's rows in the inventory's adjustment ledger.
type adjustments struct {
	total int64 // the sum of their deltas
	n     int64 // how many
}

func (r runner) checkOnce(ctx context.Context, opts Options, until time.Time) (Report, error) {
	var s *snapshot
	err := r.inTx(ctx, pgx.RepeatableRead, func(tx pgx.Tx) error {
		var err error
		s, err = read(ctx, tx, opts.Since, until)
		return err
	})
	if err != nil {
		return Report{}, err
	}
	rep := Report{Orders: map[string]int{}, SKUs: len(s.stock)}
	for _, o := range s.orders {
		rep.Orders[o.status]++
		rep.Payments += len(s.payments[o.id])
		rep.Reservations += len(s.reservations[o.id])
		rep.Shipments += len(s.shipments[o.id])
		for _, c := range s.charges[o.id] {
			if c.operation == "authorize" {
				rep.Charges++
			}
		}
	}
	vs := s.violations
	settle := cmp.Or(opts.SettleTime, DefaultSettleTime)
	for _, id := range slices.Sorted(maps.Keys(s.orders)) {
		o := s.orders[id]
		ovs := checkOrder(s, o)
		if kept, why, ok := inFlight(s, o, ovs, settle); ok {
			rep.InFlight++
			rep.InFlightOrders = append(rep.InFlightOrders, InFlightOrder{Order: o.id, Detail: why})
			ovs = kept
		}
		vs = append(vs, ovs...)
	}
	vs = append(vs, checkStock(s, opts.Baseline)...)
	sortViolations(vs)
	rep.Violations = vs
	return rep, nil
}

// sortViolations orders vs by rule, then subject.
func sortViolations(vs []Violation) {
	slices.SortStableFunc(vs, func(a, b Violation) int {
		return cmp.Or(strings.Compare(a.Rule, b.Rule), strings.Compare(a.Order, b.Order), strings.Compare(a.SKU, b.SKU))
	})
}

// read loads the orders in scope and every other service's rows for them;
// rows for unknown orders become orphan violations at once.
func read(ctx context.Context, tx pgx.Tx, since, until time.Time) (*snapshot, error) {
	s := &snapshot{
		orders: map[string]*orderRow{}, payments: map[string][]paymentRow{}, charges: map[string][]chargeRow{},
		reservations: map[string][]*reservationRow{}, shipments: map[string][]shipmentRow{}, unscheduled: map[string]bool{},
		outbox: map[string]map[string]int{}, adjusted: map[string]adjustments{}, held: map[string]int64{}, sold: map[string]int64{},
	}
	orphan := func(id, what string) {
		s.violations = append(s.violations, Violation{Order: id, Rule: RuleOrphan,
			Detail: what + " for an order the order service does not know"})
	}

	rows, err := tx.Query(ctx, `SELECT id::text, status, currency, total_cents, extract(epoch FROM now() - updated_at)::float8,
    payment_step, inventory_step, shipping_step, tracking_number
FROM orders.orders WHERE placed_at >= $1 AND placed_at < $2`, since, until)
	if err != nil {
		return nil, err
	}
	var o orderRow
	var age float64
	_, err = pgx.ForEachRow(rows, []any{&o.id, &o.status, &o.currency, &o.total, &age, &o.steps[0], &o.steps[1], &o.steps[2], &o.tracking}, func() error {
		row := o
		row.lines = map[string]int64{}
		row.age = time.Duration(age * float64(time.Second))
		s.orders[o.id] = &row
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read orders: %w", err)
	}

	rows, err = tx.Query(ctx, `
WITH scope AS (SELECT id::text AS key FROM orders.orders WHERE placed_at >= $1 AND placed_at < $2)
SELECT scope.key, 'orders' FROM orders.outbox x JOIN scope ON x.key = convert_to(scope.key, 'UTF8')
UNION ALL SELECT scope.key, 'payments' FROM payments.outbox x JOIN scope ON x.key = convert_to(scope.key, 'UTF8')
UNION ALL SELECT scope.key, 'inventory' FROM inventory.outbox x JOIN scope ON x.key = convert_to(scope.key, 'UTF8')
UNION ALL SELECT scope.key, 'shipping' FROM shipping.outbox x JOIN scope ON x.key = convert_to(scope.key, 'UTF8')`, since, until)
	if err != nil {
		return nil, err
	}
	var id, schema string
	_, err = pgx.ForEachRow(rows, []any{&id, &schema}, func() error {
		s.outbox[id] = setIn(s.outbox[id], schema, s.outbox[id][schema]+1)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read outboxes: %w", err)
	}

	rows, err = tx.Query(ctx, `
SELECT l.order_id::text, l.sku, sum(l.quantity)::bigint
FROM orders.order_lines l JOIN orders.orders o ON o.id = l.order_id
WHERE o.placed_at >= $1 AND o.placed_at < $2 GROUP BY 1, 2`, since, until)
	if err != nil {
		return nil, err
	}
	var sku string
	var qty int64
	_, err = pgx.ForEachRow(rows, []any{&id, &sku, &qty}, func() error {
		if o := s.orders[id]; o != nil {
			o.lines[sku] = qty
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read order lines: %w", err)
	}

	// Each other table is read whole, joined to the orders to tell rows
	// of orders in scope (in_scope) from orphans (known false).
	const scope = `o.id IS NOT NULL, coalesce(o.placed_at >= $1 AND o.placed_at < $2, false)`
	var known, inScope, fresh bool

	rows, err = tx.Query(ctx, `
SELECT p.order_id, p.status, p.amount_cents, p.currency, p.charge_id, `+scope+`, p.created_at >= $1
FROM payments.payments p LEFT JOIN orders.orders o ON o.id::text = p.order_id`, since, until)
	if err != nil {
		return nil, err
	}
	var p paymentRow
	_, err = pgx.ForEachRow(rows, []any{&id, &p.status, &p.amount, &p.currency, &p.chargeID, &known, &inScope, &fresh}, func() error {
		switch {
		case !known && fresh:
			orphan(id, "payment ("+p.status+")")
		case inScope:
			s.payments[id] = append(s.payments[id], p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read payments: %w", err)
	}

	rows, err = tx.Query(ctx, `
SELECT g.idempotency_key, g.operation, g.outcome, g.charge_id, g.amount_cents, g.currency, `+scope+`, g.created_at >= $1
FROM payments.gateway_charges g LEFT JOIN orders.orders o ON o.id::text = g.idempotency_key`, since, until)
	if err != nil {
		return nil, err
	}
	var c chargeRow
	_, err = pgx.ForEachRow(rows, []any{&id, &c.operation, &c.outcome, &c.chargeID, &c.amount, &c.currency, &known, &inScope, &fresh}, func() error {
		switch {
		case !known && fresh && c.outcome == "approved":
			// Money moved at the gateway for no order.
			orphan(id, "gateway "+c.operation+" "+c.chargeID+" (approved)")
		case inScope:
			s.charges[id] = append(s.charges[id], c)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read gateway charges: %w", err)
	}

	rows, err = tx.Query(ctx, `
SELECT r.order_id, r.status, `+scope+`, r.created_at >= $1,
       coalesce(array_agg(l.sku ORDER BY l.sku) FILTER (WHERE l.sku IS NOT NULL), '{}'),
       coalesce(array_agg(l.quantity ORDER BY l.sku) FILTER (WHERE l.sku IS NOT NULL), '{}')
FROM inventory.reservations r
LEFT JOIN inventory.reservation_lines l ON l.order_id = r.order_id
LEFT JOIN orders.orders o ON o.id::text = r.order_id
GROUP BY r.order_id, r.status, o.id, o.placed_at, r.created_at`, since, until)
	if err != nil {
		return nil, err
	}
	var status string
	var skus []string
	var qtys []int64
	_, err = pgx.ForEachRow(rows, []any{&id, &status, &known, &inScope, &fresh, &skus, &qtys}, func() error {
		r := &reservationRow{status: status, lines: map[string]int64{}}
		for i := range skus {
			r.lines[skus[i]] += qtys[i]
		}
		switch r.status {
		case "reserved":
			for k, q := range r.lines {
				s.held[k] += q
			}
		case "committed":
			for k, q := range r.lines {
				s.sold[k] += q
			}
		}
		switch {
		case !known && fresh:
			orphan(id, "reservation ("+r.status+")")
		case inScope:
			s.reservations[id] = append(s.reservations[id], r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read reservations: %w", err)
	}

	rows, err = tx.Query(ctx, `
SELECT sh.order_id, sh.status, sh.tracking_number, `+scope+`, sh.created_at >= $1
FROM shipping.shipments sh LEFT JOIN orders.orders o ON o.id::text = sh.order_id`, since, until)
	if err != nil {
		return nil, err
	}
	var sh shipmentRow
	_, err = pgx.ForEachRow(rows, []any{&id, &sh.status, &sh.tracking, &known, &inScope, &fresh}, func() error {
		switch {
		case !known && fresh:
			orphan(id, "shipment "+sh.tracking+" ("+sh.status+")")
		case inScope:
			s.shipments[id] = append(s.shipments[id], sh)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read shipments: %w", err)
	}

	rows, err = tx.Query(ctx, `
SELECT u.order_id FROM shipping.unscheduled_cancellations u
JOIN orders.orders o ON o.id::text = u.order_id WHERE o.placed_at >= $1 AND o.placed_at < $2`, since, until)
	if err != nil {
		return nil, err
	}
	_, err = pgx.ForEachRow(rows, []any{&id}, func() error {
		s.unscheduled[id] = true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read unscheduled cancellations: %w", err)
	}

	rows, err = tx.Query(ctx, `SELECT sku, on_hand, reserved, available FROM inventory.stock ORDER BY sku`)
	if err != nil {
		return nil, err
	}
	var st stockRow
	_, err = pgx.ForEachRow(rows, []any{&st.sku, &st.onHand, &st.reserved, &st.available}, func() error {
		s.stock = append(s.stock, st)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read stock: %w", err)
	}

	rows, err = tx.Query(ctx, `SELECT sku, sum(delta)::bigint, count(*) FROM inventory.stock_adjustments GROUP BY sku`)
	if err != nil {
		return nil, err
	}
	var adj adjustments
	_, err = pgx.ForEachRow(rows, []any{&sku, &adj.total, &adj.n}, func() error {
		s.adjusted[sku] = adj
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read stock adjustments: %w", err)
	}
	return s, nil
}

// checkOrder applies the per-order invariants.
func checkOrder(s *snapshot, o *orderRow) []Violation {
	var vs []Violation
	add := func(rule, format string, args ...any) {
		vs = append(vs, Violation{Order: o.id, Rule: rule, Detail: fmt.Sprintf(format, args...)})
	}
	pays, ress, ships := s.payments[o.id], s.reservations[o.id], s.shipments[o.id]
	for _, c := range []struct {
		what string
		n    int
	}{{"payments", len(pays)}, {"reservations", len(ress)}, {"shipments", len(ships)}} {
		if c.n > 1 {
			add(RuleDuplicate, "%d %s", c.n, c.what)
		}
	}
	led := ledgerOf(s.charges[o.id])

	switch o.status {
	case "confirmed":
		switch {
		case len(pays) == 0:
			add(RuleConfirmedPayment, "no payment")
		case pays[0].status != "captured":
			add(RuleConfirmedPayment, "payment is %s, want captured", pays[0].status)
		case pays[0].amount != o.total || pays[0].currency != o.currency:
			add(RuleConfirmedPayment, "payment of %d %s for an order of %d %s", pays[0].amount, pays[0].currency, o.total, o.currency)
		}
		switch {
		case led.authorize == nil:
			add(RuleConfirmedCharge, "no gateway authorization")
		case led.authorize.outcome != "approved":
			add(RuleConfirmedCharge, "gateway authorization is %s", led.authorize.outcome)
		case !led.approved["capture"]:
			add(RuleConfirmedCharge, "authorization %s never captured", led.authorize.chargeID)
		}
		// The money that moved is the gateway's: its amount, not only the
		// payment row's, must be the order's.
		for _, c := range s.charges[o.id] {
			if c.outcome == "approved" && (c.operation == "authorize" || c.operation == "capture") &&
				(c.amount != o.total || c.currency != o.currency) {
				add(RuleConfirmedCharge, "gateway %s of %d %s for an order of %d %s", c.operation, c.amount, c.currency, o.total, o.currency)
			}
		}
		for _, op := range []string{"void", "refund"} {
			if led.approved[op] {
				add(RuleConfirmedCharge, "gateway %s approved for a confirmed order", op)
			}
		}
		if len(pays) > 0 && led.authorize != nil && pays[0].chargeID != led.authorize.chargeID {
			add(RuleConfirmedCharge, "payment names charge %q, the gateway authorized %q", pays[0].chargeID, led.authorize.chargeID)
		}
		for _, c := range led.foreign {
			add(RuleConfirmedCharge, "gateway %s on another charge %s (authorized %s)", c.operation, c.chargeID, led.authorize.chargeID)
		}
		switch {
		case len(ress) == 0:
			add(RuleConfirmedReservation, "no reservation")
		case ress[0].status != "committed":
			add(RuleConfirmedReservation, "reservation is %s, want committed", ress[0].status)
		case !maps.Equal(ress[0].lines, o.lines):
			add(RuleConfirmedReservation, "reservation lines %s, order lines %s", lines(ress[0].lines), lines(o.lines))
		}
		switch {
		case len(ships) == 0:
			add(RuleConfirmedShipment, "no shipment")
		case ships[0].status != "ready":
			// scheduled: the confirmation never reached shipping, so the
			// parcel is never handed to the carrier.
			add(RuleConfirmedShipment, "shipment %s is %s, want ready", ships[0].tracking, ships[0].status)
		case ships[0].tracking != o.tracking:
			// The customer follows the parcel by the number the order
			// shows: one from another shipment (a result sent by someone
			// other than shipping) leads nowhere.
			add(RuleConfirmedShipment, "the order shows tracking number %q, its shipment is %s", o.tracking, ships[0].tracking)
		}

	case "cancelled":
		unseen := func(service string) {
			add(RuleUnseen, "the %s service has no record of the order: an event about it was not consumed (see shop dlq list)", service)
		}
		if len(pays) == 0 {
			unseen("payment")
		}
		if len(ress) == 0 {
			unseen("inventory")
		}
		if len(ships) == 0 && !s.unscheduled[o.id] {
			unseen("shipping")
		}
		for _, p := range pays {
			if p.status == "authorized" || p.status == "captured" {
				add(RuleCancelledPayment, "payment is %s", p.status)
			}
		}
		if led.authorize != nil && led.authorize.outcome == "approved" {
			// What was undone must be what was done: a refund of a cent
			// for a capture of the whole order leaves the money taken.
			captured, authorized := led.moved["capture"], []chargeRow{*led.authorize}
			switch {
			case led.approved["capture"] && !led.approved["refund"]:
				add(RuleCancelledCharge, "charge %s captured and not refunded", led.authorize.chargeID)
			case led.approved["capture"] && !maps.Equal(sums(led.moved["refund"]), sums(captured)):
				add(RuleCancelledCharge, "charge %s captured %s but refunded %s", led.authorize.chargeID, money(captured), money(led.moved["refund"]))
			case !led.approved["capture"] && !led.approved["void"]:
				add(RuleCancelledCharge, "charge %s still authorized (neither voided nor captured and refunded)", led.authorize.chargeID)
			case !led.approved["capture"] && !maps.Equal(sums(led.moved["void"]), sums(authorized)):
				add(RuleCancelledCharge, "charge %s authorized %s but voided %s", led.authorize.chargeID, money(authorized), money(led.moved["void"]))
			}
		}
		for _, c := range led.foreign {
			add(RuleCancelledCharge, "gateway %s on another charge %s", c.operation, c.chargeID)
		}
		for _, r := range ress {
			if r.status == "reserved" || r.status == "committed" {
				add(RuleCancelledReservation, "reservation is %s (%s)", r.status, lines(r.lines))
			}
		}
		for _, sh := range ships {
			if live(sh.status) {
				add(RuleCancelledShipment, "shipment %s is %s", sh.tracking, sh.status)
			}
		}
	}
	// A movement without an approved authorization cannot happen at a
	// real gateway; here it means the ledger was written around the code.
	if (led.authorize == nil || led.authorize.outcome != "approved") && len(led.approved) > 0 {
		rule := RuleCancelledCharge
		if o.status == "confirmed" {
			rule = RuleConfirmedCharge
		}
		if o.status != "pending" {
			add(rule, "gateway %s approved without an approved authorization", strings.Join(slices.Sorted(maps.Keys(led.approved)), ", "))
		}
	}
	slices.SortStableFunc(vs, func(a, b Violation) int { return strings.Compare(a.Rule, b.Rule) })
	return vs
}

// inFlight reports whether o is still in flight and if so returns the
// violations of its own, vs, that stand, and what it waits for. It is in
// flight when it is pending, when an event about it waits in an outbox,
// or when it changed less than settle ago and does not hold yet (a
// result published but not yet consumed shows nowhere but in the state
// it has not changed yet). Its invariants are for when it has settled;
// reporting them now would call a busy shop broken. Duplicates are never
// on their way anywhere, and stay.
func inFlight(s *snapshot, o *orderRow, vs []Violation, settle time.Duration) (kept []Violation, why string, ok bool) {
	var unmet []string
	for _, v := range vs {
		if v.Rule == RuleDuplicate {
			kept = append(kept, v)
		} else {
			unmet = append(unmet, v.Detail)
		}
	}
	var reasons []string
	for _, schema := range slices.Sorted(maps.Keys(s.outbox[o.id])) {
		reasons = append(reasons, fmt.Sprintf("%s about it in the %s outbox not yet published",
			plural(s.outbox[o.id][schema], "event", "events"), schema))
	}
	// Nothing left in an outbox: what it waits for was published, and
	// not consumed yet, or never will be.
	lost := ""
	if len(reasons) == 0 {
		lost = " (if it stays so, the service that owes the answer may not be running, or be behind: see its consumer lag on /ops; " +
			"or an event about it was dead-lettered: see shop dlq list)"
	}
	var detail string
	switch {
	case o.status == "pending":
		var waiting []string
		for i, step := range []string{"payment", "inventory", "shipping"} {
			if o.steps[i] == "pending" {
				waiting = append(waiting, step)
			}
		}
		if len(waiting) > 0 {
			reasons = append([]string{"steps still pending: " + strings.Join(waiting, ", ")}, reasons...)
		} else {
			reasons = append([]string{"every step has answered, yet it is neither confirmed nor cancelled"}, reasons...)
		}
		detail = fmt.Sprintf("order still pending, last changed %v ago: %s%s", o.age.Round(100*time.Millisecond), strings.Join(reasons, "; "), lost)
	case len(reasons) == 0 && (len(unmet) == 0 || o.age >= settle):
		return vs, "", false
	default:
		if len(unmet) > 0 {
			reasons = append(reasons, "not yet: "+strings.Join(unmet, "; "))
		}
		detail = fmt.Sprintf("%s, last changed %v ago, still settling: %s%s", o.status, o.age.Round(100*time.Millisecond), strings.Join(reasons, "; "), lost)
	}
	return kept, detail, true
}

// ledger is one order's rows in the gateway ledger (keyed by order id).
type ledger struct {
	authorize *chargeRow
	approved  map[string]bool        // follow-up operations approved on the authorized charge
	moved     map[string][]chargeRow // those operations' rows, by operation
	foreign   []chargeRow            // follow-ups naming a charge other than the authorization's
}

func ledgerOf(rows []chargeRow) ledger {
	l := ledger{approved: map[string]bool{}, moved: map[string][]chargeRow{}}
	for i, c := range rows {
		if c.operation == "authorize" {
			l.authorize = &rows[i]
		}
	}
	for _, c := range rows {
		if c.operation == "authorize" || c.outcome != "approved" {
			continue
		}
		if l.authorize != nil && c.chargeID != l.authorize.chargeID {
			l.foreign = append(l.foreign, c)
			continue
		}
		l.approved[c.operation] = true
		l.moved[c.operation] = append(l.moved[c.operation], c)
	}
	return l
}

// sums totals the amounts of rows by currency.
func sums(rows []chargeRow) map[string]int64 {
	m := map[string]int64{}
	for _, c := range rows {
		m[c.currency] += c.amount
	}
	return m
}

// money formats the total of rows as "15200 USD" (currencies joined
// with " + " should they differ; "nothing" for none).
func money(rows []chargeRow) string {
	m := sums(rows)
	if len(m) == 0 {
		return "nothing"
	}
	parts := make([]string, 0, len(m))
	for _, cur := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%d %s", m[cur], cur))
	}
	return strings.Join(parts, " + ")
}

// checkStock applies the conservation invariants.
func checkStock(s *snapshot, baseline map[string]int64) []Violation {
	var vs []Violation
	add := func(sku, format string, args ...any) {
		vs = append(vs, Violation{SKU: sku, Rule: RuleStock, Detail: fmt.Sprintf(format, args...)})
	}
	seen := map[string]bool{}
	for _, st := range s.stock {
		seen[st.sku] = true
		adj := s.adjusted[st.sku]
		if want := adj.total - s.sold[st.sku]; st.onHand != want {
			// Most likely a change made around PUT /v1/stock (a manual
			// UPDATE): say by how much, and where changes are recorded.
			diff, way := st.onHand-want, "more"
			if diff < 0 {
				diff, way = -diff, "fewer"
			}
			add(st.sku, "on hand %d, want %d (adjustments %d − committed %d): %d %s than the ledger accounts for; "+
				"stock changed other than by PUT /v1/stock/{sku} (or through an inventory replica older than the ledger) leaves no row in inventory.stock_adjustments",
				st.onHand, want, adj.total, s.sold[st.sku], diff, way)
		}
		if st.reserved != s.held[st.sku] {
			add(st.sku, "reserved %d, but reservations still held total %d", st.reserved, s.held[st.sku])
		}
		if st.reserved < 0 || st.available < 0 || st.onHand < 0 {
			add(st.sku, "negative stock: on hand %d, reserved %d, available %d", st.onHand, st.reserved, st.available)
		}
	}
	for _, sku := range slices.Sorted(maps.Keys(baseline)) {
		if !seen[sku] {
			add(sku, "seeded with %d but not in the inventory", baseline[sku])
		}
	}
	for _, sku := range slices.Sorted(maps.Keys(s.adjusted)) {
		if !seen[sku] {
			add(sku, "%d adjustments (total %d) recorded but not in the inventory", s.adjusted[sku].n, s.adjusted[sku].total)
		}
	}
	for _, sku := range slices.Sorted(maps.Keys(s.sold)) {
		if !seen[sku] {
			add(sku, "%d committed but not in the inventory", s.sold[sku])
		}
	}
	for _, sku := range slices.Sorted(maps.Keys(s.held)) {
		if !seen[sku] {
			add(sku, "%d reserved but not in the inventory", s.held[sku])
		}
	}
	return vs
}

func live(status string) bool { return status == "scheduled" || status == "ready" }

// lines formats sku → quantity as "SKU-0001×2, SKU-0002×1".
func lines(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(m))
	for _, sku := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s×%d", sku, m[sku]))
	}
	return strings.Join(parts, ", ")
}
