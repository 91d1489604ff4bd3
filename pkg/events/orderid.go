package events

import (
	"fmt"

	"github.com/google/uuid"
)

// CheckOrderID returns an error unless id is an order id as the order
// service makes them: a UUID in its canonical text form, lowercase, 36
// characters. The contract types order ids as strings, and uuid.Parse
// also takes upper case, braces and "urn:uuid:", which the services'
// PostgreSQL reads as the same order (upper case, braces) or refuses
// (SQLSTATE 22P02, retried as if the database were failing) while their
// code compares ids as text. Consumers dead-letter an event whose order
// id fails this, at once, with this reason: no retry changes the id.
func CheckOrderID(id string) error {
	if u, err := uuid.Parse(id); err != nil || u.String() != id {
		return fmt.Errorf("order id %q is not a lowercase UUID", id)
	}
	return nil
}

// CheckOrderID is CheckOrderID of the order e is about (its subject,
// which Decode holds equal to the payload's order_id), naming e's type.
func (e Event) CheckOrderID() error {
	if err := CheckOrderID(e.Subject); err != nil {
		return fmt.Errorf("%s: %w", e.Type, err)
	}
	return nil
}
