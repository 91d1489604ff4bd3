package stock

import "fmt"

// Status is where a reservation is in its life.
type Status string

// Reservation statuses. Every order the service hears of gets exactly one
// reservation row, so a redelivered or late event finds what was decided.
const (
	// StatusReserved: every line is held for the order (StockReserved).
	StatusReserved Status = "reserved"
	// StatusCommitted: the order was confirmed; the goods left the shelf.
	StatusCommitted Status = "committed"
	// StatusReleased: the order was cancelled; its lines were given back.
	StatusReleased Status = "released"
	// StatusRejected: some line could not be filled; nothing was held.
	StatusRejected Status = "rejected"
	// StatusCancelled: the order was cancelled before this service saw it
	// placed. The row keeps a late OrderPlaced from reserving stock that
	// nobody would ever release.
	StatusCancelled Status = "cancelled"
)

// Action is what an event does to a reservation.
type Action int

// Actions.
const (
	// Ignore: nothing to change and nothing to emit (a redelivery, or a
	// compensation for something never done here); the event is recorded.
	Ignore Action = iota
	// Release: give the reserved lines back and emit StockReleased.
	Release
	// Commit: take the reserved lines off the shelf.
	Commit
	// Tombstone: remember that the order was cancelled before it was seen.
	Tombstone
)

// OnCancel decides what OrderCancelled does to a reservation in status s;
// found is false when the service never heard of the order. It also
// reports whether the case is unexpected enough to warn about.
func OnCancel(s Status, found bool) (a Action, unexpected bool) {
	if !found {
		return Tombstone, false
	}
	switch s {
	case StatusReserved:
		return Release, false
	case StatusCommitted:
		// The order service refuses to cancel a confirmed order; if one
		// arrives anyway, the goods are gone and there is nothing to give
		// back. Record it and let an operator look.
		return Ignore, true
	default: // released, rejected, cancelled: nothing is held
		return Ignore, false
	}
}

// OnConfirm decides what OrderConfirmed does to a reservation in status s;
// found is false when the service never heard of the order. Confirming
// something that is not held is an error no retry fixes: the order service
// only confirms after StockReserved, so the saga is broken and the event
// belongs in the dead-letter topic for an operator.
func OnConfirm(s Status, found bool) (Action, error) {
	if !found {
		return Ignore, fmt.Errorf("%w: order confirmed but never reserved here", ErrConflict)
	}
	switch s {
	case StatusReserved:
		return Commit, nil
	case StatusCommitted:
		return Ignore, nil // a redelivery with a new event id
	default:
		return Ignore, fmt.Errorf("%w: order confirmed but its reservation is %s", ErrConflict, s)
	}
}
