// Package store keeps shipments in the service's PostgreSQL schema. Every
// function takes the connection or transaction to run on, so the consumer
// applies an event's changes inside the inbox's transaction and the HTTP
// API reads through the pool.
package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shopflow/shopflow/services/shipping/internal/shipment"
)

// DB is what the store runs on: a pgx.Tx or a *pgxpool.Pool.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ErrNotFound means the order has no shipment here.
var ErrNotFound = errors.New("no shipment for the order")

const columns = `order_id, shipment_id::text, carrier, tracking_number, status, name, line1, line2, city,
	postal_code, country, placed_at, pickup_at, pickup_zone, coalesce(cancel_reason, ''), created_at, updated_at`

// scan reads a row of columns, followed by the extra columns into extra.
func scan(row pgx.Row, extra ...any) (shipment.Shipment, error) {
	var s shipment.Shipment
	var status string
	a := &s.Address
	err := row.Scan(append([]any{&s.OrderID, &s.ShipmentID, &s.Carrier, &s.TrackingNumber, &status, &a.Name, &a.Line1, &a.Line2,
		&a.City, &a.PostalCode, &a.Country, &s.PlacedAt, &s.PickupAt, &s.PickupZone, &s.CancelReason, &s.CreatedAt, &s.UpdatedAt}, extra...)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, ErrNotFound
	}
	if err != nil {
		return s, err
	}
	s.Status = shipment.Status(status)
	// Show the slot in the zone it was booked in.
	if loc, lerr := time.LoadLocation(s.PickupZone); lerr == nil {
		s.PickupAt = s.PickupAt.In(loc)
	}
	return s, nil
}

// Get returns the order's shipment with its history; ErrNotFound if none.
// One statement reads both, so they come from one snapshot: read one
// after the other, a change committed in between could show in the
// history and not in the status.
func Get(ctx context.Context, db DB, orderID string) (shipment.Shipment, error) {
	const q = `SELECT ` + columns + `, h.statuses, h.event_ids, h.notes, h.ats
FROM shipments LEFT JOIN LATERAL (
	SELECT array_agg(sh.status ORDER BY sh.id) AS statuses, array_agg(sh.event_id ORDER BY sh.id) AS event_ids,
		array_agg(sh.note ORDER BY sh.id) AS notes, array_agg(sh.at ORDER BY sh.id) AS ats
	FROM shipment_history sh WHERE sh.order_id = shipments.order_id) h ON true
WHERE shipments.order_id = $1`
	var statuses, eventIDs, notes []string
	var ats []time.Time
	s, err := scan(db.QueryRow(ctx, q, orderID), &statuses, &eventIDs, &notes, &ats)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return s, err
		}
		return s, fmt.Errorf("get shipment %s: %w", orderID, err)
	}
	s.History = make([]shipment.Change, len(statuses))
	for i := range s.History {
		s.History[i] = shipment.Change{Status: shipment.Status(statuses[i]), EventID: eventIDs[i], Note: notes[i], At: ats[i]}
	}
	return s, nil
}

// State is what the consumer knows of an order before applying events
// to it.
type State struct {
	// Booked: the order has a shipment, whose ShipmentID,
	// TrackingNumber and Status follow.
	Booked         bool
	ShipmentID     string
	TrackingNumber string
	Status         shipment.Status
	// CancelledFirst: a cancellation of the order was recorded while it
	// had no shipment.
	CancelledFirst bool
}

// LockOrders returns the state of each order in orderIDs and issues n
// fresh tracking numbers, in one round trip whatever the number of
// orders: the consumer's throughput is bounded by round trips. The
// orders' shipments are locked until the transaction ends, in order-id
// order, so that transactions locking overlapping sets wait for each
// other instead of deadlocking, and changes to one order (with their
// outbox events) are serialized. Tracking serials of numbers not used
// leave gaps.
func LockOrders(ctx context.Context, tx pgx.Tx, orderIDs []string, n int) (states map[string]*State, tracking []string, err error) {
	ids := slices.Clone(orderIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	states = make(map[string]*State, len(ids))
	for _, id := range ids {
		states[id] = &State{}
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT order_id, shipment_id::text, tracking_number, status FROM shipments
		WHERE order_id = ANY($1) ORDER BY order_id FOR UPDATE`, ids).Query(func(rows pgx.Rows) error {
		var id, sid, tn, status string
		_, err := pgx.ForEachRow(rows, []any{&id, &sid, &tn, &status}, func() error {
			if st := states[id]; st != nil {
				st.Booked, st.ShipmentID, st.TrackingNumber, st.Status = true, sid, tn, shipment.Status(status)
			}
			return nil
		})
		return err
	})
	b.Queue(`SELECT order_id FROM unscheduled_cancellations WHERE order_id = ANY($1)`, ids).Query(func(rows pgx.Rows) error {
		var id string
		_, err := pgx.ForEachRow(rows, []any{&id}, func() error {
			if st := states[id]; st != nil {
				st.CancelledFirst = true
			}
			return nil
		})
		return err
	})
	if n > 0 {
		tracking = make([]string, 0, n)
		b.Queue(`SELECT nextval('tracking_serial') FROM generate_series(1, $1::int)`, n).Query(func(rows pgx.Rows) error {
			var serial int64
			_, err := pgx.ForEachRow(rows, []any{&serial}, func() error {
				tn, err := shipment.TrackingNumber(serial)
				tracking = append(tracking, tn)
				return err
			})
			return err
		})
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, nil, fmt.Errorf("lock %d orders: %w", len(ids), err)
	}
	return states, tracking, nil
}

// ErrBooked means a shipment insert found the order booked: a concurrent
// delivery of its OrderPlaced committed one first.
var ErrBooked = errors.New("order already has a shipment")

// Insert is a new shipment and the event that booked it.
type Insert struct {
	Shipment shipment.Shipment
	EventID  string
}

// QueueInsert adds to b the statement that stores new shipments with
// their first history entries, in order-id order (see LockOrders); the
// caller sends it with the outbox insert of their ShipmentScheduled
// events in one round trip. When an order already has a shipment (a
// concurrent booking committed first, and the insert waited for it; or
// the order is twice in ins), sending b fails with ErrBooked, so the
// transaction, and the events with it, is rolled back; the retry finds
// the shipment.
func QueueInsert(b *pgx.Batch, ins ...Insert) {
	if len(ins) == 0 {
		return
	}
	ins = slices.Clone(ins)
	slices.SortFunc(ins, func(x, y Insert) int { return strings.Compare(x.Shipment.OrderID, y.Shipment.OrderID) })
	n := len(ins)
	var (
		orders, ids, carriers, tracking, statuses = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		names, line1s, line2s, cities, postal     = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		countries, zones, eventIDs                = make([]string, n), make([]string, n), make([]string, n)
		placed, pickup                            = make([]time.Time, n), make([]time.Time, n)
	)
	for i, in := range ins {
		s, a := in.Shipment, in.Shipment.Address
		orders[i], ids[i], carriers[i], tracking[i], statuses[i] = s.OrderID, s.ShipmentID, s.Carrier, s.TrackingNumber, string(s.Status)
		names[i], line1s[i], line2s[i], cities[i], postal[i] = a.Name, a.Line1, a.Line2, a.City, a.PostalCode
		countries[i], zones[i], eventIDs[i] = a.Country, s.PickupZone, in.EventID
		placed[i], pickup[i] = s.PlacedAt, s.PickupAt
	}
	// unnest yields the rows in array order, so they are inserted (and
	// their order ids' index entries claimed) in order-id order.
	const q = `WITH booked AS (
		INSERT INTO shipments (order_id, shipment_id, carrier, tracking_number, status, name, line1, line2,
			city, postal_code, country, placed_at, pickup_at, pickup_zone)
		SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
			$8::text[], $9::text[], $10::text[], $11::text[], $12::timestamptz[], $13::timestamptz[], $14::text[])
		ON CONFLICT (order_id) DO NOTHING
		RETURNING order_id, shipment_id, status)
	INSERT INTO shipment_history (order_id, status, event_id, note)
	SELECT booked.order_id, booked.status, e.event_id, 'pickup booked'
	FROM booked JOIN unnest($2::uuid[], $15::text[]) AS e(shipment_id, event_id) USING (shipment_id)`
	queue(b, fmt.Sprintf("insert %d shipments", n), int64(n), ErrBooked, q, orders, ids, carriers, tracking, statuses,
		names, line1s, line2s, cities, postal, countries, placed, pickup, zones, eventIDs)
}

// StatusChange is a move of an order's shipment to Status, with why it
// was made; Reason, when not empty, is stored as the cancellation reason.
type StatusChange struct {
	OrderID string
	Status  shipment.Status
	EventID string
	Note    string
	Reason  string
}

// QueueSetStatuses adds to b the statement that applies the changes, in
// the order given: each order's shipment ends in its last change's status
// (and the last reason given), and every change is recorded in its
// history, in order. When an order has no shipment, sending b fails with
// ErrNotFound. The shipments' rows should already be locked by the
// transaction (LockOrders), in order-id order.
func QueueSetStatuses(b *pgx.Batch, changes ...StatusChange) {
	if len(changes) == 0 {
		return
	}
	// One row per order for the UPDATE (a row cannot be updated twice by
	// one statement), one per change for the history.
	last := map[string]int{}
	var orders, statuses, reasons []string
	hOrders, hStatuses, hEvents, hNotes := make([]string, len(changes)), make([]string, len(changes)), make([]string, len(changes)), make([]string, len(changes))
	for k, c := range changes {
		hOrders[k], hStatuses[k], hEvents[k], hNotes[k] = c.OrderID, string(c.Status), c.EventID, c.Note
		i, seen := last[c.OrderID]
		if !seen {
			i = len(orders)
			last[c.OrderID] = i
			orders, statuses, reasons = append(orders, c.OrderID), append(statuses, ""), append(reasons, "")
		}
		statuses[i] = string(c.Status)
		if c.Reason != "" {
			reasons[i] = c.Reason
		}
	}
	const q = `WITH changed AS (
		UPDATE shipments s SET status = u.status, cancel_reason = coalesce(nullif(u.reason, ''), s.cancel_reason), updated_at = now()
		FROM unnest($1::text[], $2::text[], $3::text[]) AS u(order_id, status, reason)
		WHERE s.order_id = u.order_id
		RETURNING s.order_id)
	INSERT INTO shipment_history (order_id, status, event_id, note)
	SELECT h.order_id, h.status, h.event_id, h.note
	FROM unnest($4::text[], $5::text[], $6::text[], $7::text[]) WITH ORDINALITY AS h(order_id, status, event_id, note, n)
	WHERE h.order_id IN (SELECT order_id FROM changed)
	ORDER BY h.n`
	what := fmt.Sprintf("set %d shipments' status", len(orders))
	if len(changes) == 1 {
		what = fmt.Sprintf("set shipment %s %s", changes[0].OrderID, changes[0].Status)
	}
	queue(b, what, int64(len(changes)), ErrNotFound, q, orders, statuses, reasons, hOrders, hStatuses, hEvents, hNotes)
}

// queue adds q to b. When b is sent, an error of q is wrapped with what,
// and so is noRow when q changes fewer than want rows (want < 0: any
// number will do).
func queue(b *pgx.Batch, what string, want int64, noRow error, q string, args ...any) {
	b.Queue(q, args...).Fn = func(br pgx.BatchResults) error {
		tag, err := br.Exec()
		if err == nil && tag.RowsAffected() < want {
			err = noRow
		}
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
}

// Cancellation is an order cancellation that arrived before (or without)
// any shipment for the order.
type Cancellation struct {
	OrderID     string
	EventID     string
	Reason      string
	CancelledAt time.Time
	RecordedAt  time.Time
	// PlacedIgnoredAt is when a later OrderPlaced was not scheduled
	// because of it; zero if none came.
	PlacedIgnoredAt time.Time
}

// QueueRecordCancellations adds to b the statement that records
// cancellations of orders without a shipment, in order-id order; one
// already recorded for an order is kept.
func QueueRecordCancellations(b *pgx.Batch, cs ...Cancellation) {
	if len(cs) == 0 {
		return
	}
	cs = slices.Clone(cs)
	slices.SortFunc(cs, func(x, y Cancellation) int { return strings.Compare(x.OrderID, y.OrderID) })
	orders, eventIDs, reasons, at := make([]string, len(cs)), make([]string, len(cs)), make([]string, len(cs)), make([]time.Time, len(cs))
	for i, c := range cs {
		orders[i], eventIDs[i], reasons[i], at[i] = c.OrderID, c.EventID, c.Reason, c.CancelledAt
	}
	const q = `INSERT INTO unscheduled_cancellations (order_id, event_id, reason, cancelled_at)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) ON CONFLICT (order_id) DO NOTHING`
	queue(b, fmt.Sprintf("record %d cancellations", len(cs)), -1, nil, q, orders, eventIDs, reasons, at)
}

// GetCancellation returns the recorded cancellation of an order without
// a shipment; ErrNotFound if there is none.
func GetCancellation(ctx context.Context, db DB, orderID string) (Cancellation, error) {
	const q = `SELECT order_id, event_id, reason, cancelled_at, recorded_at, placed_ignored_at
		FROM unscheduled_cancellations WHERE order_id = $1`
	var c Cancellation
	var ignored *time.Time
	err := db.QueryRow(ctx, q, orderID).Scan(&c.OrderID, &c.EventID, &c.Reason, &c.CancelledAt, &c.RecordedAt, &ignored)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, ErrNotFound
	}
	if err != nil {
		return c, fmt.Errorf("get cancellation of %s: %w", orderID, err)
	}
	if ignored != nil {
		c.PlacedIgnoredAt = *ignored
	}
	return c, nil
}

// QueueMarkPlacedIgnored adds to b the statement that notes an
// OrderPlaced for each of the cancelled orders was not scheduled; the
// first such time is kept. The rows are locked in order-id order.
func QueueMarkPlacedIgnored(b *pgx.Batch, orderIDs ...string) {
	if len(orderIDs) == 0 {
		return
	}
	const q = `WITH locked AS (
		SELECT order_id FROM unscheduled_cancellations WHERE order_id = ANY($1) ORDER BY order_id FOR UPDATE)
	UPDATE unscheduled_cancellations u SET placed_ignored_at = coalesce(placed_ignored_at, now())
	FROM locked WHERE u.order_id = locked.order_id`
	queue(b, fmt.Sprintf("mark placed-after-cancel %d orders", len(orderIDs)), -1, nil, q, orderIDs)
}
