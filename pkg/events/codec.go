package events

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"reflect"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Header is one Kafka record header. It has kafka-go's kafka.Header layout,
// so callers convert with kafka.Header(h) and events.Header(h).
type Header struct {
	Key   string
	Value []byte
}

// Message is an encoded event, ready to be written to Kafka (or stored in an
// outbox): Topic is the event type's topic, Key the order id, Value the JSON
// payload, Headers the CloudEvents envelope.
type Message struct {
	Topic   string
	Key     []byte
	Value   []byte
	Headers []Header
}

// Event is a CloudEvents 1.0 event: the envelope attributes and the typed
// payload.
type Event struct {
	// ID is ce_id, a UUID (New makes a UUIDv7); consumers dedupe on it.
	ID string
	// Source is ce_source, a URI reference naming the producer, e.g. "/shopflow/order".
	Source string
	// Type is ce_type; it equals Payload.EventType().
	Type Type
	// Time is ce_time, when the event happened; Decode returns it in UTC.
	Time time.Time
	// Subject is ce_subject, the order id; it equals Payload.AggregateID().
	Subject string
	// TraceParent is the optional W3C traceparent header.
	TraceParent string
	// Payload is the event data, one of the payload structs.
	Payload Payload
}

// New returns an event of p from source with a fresh UUIDv7 id, the current
// UTC time, and the type and subject p names. A nil p gives an event that
// Encode rejects.
func New(source string, p Payload) Event {
	e := Event{ID: newID(), Source: source, Time: time.Now().UTC(), Payload: p}
	if !isNil(p) {
		e.Type, e.Subject = p.EventType(), p.AggregateID()
	}
	return e
}

// newID returns a UUIDv7 string. uuid.NewV7 fails only if crypto/rand does,
// which since Go 1.24 crashes the program instead of returning an error.
func newID() string { return uuid.Must(uuid.NewV7()).String() }

// IDFloor returns the smallest UUIDv7 of millisecond t. Ids are UUIDv7
// (ce_id, and the order ids the order service makes), which sort by the
// time they were made, as bytes and as canonical text: every id made at
// or after t sorts at or above IDFloor(t), every id made before it below.
// Queries use it to bound a scan by time through an id index.
func IDFloor(t time.Time) uuid.UUID {
	var u uuid.UUID
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(t.UnixMilli()))
	copy(u[:6], ms[2:])
	return u
}

// Encode validates e (envelope and payload) and encodes it for Kafka in
// binary content mode. Errors are *DecodeError values naming the field at
// fault, matching ErrUnknownType, ErrMissingField or ErrInvalidField.
func Encode(e Event) (Message, error) {
	if err := e.checkEnvelope(); err != nil {
		return Message{}, withOp(err, "encode")
	}
	if isNil(e.Payload) {
		return Message{}, &DecodeError{Kind: ErrMissingField, Type: e.Type, Field: "payload", op: "encode"}
	}
	if pt := e.Payload.EventType(); pt != e.Type {
		return Message{}, &DecodeError{Kind: ErrInvalidField, Type: e.Type, Field: HeaderType, op: "encode",
			Err: fmt.Errorf("the payload is a %s", pt)}
	}
	if err := e.checkPayload(); err != nil {
		return Message{}, withOp(err, "encode")
	}
	value, err := json.Marshal(e.Payload)
	if err != nil {
		return Message{}, fmt.Errorf("encode %s: %w", e.Type, err)
	}
	hs := make([]Header, 0, 8)
	add := func(k, v string) { hs = append(hs, Header{Key: k, Value: []byte(v)}) }
	add(HeaderSpecVersion, SpecVersion)
	add(HeaderID, e.ID)
	add(HeaderSource, e.Source)
	add(HeaderType, string(e.Type))
	add(HeaderTime, e.Time.UTC().Format(time.RFC3339Nano))
	add(HeaderSubject, e.Subject)
	add(HeaderContentType, ContentType)
	if e.TraceParent != "" {
		add(HeaderTraceParent, e.TraceParent)
	}
	return Message{Topic: e.Type.Topic(), Key: []byte(e.Subject), Value: value, Headers: hs}, nil
}

// checkEnvelope validates the envelope attributes, in header order.
func (e Event) checkEnvelope() *DecodeError {
	switch {
	case e.ID == "":
		return missing(HeaderID)
	case !isUUID(e.ID):
		return invalid(HeaderID, fmt.Errorf("%q is not a UUID", e.ID))
	case e.Source == "":
		return missing(HeaderSource)
	case e.Type == "":
		return missing(HeaderType)
	case specOf(e.Type) == nil:
		return &DecodeError{Kind: ErrUnknownType, Type: e.Type, Field: HeaderType}
	}
	err := func() *DecodeError {
		if _, err := url.Parse(e.Source); err != nil {
			return invalid(HeaderSource, errors.New("not a URI reference"))
		}
		if err := checkTime(e.Time, HeaderTime); err != nil {
			return err
		}
		if e.Subject == "" {
			return missing(HeaderSubject)
		}
		if e.TraceParent != "" && !validTraceParent(e.TraceParent) {
			return invalid(HeaderTraceParent, errors.New("not a W3C traceparent"))
		}
		return nil
	}()
	if err != nil {
		err.Type = e.Type
	}
	return err
}

// checkPayload validates the payload, of type e.Type, and its order id
// against ce_subject.
func (e Event) checkPayload() error {
	if err := e.Payload.Validate(); err != nil {
		return err
	}
	if id := e.Payload.AggregateID(); id != e.Subject {
		return &DecodeError{Kind: ErrInvalidField, Type: e.Type, Field: HeaderSubject,
			Err: fmt.Errorf("%q is not the payload's order_id %q", e.Subject, id)}
	}
	return nil
}

// Decode decodes a Kafka record in binary content mode into an Event. It is
// strict: the envelope headers must be present and well-formed, the type
// known, and the value at most MaxPayloadBytes and exactly one JSON object
// holding every required field with the right JSON type and within its
// bounds (see Payload and limits.go) and an order_id equal to ce_subject.
// It allows unknown payload fields and unknown headers. It ignores a
// traceparent that is not valid W3C trace context, as tracers must.
// Errors are *DecodeError values; test their kind with errors.Is.
func Decode(headers []Header, value []byte) (Event, error) {
	e, err := decode(headers, value)
	if err != nil {
		return Event{}, withOp(err, "decode")
	}
	return e, nil
}

// envelopeHeaders are the headers Decode reads; a record may carry others.
var envelopeHeaders = map[string]bool{
	HeaderSpecVersion: true, HeaderID: true, HeaderSource: true, HeaderType: true,
	HeaderTime: true, HeaderSubject: true, HeaderContentType: true, HeaderTraceParent: true,
}

func decode(headers []Header, value []byte) (Event, error) {
	hs := make(map[string]string, len(envelopeHeaders))
	for _, h := range headers {
		if !envelopeHeaders[h.Key] {
			continue
		}
		if _, dup := hs[h.Key]; dup {
			return Event{}, malformed(h.Key, errors.New("header appears more than once"))
		}
		if !utf8.Valid(h.Value) {
			return Event{}, malformed(h.Key, errors.New("header value is not UTF-8"))
		}
		hs[h.Key] = string(h.Value)
	}
	switch v := hs[HeaderSpecVersion]; {
	case v == "":
		return Event{}, missing(HeaderSpecVersion)
	case v != SpecVersion:
		return Event{}, malformed(HeaderSpecVersion, fmt.Errorf("%q is not %q", v, SpecVersion))
	}
	e := Event{
		ID:      hs[HeaderID],
		Source:  hs[HeaderSource],
		Type:    Type(hs[HeaderType]),
		Subject: hs[HeaderSubject],
	}
	if e.Type == "" {
		return Event{}, missing(HeaderType)
	}
	spec := specOf(e.Type)
	if spec == nil {
		return Event{}, &DecodeError{Kind: ErrUnknownType, Type: e.Type, Field: HeaderType}
	}
	fail := func(err *DecodeError) (Event, error) { err.Type = e.Type; return Event{}, err }
	if s, ok := hs[HeaderTime]; ok && s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return fail(malformed(HeaderTime, fmt.Errorf("%q is not an RFC 3339 time", s)))
		}
		e.Time = t.UTC()
	}
	if ct, ok := hs[HeaderContentType]; ok {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != ContentType {
			return fail(malformed(HeaderContentType, fmt.Errorf("%q is not %s", ct, ContentType)))
		}
	}
	if tp := hs[HeaderTraceParent]; validTraceParent(tp) {
		e.TraceParent = tp
	}
	// The envelope is checked first: it is what every consumer reads, and
	// what a dead-lettered record is looked up by.
	if err := e.checkEnvelope(); err != nil {
		return Event{}, err
	}
	// Before parsing: a record of many megabytes (a broker's
	// max.message.bytes can allow it) would cost many times its size.
	if len(value) > MaxPayloadBytes {
		return fail(malformed("", fmt.Errorf("%d bytes, more than the %d a payload may have", len(value), MaxPayloadBytes)))
	}
	p, err := decodePayload(spec, value)
	if err != nil {
		return fail(err)
	}
	e.Payload = p
	if err := e.checkPayload(); err != nil {
		return Event{}, err
	}
	return e, nil
}

// decodePayload decodes value into a new value of spec's payload type.
func decodePayload(spec *structSpec, value []byte) (Payload, *DecodeError) {
	tree, err := parseJSON(value)
	if err != nil {
		return nil, malformed("", err)
	}
	obj, ok := tree.(map[string]any)
	if !ok {
		return nil, malformed("", fmt.Errorf("want a JSON object, got %s", jsonType(tree)))
	}
	v := reflect.New(spec.typ).Elem()
	if err := spec.decode(v, obj, ""); err != nil {
		return nil, err
	}
	return v.Interface().(Payload), nil
}

// isUUID reports whether s is a UUID in its canonical 36-character form.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	_, err := uuid.Parse(s)
	return err == nil
}

var traceParentRE = regexp.MustCompile(`^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$`)

// validTraceParent reports whether s is a W3C traceparent of version 00.
func validTraceParent(s string) bool {
	return traceParentRE.MatchString(s) && s[:3] == "00-" &&
		s[3:35] != "00000000000000000000000000000000" && s[36:52] != "0000000000000000"
}

// isNil reports whether p is nil or a nil pointer, on which the value
// receiver methods would panic.
func isNil(p Payload) bool {
	if p == nil {
		return true
	}
	v := reflect.ValueOf(p)
	return v.Kind() == reflect.Pointer && v.IsNil()
}
