package shipment

import (
	"fmt"
	"time"
)

// Cutoff is the local time of day after which an order misses the day's
// processing: orders placed at or after it count as received the next
// business day.
type Cutoff struct {
	Hour, Minute int
}

// ParseCutoff reads "HH:MM" (24-hour clock).
func ParseCutoff(s string) (Cutoff, error) {
	t, err := time.Parse("15:04", s)
	if err != nil || len(s) != len("15:04") {
		return Cutoff{}, fmt.Errorf("%q is not a time of day like 15:00", s)
	}
	return Cutoff{Hour: t.Hour(), Minute: t.Minute()}, nil
}

// String renders the cutoff as "HH:MM".
func (c Cutoff) String() string { return fmt.Sprintf("%02d:%02d", c.Hour, c.Minute) }

// Schedule is the warehouse's pickup calendar: its time zone and daily
// cutoff. Pickups happen on business days (Monday to Friday) from
// SlotStartHour for SlotLength. Public holidays are not modelled.
type Schedule struct {
	Location *time.Location
	Cutoff   Cutoff
}

// SlotStartHour is the local hour pickup slots start at.
const SlotStartHour = 9

// PickupAt returns the start of the pickup slot for an order placed at
// placedAt. The order's receipt day is the local day it was placed if that
// is a business day and the time is before the cutoff, otherwise the next
// business day (so an order placed after Friday's cutoff or over the
// weekend is received on Monday). The parcel is picked up on the business
// day after its receipt day, from 09:00 local time.
//
// It depends only on placedAt, never on the clock, so a redelivered or
// replayed OrderPlaced books the same slot.
func (s Schedule) PickupAt(placedAt time.Time) time.Time {
	loc := s.Location
	if loc == nil {
		loc = time.UTC
	}
	local := placedAt.In(loc)
	// Work on calendar dates at noon so DST changes never shift the day.
	day := time.Date(local.Year(), local.Month(), local.Day(), 12, 0, 0, 0, loc)
	cutoff := time.Date(local.Year(), local.Month(), local.Day(), s.Cutoff.Hour, s.Cutoff.Minute, 0, 0, loc)
	if !businessDay(day) || !local.Before(cutoff) {
		day = nextBusinessDay(day)
	}
	pickup := nextBusinessDay(day)
	return time.Date(pickup.Year(), pickup.Month(), pickup.Day(), SlotStartHour, 0, 0, 0, loc)
}

func businessDay(t time.Time) bool {
	wd := t.Weekday()
	return wd != time.Saturday && wd != time.Sunday
}

func nextBusinessDay(t time.Time) time.Time {
	t = t.AddDate(0, 0, 1)
	for !businessDay(t) {
		t = t.AddDate(0, 0, 1)
	}
	return t
}
