// Package store keeps shipments in the service's PostgreSQL schema. Every
// function takes the connection or transaction to run on, so the consumer
// applies an event's changes inside the inbox's transaction and the HTTP
// API reads through the pool.
package store

import (
	"context"
	"errors"
	"fmt"
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

func scan(row pgx.Row) (shipment.Shipment, error) {
	var s shipment.Shipment
	var status string
	a := &s.Address
	err := row.Scan(&s.OrderID, &s.ShipmentID, &s.Carrier, &s.TrackingNumber, &status, &a.Name, &a.Line1, &a.Line2,
		&a.City, &a.PostalCode, &a.Country, &s.PlacedAt, &s.PickupAt, &s.PickupZone, &s.CancelReason, &s.CreatedAt, &s.UpdatedAt)
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

// Lock returns the order's shipment, locking its row until the
// transaction ends so changes to one order (and their outbox events) are
// serialized; ErrNotFound if there is none.
func Lock(ctx context.Context, tx pgx.Tx, orderID string) (shipment.Shipment, error) {
	s, err := scan(tx.QueryRow(ctx, `SELECT `+columns+` FROM shipments WHERE order_id = $1 FOR UPDATE`, orderID))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return s, fmt.Errorf("lock shipment %s: %w", orderID, err)
	}
	return s, err
}

// Get returns the order's shipment with its history; ErrNotFound if none.
func Get(ctx context.Context, db DB, orderID string) (shipment.Shipment, error) {
	s, err := scan(db.QueryRow(ctx, `SELECT `+columns+` FROM shipments WHERE order_id = $1`, orderID))
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return s, err
		}
		return s, fmt.Errorf("get shipment %s: %w", orderID, err)
	}
	const q = `SELECT status, event_id, note, at FROM shipment_history WHERE order_id = $1 ORDER BY id`
	rows, err := db.Query(ctx, q, orderID)
	if err != nil {
		return s, fmt.Errorf("shipment history %s: %w", orderID, err)
	}
	s.History, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (shipment.Change, error) {
		var c shipment.Change
		var st string
		err := r.Scan(&st, &c.EventID, &c.Note, &c.At)
		c.Status = shipment.Status(st)
		return c, err
	})
	if err != nil {
		return s, fmt.Errorf("shipment history %s: %w", orderID, err)
	}
	return s, nil
}

// Booking is what OrderPlaced needs to know before booking a shipment.
type Booking struct {
	// Booked: the order already has a shipment.
	Booked bool
	// CancelledFirst: the order's cancellation arrived before it.
	CancelledFirst bool
	// TrackingNumber is freshly issued from the serial sequence (unused,
	// leaving a gap, when the order is not booked after all).
	TrackingNumber string
}

// PrepareBooking looks up the order and issues a tracking number in one
// round trip: the consumer's throughput is bounded by round trips.
func PrepareBooking(ctx context.Context, db DB, orderID string) (Booking, error) {
	const q = `SELECT EXISTS (SELECT 1 FROM shipments WHERE order_id = $1),
		EXISTS (SELECT 1 FROM unscheduled_cancellations WHERE order_id = $1),
		nextval('tracking_serial')`
	var b Booking
	var serial int64
	if err := db.QueryRow(ctx, q, orderID).Scan(&b.Booked, &b.CancelledFirst, &serial); err != nil {
		return b, fmt.Errorf("prepare booking of %s: %w", orderID, err)
	}
	var err error
	b.TrackingNumber, err = shipment.TrackingNumber(serial)
	return b, err
}

// ErrBooked means a shipment insert found the order booked: a concurrent
// delivery of its OrderPlaced committed one first.
var ErrBooked = errors.New("order already has a shipment")

// QueueInsert adds to b the statement that stores a new shipment and its
// first history entry, caused by event eventID; the caller sends it with
// the outbox insert of ShipmentScheduled in one round trip. When the order
// already has a shipment (a concurrent booking committed first; the
// insert waits for it), the statement changes nothing and sending b fails
// with ErrBooked, so the transaction, and the event with it, is rolled
// back; the retry finds the shipment.
func QueueInsert(b *pgx.Batch, s shipment.Shipment, eventID string) {
	const q = `WITH booked AS (
		INSERT INTO shipments (order_id, shipment_id, carrier, tracking_number, status, name, line1, line2,
			city, postal_code, country, placed_at, pickup_at, pickup_zone)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
		ON CONFLICT (order_id) DO NOTHING
		RETURNING order_id, status)
	INSERT INTO shipment_history (order_id, status, event_id, note)
	SELECT order_id, status, $15, 'pickup booked' FROM booked`
	a := s.Address
	queue(b, "insert shipment "+s.OrderID, ErrBooked, q, s.OrderID, s.ShipmentID, s.Carrier, s.TrackingNumber, string(s.Status),
		a.Name, a.Line1, a.Line2, a.City, a.PostalCode, a.Country, s.PlacedAt, s.PickupAt, s.PickupZone, eventID)
}

// QueueSetStatus adds to b the statement that moves the order's shipment
// to status and records why in its history; reason, when not empty, is
// stored as the cancellation reason. When the order has no shipment,
// sending b fails with ErrNotFound.
func QueueSetStatus(b *pgx.Batch, orderID string, status shipment.Status, eventID, note, reason string) {
	const q = `WITH changed AS (
		UPDATE shipments SET status = $2, cancel_reason = coalesce(nullif($3, ''), cancel_reason), updated_at = now()
		WHERE order_id = $1
		RETURNING order_id, status)
	INSERT INTO shipment_history (order_id, status, event_id, note)
	SELECT order_id, status, $4, $5 FROM changed`
	queue(b, fmt.Sprintf("set shipment %s %s", orderID, status), ErrNotFound, q, orderID, string(status), reason, eventID, note)
}

// queue adds q, a statement changing one row, to b. When b is sent, an
// error of q is wrapped with what, and none is returned as noRow.
func queue(b *pgx.Batch, what string, noRow error, q string, args ...any) {
	b.Queue(q, args...).Fn = func(br pgx.BatchResults) error {
		tag, err := br.Exec()
		if err == nil && tag.RowsAffected() == 0 {
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

// RecordCancellation records a cancellation of an order without a
// shipment. It reports false when one was already recorded.
func RecordCancellation(ctx context.Context, db DB, c Cancellation) (bool, error) {
	const q = `INSERT INTO unscheduled_cancellations (order_id, event_id, reason, cancelled_at)
		VALUES ($1, $2, $3, $4) ON CONFLICT (order_id) DO NOTHING`
	tag, err := db.Exec(ctx, q, c.OrderID, c.EventID, c.Reason, c.CancelledAt)
	if err != nil {
		return false, fmt.Errorf("record cancellation of %s: %w", c.OrderID, err)
	}
	return tag.RowsAffected() == 1, nil
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

// MarkPlacedIgnored notes that an OrderPlaced for a cancelled order was
// not scheduled; the first such time is kept.
func MarkPlacedIgnored(ctx context.Context, db DB, orderID string) error {
	const q = `UPDATE unscheduled_cancellations SET placed_ignored_at = coalesce(placed_ignored_at, now()) WHERE order_id = $1`
	if _, err := db.Exec(ctx, q, orderID); err != nil {
		return fmt.Errorf("mark placed-after-cancel %s: %w", orderID, err)
	}
	return nil
}
