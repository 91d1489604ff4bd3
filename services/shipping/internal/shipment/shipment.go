// Package shipment holds the shipping service's domain rules in plain Go:
// the shipment's statuses, the carrier's tracking numbers and their check
// digit, the pickup-slot rule (business days and a daily cutoff in the
// warehouse's time zone) and the addresses the carrier accepts. Nothing
// here knows about Kafka, HTTP or SQL, so every rule is unit-tested alone.
package shipment

import "time"

// Status is where a shipment is in its life.
type Status string

// The statuses a shipment moves through: scheduled when OrderPlaced booked
// a pickup, ready once the order is confirmed (the parcel may be handed to
// the carrier), cancelled when the order was cancelled. Cancelled is final.
const (
	StatusScheduled Status = "scheduled"
	StatusReady     Status = "ready"
	StatusCancelled Status = "cancelled"
)

// Carrier names the (simulated) carrier every shipment goes with; it is
// the ShipmentScheduled.Carrier value and printed on the label.
const Carrier = "Shopflow Express"

// SlotLength is how long a pickup slot lasts from its start.
const SlotLength = 3 * time.Hour

// Address is a ship-to address as the carrier needs it.
type Address struct {
	Name       string
	Line1      string
	Line2      string
	City       string
	PostalCode string
	Country    string
}

// Shipment is one order's shipment as the service keeps it.
type Shipment struct {
	OrderID        string
	ShipmentID     string
	Carrier        string
	TrackingNumber string
	Status         Status
	Address        Address
	PlacedAt       time.Time
	// PickupAt is the start of the booked slot, in PickupZone.
	PickupAt   time.Time
	PickupZone string
	// CancelReason is the order's cancellation reason once cancelled.
	CancelReason string
	CreatedAt    time.Time
	UpdatedAt    time.Time
	// History lists the status changes, oldest first.
	History []Change
}

// Change is one entry of a shipment's history.
type Change struct {
	Status Status
	// EventID is the ce_id of the event that caused the change.
	EventID string
	Note    string
	At      time.Time
}

// Cancel returns the status a shipment in status s moves to when its
// order is cancelled, and whether that is a change. Cancelling twice is
// not: the second cancellation has nothing to undo.
func Cancel(s Status) (Status, bool) {
	if s == StatusCancelled {
		return s, false
	}
	return StatusCancelled, true
}

// Confirm returns the status a shipment in status s moves to when its
// order is confirmed, and whether that is a change: a scheduled shipment
// becomes ready for pickup; a ready one stays; a cancelled one stays
// cancelled (a confirmation cannot revive it).
func Confirm(s Status) (Status, bool) {
	if s == StatusScheduled {
		return StatusReady, true
	}
	return s, false
}
