package shipment

import (
	"errors"
	"fmt"
)

// TrackingPrefix starts every tracking number this carrier issues.
const TrackingPrefix = "SF"

// serialDigits is the length of the serial part of a tracking number.
const serialDigits = 10

// MaxSerial is the largest serial a tracking number can carry.
const MaxSerial = 9_999_999_999

// TrackingNumber returns the carrier-style tracking number of serial:
// "SF", the serial as 10 zero-padded digits, then one Luhn (mod 10) check
// digit, e.g. serial 1 → "SF00000000018". The Luhn digit catches every
// single mistyped digit and almost every swap of two neighbours, which is
// what a check digit on a hand-typed number is for.
//
// Serials come from a database sequence, so numbers are unique without a
// collision check, and stay stable for a shipment once issued.
func TrackingNumber(serial int64) (string, error) {
	if serial < 1 || serial > MaxSerial {
		return "", fmt.Errorf("tracking serial %d out of range 1..%d", serial, int64(MaxSerial))
	}
	digits := fmt.Sprintf("%0*d", serialDigits, serial)
	return TrackingPrefix + digits + string(rune('0'+luhn(digits))), nil
}

// ErrBadTrackingNumber reports a string that is not a valid tracking number.
var ErrBadTrackingNumber = errors.New("not a valid tracking number")

// ValidTrackingNumber checks the shape and the check digit of s.
func ValidTrackingNumber(s string) error {
	if len(s) != len(TrackingPrefix)+serialDigits+1 || s[:len(TrackingPrefix)] != TrackingPrefix {
		return fmt.Errorf("%q: %w: want %s followed by %d digits", s, ErrBadTrackingNumber, TrackingPrefix, serialDigits+1)
	}
	body := s[len(TrackingPrefix):]
	for _, c := range body {
		if c < '0' || c > '9' {
			return fmt.Errorf("%q: %w: want digits after %s", s, ErrBadTrackingNumber, TrackingPrefix)
		}
	}
	digits, check := body[:serialDigits], int(body[serialDigits]-'0')
	if luhn(digits) != check {
		return fmt.Errorf("%q: %w: check digit %d, want %d", s, ErrBadTrackingNumber, check, luhn(digits))
	}
	return nil
}

// luhn returns the Luhn check digit for a string of decimal digits: from
// the rightmost digit leftwards, double every other digit starting with
// the rightmost, subtract 9 from doubles above 9, sum everything, and the
// check digit is what brings the sum to a multiple of 10.
func luhn(digits string) int {
	sum := 0
	double := true
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return (10 - sum%10) % 10
}
