package events

import (
	"errors"
	"strconv"
	"strings"
)

// The kinds of contract violation. Every error Decode, Encode and
// Payload.Validate return for bad input is a *DecodeError whose Kind is one of
// these, so errors.Is(err, ErrMissingField) and the like work on it.
var (
	// ErrUnknownType: ce_type names no type this package knows.
	ErrUnknownType = errors.New("unknown event type")
	// ErrMalformed: the payload is not one JSON object of the right shape
	// (bad syntax, trailing data, duplicate keys, a value of the wrong JSON
	// type, more than MaxPayloadBytes), or a header value cannot be parsed
	// (ce_time, ce_specversion other than "1.0", a content-type other than
	// JSON, invalid UTF-8).
	ErrMalformed = errors.New("malformed event")
	// ErrMissingField: a required header or payload field is absent, null or
	// empty (an empty string or list, a zero time).
	ErrMissingField = errors.New("missing field")
	// ErrInvalidField: a field is present but out of range: a quantity below
	// 1 or above MaxQuantity, more lines than MaxLines, a string longer than
	// its bound or holding U+0000, a currency that is not three capital
	// letters, a total that is not the sum of its lines, a ce_subject that
	// is not the payload's order_id.
	ErrInvalidField = errors.New("invalid field")
)

// DecodeError describes why an event is not a valid instance of its
// contract. Its Error names the field, for example
//
//	decode shop.order.placed.v1: missing field "items[0].sku"
type DecodeError struct {
	// Kind is ErrUnknownType, ErrMalformed, ErrMissingField or ErrInvalidField.
	Kind error
	// Type is the event type, when it is known.
	Type Type
	// Field is the header name ("ce_time") or the payload field's JSON path
	// ("items[0].quantity"); empty when the whole payload is at fault.
	Field string
	// Err is the underlying cause, if any.
	Err error

	op string // "decode" (the default), "encode" or "validate"
}

// Error names the operation, the event type, the kind and the field.
func (e *DecodeError) Error() string {
	var b strings.Builder
	op := e.op
	if op == "" {
		op = "decode"
	}
	b.WriteString(op)
	if e.Type != "" && e.Kind != ErrUnknownType {
		b.WriteString(" " + string(e.Type) + ": ")
	} else {
		b.WriteString(" event: ")
	}
	switch {
	case e.Kind == ErrUnknownType:
		b.WriteString(e.Kind.Error() + " " + strconv.Quote(string(e.Type)))
	case e.Kind == ErrMalformed && e.Field == "":
		b.WriteString("malformed payload")
	case e.Kind == ErrMalformed:
		b.WriteString("malformed field " + strconv.Quote(e.Field))
	case e.Kind != nil && e.Field != "":
		b.WriteString(e.Kind.Error() + " " + strconv.Quote(e.Field))
	case e.Kind != nil:
		b.WriteString(e.Kind.Error())
	default:
		b.WriteString("invalid event")
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

// Is reports whether target is e's Kind, so errors.Is(err, ErrMalformed) works.
func (e *DecodeError) Is(target error) bool { return e.Kind != nil && target == e.Kind }

// Unwrap returns the underlying cause.
func (e *DecodeError) Unwrap() error { return e.Err }

// withOp returns err relabelled with op when it is a *DecodeError, leaving
// the original untouched.
func withOp(err error, op string) error {
	var de *DecodeError
	if !errors.As(err, &de) {
		return err
	}
	c := *de
	c.op = op
	return &c
}

func missing(field string) *DecodeError {
	return &DecodeError{Kind: ErrMissingField, Field: field}
}

func malformed(field string, cause error) *DecodeError {
	return &DecodeError{Kind: ErrMalformed, Field: field, Err: cause}
}

func invalid(field string, cause error) *DecodeError {
	return &DecodeError{Kind: ErrInvalidField, Field: field, Err: cause}
}
