package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

var (
	placedAt = time.Date(2025, 11, 24, 9, 30, 0, 123456789, time.UTC)
	later    = placedAt.Add(3 * time.Minute)
)

// samples returns a valid payload of every type, in Types() order.
func samples() []Payload {
	const order = "0193a1b2-7c3d-7e4f-8a5b-6c7d8e9f0a1b"
	return []Payload{
		OrderPlaced{
			OrderID: order, CustomerID: "cust-42", Currency: "USD", TotalCents: 3499,
			Items: []Line{
				{SKU: "SKU-0001", Quantity: 2, UnitPriceCents: 1250},
				{SKU: "SKU-0002", Quantity: 1, UnitPriceCents: 999},
			},
			Payment: PaymentMethod{CardToken: "tok_visa"},
			ShippingAddress: Address{Name: "Ada Lovelace", Line1: "1 Main St", Line2: "Apt 2",
				City: "Springfield", PostalCode: "12345", Country: "US"},
			PlacedAt: placedAt,
		},
		OrderConfirmed{OrderID: order, ConfirmedAt: later},
		OrderCancelled{OrderID: order, Reason: "payment declined: insufficient funds", CancelledAt: later},
		PaymentAuthorized{OrderID: order, PaymentID: "pay-1", AmountCents: 3499, Currency: "USD", AuthorizationCode: "AUTH-7"},
		PaymentDeclined{OrderID: order, AmountCents: 1_000_001, Currency: "EUR", Reason: "amount over limit"},
		PaymentRefunded{OrderID: order, PaymentID: "pay-1", AmountCents: 3499, Currency: "USD", Kind: RefundKindVoid},
		StockReserved{OrderID: order, ReservationID: "res-1", Items: []StockLine{{SKU: "SKU-0001", Quantity: 2}}},
		StockRejected{OrderID: order, Short: []ShortLine{{SKU: "SKU-0002", Requested: 3, Available: 0}}},
		StockReleased{OrderID: order, ReservationID: "res-1", Items: []StockLine{{SKU: "SKU-0001", Quantity: 2}}},
		ShipmentScheduled{OrderID: order, ShipmentID: "shp-1", Carrier: "ACME", TrackingNumber: "1Z999", PickupAt: later},
		ShipmentCancelled{OrderID: order, ShipmentID: "shp-1", TrackingNumber: "1Z999"},
	}
}

const traceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func sampleEvent(t testing.TB, p Payload) (Event, Message) {
	t.Helper()
	e := New("/shopflow/test", p)
	m, err := Encode(e)
	if err != nil {
		t.Fatalf("encode %s: %v", e.Type, err)
	}
	return e, m
}

func TestTypes(t *testing.T) {
	types := Types()
	if len(types) != 11 {
		t.Fatalf("Types() has %d types, want 11", len(types))
	}
	want := []Type{TypeOrderPlaced, TypeOrderConfirmed, TypeOrderCancelled,
		TypePaymentAuthorized, TypePaymentDeclined, TypePaymentRefunded,
		TypeStockReserved, TypeStockRejected, TypeStockReleased,
		TypeShipmentScheduled, TypeShipmentCancelled}
	if !slices.Equal(types, want) {
		t.Errorf("Types() = %v, want %v", types, want)
	}
	types[0] = "changed"
	if Types()[0] != TypeOrderPlaced {
		t.Error("Types() shares its slice with the caller")
	}
	for i, p := range samples() {
		if p.EventType() != want[i] {
			t.Errorf("samples()[%d] is %s, want %s", i, p.EventType(), want[i])
		}
	}
	topics := map[Type]string{
		TypeOrderPlaced: TopicOrders, TypeOrderConfirmed: TopicOrders, TypeOrderCancelled: TopicOrders,
		TypePaymentAuthorized: TopicPayments, TypePaymentDeclined: TopicPayments, TypePaymentRefunded: TopicPayments,
		TypeStockReserved: TopicInventory, TypeStockRejected: TopicInventory, TypeStockReleased: TopicInventory,
		TypeShipmentScheduled: TopicShipments, TypeShipmentCancelled: TopicShipments,
		"shop.order.placed.v2": TopicOrders, "shop.refund.issued.v1": "", "shop": "", "order.placed.v1": "", "": "",
	}
	for typ, topic := range topics {
		if got := typ.Topic(); got != topic {
			t.Errorf("%q.Topic() = %q, want %q", typ, got, topic)
		}
	}
	// A result's source is its producer's, the service its topic is
	// named after: the order service checks results by it.
	sources := map[string]string{TopicOrders: SourceOrder, TopicPayments: SourcePayment,
		TopicInventory: SourceInventory, TopicShipments: SourceShipping, "": ""}
	for typ, topic := range topics {
		if got := typ.Source(); got != sources[topic] {
			t.Errorf("%q.Source() = %q, want %q", typ, got, sources[topic])
		}
	}
	if got := DLQTopic("payment"); got != "shop.dlq.payment" {
		t.Errorf("DLQTopic = %q", got)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, p := range samples() {
		t.Run(string(p.EventType()), func(t *testing.T) {
			e := New("/shopflow/test", p)
			e.TraceParent = traceParent
			m, err := Encode(e)
			if err != nil {
				t.Fatal(err)
			}
			if m.Topic != e.Type.Topic() || string(m.Key) != p.AggregateID() {
				t.Errorf("topic %q key %q", m.Topic, m.Key)
			}
			wantHeaders := []Header{
				{"ce_specversion", []byte("1.0")},
				{"ce_id", []byte(e.ID)},
				{"ce_source", []byte("/shopflow/test")},
				{"ce_type", []byte(e.Type)},
				{"ce_time", []byte(e.Time.Format(time.RFC3339Nano))},
				{"ce_subject", []byte(p.AggregateID())},
				{"content-type", []byte("application/json")},
				{"traceparent", []byte(traceParent)},
			}
			if !reflect.DeepEqual(m.Headers, wantHeaders) {
				t.Errorf("headers %q, want %q", m.Headers, wantHeaders)
			}
			var fields map[string]any
			if err := json.Unmarshal(m.Value, &fields); err != nil || fields["order_id"] != p.AggregateID() {
				t.Errorf("value %s: %v", m.Value, err)
			}
			got, err := Decode(m.Headers, m.Value)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, e) {
				t.Errorf("decoded %+v\nwant    %+v", got, e)
			}
		})
	}
}

func TestRoundTripNormalizes(t *testing.T) {
	zone := time.FixedZone("UTC+2", 2*3600)
	p := OrderConfirmed{OrderID: "o-1", ConfirmedAt: later.In(zone)}
	e := New("/shopflow/order", &p) // a pointer payload encodes like its value
	e.Time = e.Time.In(zone)
	m, err := Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(m.Headers, m.Value)
	if err != nil {
		t.Fatal(err)
	}
	gp := got.Payload.(OrderConfirmed)
	if got.Time.Location() != time.UTC || !got.Time.Equal(e.Time) || gp.ConfirmedAt.Location() != time.UTC || !gp.ConfirmedAt.Equal(later) {
		t.Errorf("times not UTC or not equal: %v %v", got.Time, gp.ConfirmedAt)
	}
}

func TestNew(t *testing.T) {
	p := samples()[0]
	before := time.Now()
	var prev string
	for range 100 {
		e := New("/shopflow/order", p)
		id, err := uuid.Parse(e.ID)
		if err != nil || id.Version() != 7 || id.Variant() != uuid.RFC4122 {
			t.Fatalf("id %q: version %d variant %v err %v", e.ID, id.Version(), id.Variant(), err)
		}
		if e.ID[14] != '7' {
			t.Fatalf("id %q: version nibble is not 7", e.ID)
		}
		if e.ID <= prev {
			t.Fatalf("ids not increasing: %s after %s", e.ID, prev)
		}
		prev = e.ID
		if e.Type != TypeOrderPlaced || e.Subject != p.AggregateID() || e.Source != "/shopflow/order" {
			t.Fatalf("envelope %+v", e)
		}
		if e.Time.Location() != time.UTC || e.Time.Before(before.Add(-time.Second)) || e.Time.After(time.Now()) {
			t.Fatalf("time %v", e.Time)
		}
	}
	if e := New("/x", nil); e.Type != "" || e.ID == "" {
		t.Errorf("New(nil) = %+v", e)
	}
}

func TestValidateSamples(t *testing.T) {
	for _, p := range samples() {
		if err := p.Validate(); err != nil {
			t.Errorf("%s: %v", p.EventType(), err)
		}
	}
}

// record is a mutable copy of an encoded event.
type record struct {
	headers []Header
	value   string
}

func (r *record) set(key, val string) {
	r.del(key)
	r.headers = append(r.headers, Header{Key: key, Value: []byte(val)})
}

func (r *record) del(key string) {
	r.headers = slices.DeleteFunc(r.headers, func(h Header) bool { return h.Key == key })
}

// replace swaps the JSON text old for new in the value, which must hold it.
func (r *record) replace(t *testing.T, old, new string) {
	t.Helper()
	if !strings.Contains(r.value, old) {
		t.Fatalf("value %s lacks %s", r.value, old)
	}
	r.value = strings.Replace(r.value, old, new, 1)
}

func TestDecodeErrors(t *testing.T) {
	sample := samples()
	tests := []struct {
		name   string
		typ    int // index into samples()
		mutate func(t *testing.T, r *record)
		kind   error
		field  string
	}{
		{"unknown type", 0, func(t *testing.T, r *record) { r.set("ce_type", "shop.order.placed.v9") }, ErrUnknownType, "ce_type"},
		{"malformed JSON", 0, func(t *testing.T, r *record) { r.value = r.value[:len(r.value)-1] }, ErrMalformed, ""},
		{"trailing garbage", 1, func(t *testing.T, r *record) { r.value += "garbage" }, ErrMalformed, ""},
		{"trailing object", 1, func(t *testing.T, r *record) { r.value += " {}" }, ErrMalformed, ""},
		{"empty value", 1, func(t *testing.T, r *record) { r.value = " " }, ErrMalformed, ""},
		{"array value", 1, func(t *testing.T, r *record) { r.value = "[]" }, ErrMalformed, ""},
		{"null value", 1, func(t *testing.T, r *record) { r.value = "null" }, ErrMalformed, ""},
		{"duplicate key", 1, func(t *testing.T, r *record) { r.replace(t, `{"order_id"`, `{"order_id":"x","order_id"`) }, ErrMalformed, ""},
		{"duplicate key once decoded", 1, func(t *testing.T, r *record) { // both keys become "\ufffd"
			r.replace(t, `{"order_id"`, "{\"\x8a\":1,\"\x97\":2,\"order_id\"")
		}, ErrMalformed, ""},
		{"deep unknown field", 1, func(t *testing.T, r *record) {
			r.replace(t, `{"order_id"`, `{"x":`+strings.Repeat("[", 40)+strings.Repeat("]", 40)+`,"order_id"`)
		}, ErrMalformed, ""},
		{"string for integer", 0, func(t *testing.T, r *record) { r.replace(t, `"quantity":2`, `"quantity":"2"`) }, ErrMalformed, "items[0].quantity"},
		{"fraction for integer", 0, func(t *testing.T, r *record) { r.replace(t, `"quantity":2`, `"quantity":2.5`) }, ErrMalformed, "items[0].quantity"},
		{"number for string", 3, func(t *testing.T, r *record) { r.replace(t, `"pay-1"`, `1`) }, ErrMalformed, "payment_id"},
		{"object for list", 6, func(t *testing.T, r *record) { r.replace(t, `[{"sku":"SKU-0001","quantity":2}]`, `{}`) }, ErrMalformed, "items"},
		{"null list item", 6, func(t *testing.T, r *record) { r.replace(t, `[{"sku"`, `[null,{"sku"`) }, ErrMalformed, "items[0]"},
		{"bad payload time", 1, func(t *testing.T, r *record) {
			r.replace(t, later.Format(time.RFC3339Nano), "yesterday")
		}, ErrMalformed, "confirmed_at"},
		{"missing ce_id", 1, func(t *testing.T, r *record) { r.del("ce_id") }, ErrMissingField, "ce_id"},
		{"missing ce_type", 1, func(t *testing.T, r *record) { r.del("ce_type") }, ErrMissingField, "ce_type"},
		{"missing ce_time", 1, func(t *testing.T, r *record) { r.del("ce_time") }, ErrMissingField, "ce_time"},
		{"missing ce_subject", 1, func(t *testing.T, r *record) { r.del("ce_subject") }, ErrMissingField, "ce_subject"},
		{"empty ce_subject", 1, func(t *testing.T, r *record) { r.set("ce_subject", "") }, ErrMissingField, "ce_subject"},
		{"missing ce_source", 1, func(t *testing.T, r *record) { r.del("ce_source") }, ErrMissingField, "ce_source"},
		{"missing ce_specversion", 1, func(t *testing.T, r *record) { r.del("ce_specversion") }, ErrMissingField, "ce_specversion"},
		{"bad specversion", 1, func(t *testing.T, r *record) { r.set("ce_specversion", "0.3") }, ErrMalformed, "ce_specversion"},
		{"bad ce_time", 1, func(t *testing.T, r *record) { r.set("ce_time", "24/11/2025") }, ErrMalformed, "ce_time"},
		{"ce_id not a UUID", 1, func(t *testing.T, r *record) { r.set("ce_id", "evt-1") }, ErrInvalidField, "ce_id"},
		{"content-type not JSON", 1, func(t *testing.T, r *record) { r.set("content-type", "text/plain") }, ErrMalformed, "content-type"},
		{"duplicate header", 1, func(t *testing.T, r *record) {
			r.headers = append(r.headers, Header{"ce_id", []byte(uuid.NewString())})
		}, ErrMalformed, "ce_id"},
		{"header not UTF-8", 1, func(t *testing.T, r *record) { r.set("ce_subject", "\xff") }, ErrMalformed, "ce_subject"},
		{"missing payload field", 0, func(t *testing.T, r *record) { r.replace(t, `"sku":"SKU-0001",`, ``) }, ErrMissingField, "items[0].sku"},
		{"empty payload field", 0, func(t *testing.T, r *record) { r.replace(t, `"city":"Springfield"`, `"city":""`) }, ErrMissingField, "shipping_address.city"},
		{"null payload field", 3, func(t *testing.T, r *record) { r.replace(t, `"amount_cents":3499`, `"amount_cents":null`) }, ErrMissingField, "amount_cents"},
		{"absent zero-valid field", 7, func(t *testing.T, r *record) { r.replace(t, `,"available":0`, ``) }, ErrMissingField, "short[0].available"},
		{"empty list", 7, func(t *testing.T, r *record) { r.replace(t, `[{"sku":"SKU-0002","requested":3,"available":0}]`, `[]`) }, ErrMissingField, "short"},
		{"missing object", 0, func(t *testing.T, r *record) { r.replace(t, `"payment":{"card_token":"tok_visa"},`, ``) }, ErrMissingField, "payment"},
		{"invalid quantity", 0, func(t *testing.T, r *record) { r.replace(t, `"quantity":2`, `"quantity":0`) }, ErrInvalidField, "items[0].quantity"},
		{"negative amount", 4, func(t *testing.T, r *record) { r.replace(t, `"amount_cents":1000001`, `"amount_cents":-1`) }, ErrInvalidField, "amount_cents"},
		{"integer out of range", 0, func(t *testing.T, r *record) {
			r.replace(t, `"quantity":2`, `"quantity":123456789012345678901234567890`)
		}, ErrInvalidField, "items[0].quantity"},
		{"lowercase currency", 3, func(t *testing.T, r *record) { r.replace(t, `"USD"`, `"usd"`) }, ErrInvalidField, "currency"},
		{"country not alpha-2", 0, func(t *testing.T, r *record) { r.replace(t, `"US"`, `"USA"`) }, ErrInvalidField, "shipping_address.country"},
		{"refund kind", 5, func(t *testing.T, r *record) { r.replace(t, `"void"`, `"partial"`) }, ErrInvalidField, "kind"},
		{"total not the sum", 0, func(t *testing.T, r *record) { r.replace(t, `"total_cents":3499`, `"total_cents":3500`) }, ErrInvalidField, "total_cents"},
		{"line total overflows", 0, func(t *testing.T, r *record) {
			r.replace(t, `"unit_price_cents":1250`, `"unit_price_cents":9223372036854775807`)
		}, ErrInvalidField, "items[0].unit_price_cents"},
		{"zero payload time", 1, func(t *testing.T, r *record) {
			r.replace(t, later.Format(time.RFC3339Nano), "0001-01-01T00:00:00Z")
		}, ErrInvalidField, "confirmed_at"},
		{"payload time past 9999 in UTC", 1, func(t *testing.T, r *record) {
			r.replace(t, later.Format(time.RFC3339Nano), "9999-12-31T23:00:00-02:00")
		}, ErrInvalidField, "confirmed_at"},
		{"subject mismatch", 2, func(t *testing.T, r *record) { r.set("ce_subject", "another-order") }, ErrInvalidField, "ce_subject"},
	}
	kinds := []error{ErrUnknownType, ErrMalformed, ErrMissingField, ErrInvalidField}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, m := sampleEvent(t, sample[tt.typ])
			r := &record{headers: slices.Clone(m.Headers), value: string(m.Value)}
			tt.mutate(t, r)
			ev, err := Decode(r.headers, []byte(r.value))
			if err == nil {
				t.Fatalf("decoded %+v, want an error", ev)
			}
			for _, k := range kinds {
				if errors.Is(err, k) != (k == tt.kind) {
					t.Errorf("errors.Is(%v, %v) = %v", err, k, !(k == tt.kind))
				}
			}
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("%T is not a *DecodeError", err)
			}
			if de.Field != tt.field {
				t.Errorf("field %q, want %q (%v)", de.Field, tt.field, err)
			}
			if tt.field != "" && tt.kind != ErrUnknownType && !strings.Contains(err.Error(), `"`+tt.field+`"`) {
				t.Errorf("message %q does not name %q", err, tt.field)
			}
			if !strings.HasPrefix(err.Error(), "decode ") {
				t.Errorf("message %q", err)
			}
			if !reflect.DeepEqual(ev, Event{}) {
				t.Errorf("event %+v returned with an error", ev)
			}
		})
	}
}

func TestDecodeErrorMessage(t *testing.T) {
	_, m := sampleEvent(t, samples()[0])
	r := &record{headers: m.Headers, value: string(m.Value)}
	r.replace(t, `"sku":"SKU-0001",`, ``)
	_, err := Decode(r.headers, []byte(r.value))
	if want := `decode shop.order.placed.v1: missing field "items[0].sku"`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	r = &record{headers: slices.Clone(m.Headers), value: string(m.Value)}
	r.set("ce_type", "shop.order.teleported.v1")
	_, err = Decode(r.headers, []byte(r.value))
	if want := `decode event: unknown event type "shop.order.teleported.v1"`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

// TestDecodeAccepts covers what strict decoding still allows.
func TestDecodeAccepts(t *testing.T) {
	tests := []struct {
		name   string
		typ    int
		mutate func(t *testing.T, r *record)
		check  func(t *testing.T, e Event)
	}{
		{"unknown payload fields", 0, func(t *testing.T, r *record) {
			r.replace(t, `{"order_id"`, `{"gift":{"wrap":[true,null,1.5]},"order_id"`)
			r.replace(t, `"sku":"SKU-0001"`, `"sku":"SKU-0001","discount":null`)
		}, nil},
		{"unknown headers", 1, func(t *testing.T, r *record) {
			r.set("ce_partitionkey", "x")
			r.set("dlq_error", "\xff")
			r.set("other", "")
		}, nil},
		{"no content-type", 1, func(t *testing.T, r *record) { r.del("content-type") }, nil},
		{"content-type with charset", 1, func(t *testing.T, r *record) { r.set("content-type", "application/json; charset=utf-8") }, nil},
		{"optional field null", 0, func(t *testing.T, r *record) { r.replace(t, `"line2":"Apt 2"`, `"line2":null`) }, func(t *testing.T, e Event) {
			if l2 := e.Payload.(OrderPlaced).ShippingAddress.Line2; l2 != "" {
				t.Errorf("line2 %q", l2)
			}
		}},
		{"optional field absent", 0, func(t *testing.T, r *record) { r.replace(t, `"line2":"Apt 2",`, ``) }, nil},
		{"invalid traceparent ignored", 1, func(t *testing.T, r *record) { r.set("traceparent", "not-a-trace") }, func(t *testing.T, e Event) {
			if e.TraceParent != "" {
				t.Errorf("traceparent %q", e.TraceParent)
			}
		}},
		{"time with offset", 1, func(t *testing.T, r *record) {
			r.set("ce_time", "2025-11-24T11:30:00+02:00")
			r.replace(t, later.Format(time.RFC3339Nano), "2025-11-24T11:33:00.123456789+02:00")
		}, func(t *testing.T, e Event) {
			if !e.Time.Equal(placedAt.Truncate(time.Second)) || e.Time.Location() != time.UTC {
				t.Errorf("ce_time %v", e.Time)
			}
			if c := e.Payload.(OrderConfirmed).ConfirmedAt; !c.Equal(later) || c.Location() != time.UTC {
				t.Errorf("confirmed_at %v", c)
			}
		}},
		{"whitespace around the object", 1, func(t *testing.T, r *record) { r.value = "\n " + r.value + " \n" }, nil},
		{"available zero", 7, func(t *testing.T, r *record) {}, func(t *testing.T, e Event) {
			if a := e.Payload.(StockRejected).Short[0].Available; a != 0 {
				t.Errorf("available %d", a)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, m := sampleEvent(t, samples()[tt.typ])
			r := &record{headers: slices.Clone(m.Headers), value: string(m.Value)}
			tt.mutate(t, r)
			e, err := Decode(r.headers, []byte(r.value))
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, e)
			}
		})
	}
}

func TestEncodeRejects(t *testing.T) {
	valid := func() Event { return New("/shopflow/test", samples()[0]) }
	with := func(f func(p *OrderPlaced)) Event {
		e := valid()
		p := e.Payload.(OrderPlaced)
		p.Items = slices.Clone(p.Items)
		f(&p)
		e.Payload = p
		return e
	}
	var nilPayload *OrderConfirmed
	tests := []struct {
		name  string
		event Event
		kind  error
		field string
	}{
		{"missing id", func() Event { e := valid(); e.ID = ""; return e }(), ErrMissingField, "ce_id"},
		{"id not a UUID", func() Event { e := valid(); e.ID = "1"; return e }(), ErrInvalidField, "ce_id"},
		{"missing source", func() Event { e := valid(); e.Source = ""; return e }(), ErrMissingField, "ce_source"},
		{"missing type", func() Event { e := valid(); e.Type = ""; return e }(), ErrMissingField, "ce_type"},
		{"unknown type", func() Event { e := valid(); e.Type = "shop.order.lost.v1"; return e }(), ErrUnknownType, "ce_type"},
		{"type not the payload's", func() Event { e := valid(); e.Type = TypeOrderConfirmed; return e }(), ErrInvalidField, "ce_type"},
		{"zero time", func() Event { e := valid(); e.Time = time.Time{}; return e }(), ErrMissingField, "ce_time"},
		{"time past 9999", func() Event { e := valid(); e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC); return e }(), ErrInvalidField, "ce_time"},
		{"missing subject", func() Event { e := valid(); e.Subject = ""; return e }(), ErrMissingField, "ce_subject"},
		{"subject not the order", func() Event { e := valid(); e.Subject = "o-2"; return e }(), ErrInvalidField, "ce_subject"},
		{"bad traceparent", func() Event { e := valid(); e.TraceParent = "00-xyz"; return e }(), ErrInvalidField, "traceparent"},
		{"nil payload", func() Event { e := valid(); e.Payload = nil; return e }(), ErrMissingField, "payload"},
		{"nil pointer payload", func() Event { e := New("/x", samples()[1]); e.Payload = nilPayload; return e }(), ErrMissingField, "payload"},
		{"missing customer", with(func(p *OrderPlaced) { p.CustomerID = "" }), ErrMissingField, "customer_id"},
		{"no items", with(func(p *OrderPlaced) { p.Items = nil }), ErrMissingField, "items"},
		{"zero quantity", with(func(p *OrderPlaced) { p.Items[1].Quantity = 0 }), ErrInvalidField, "items[1].quantity"},
		{"negative price", with(func(p *OrderPlaced) { p.Items[0].UnitPriceCents = -1 }), ErrInvalidField, "items[0].unit_price_cents"},
		{"zero total", with(func(p *OrderPlaced) { p.TotalCents = 0 }), ErrInvalidField, "total_cents"},
		{"wrong total", with(func(p *OrderPlaced) { p.TotalCents++ }), ErrInvalidField, "total_cents"},
		{"currency", with(func(p *OrderPlaced) { p.Currency = "US$" }), ErrInvalidField, "currency"},
		{"missing card", with(func(p *OrderPlaced) { p.Payment.CardToken = "" }), ErrMissingField, "payment.card_token"},
		{"zero placed_at", with(func(p *OrderPlaced) { p.PlacedAt = time.Time{} }), ErrMissingField, "placed_at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Encode(tt.event)
			if err == nil {
				t.Fatalf("encoded %+v", m)
			}
			var de *DecodeError
			if !errors.Is(err, tt.kind) || !errors.As(err, &de) || de.Field != tt.field {
				t.Errorf("got %v, want kind %v field %q", err, tt.kind, tt.field)
			}
			if !strings.HasPrefix(err.Error(), "encode ") {
				t.Errorf("message %q", err)
			}
			if !reflect.DeepEqual(m, Message{}) {
				t.Errorf("message %+v returned with an error", m)
			}
		})
	}
}

func TestValidateMessage(t *testing.T) {
	err := StockRejected{OrderID: "o", Short: []ShortLine{{SKU: "a", Requested: 1, Available: -1}}}.Validate()
	want := `validate shop.stock.rejected.v1: invalid field "short[0].available": -1 is less than 0`
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}

func BenchmarkEncode(b *testing.B) {
	e := New("/shopflow/order", samples()[0])
	for b.Loop() {
		if _, err := Encode(e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	_, m := sampleEvent(b, samples()[0])
	for b.Loop() {
		if _, err := Decode(m.Headers, m.Value); err != nil {
			b.Fatal(err)
		}
	}
}

// TestIDFloor: an id made now sorts at or above the floor of a moment
// before it and below the floor of a moment after it, as text and as
// bytes.
func TestIDFloor(t *testing.T) {
	before := time.Now().Add(-time.Millisecond)
	id := New("/shopflow/test", OrderConfirmed{OrderID: "o", ConfirmedAt: time.Now()}).ID
	after := time.Now().Add(time.Millisecond)
	u := uuid.MustParse(id)
	lo, hi := IDFloor(before), IDFloor(after)
	if !(lo.String() <= id && id < hi.String()) {
		t.Errorf("as text: %s, %s, %s not in order", lo, id, hi)
	}
	if !(bytes.Compare(lo[:], u[:]) <= 0 && bytes.Compare(u[:], hi[:]) < 0) {
		t.Errorf("as bytes: %s, %s, %s not in order", lo, id, hi)
	}
	if got := IDFloor(time.UnixMilli(0x0123456789ab)).String(); got != "01234567-89ab-0000-0000-000000000000" {
		t.Errorf("IDFloor(0x0123456789ab ms) = %s", got)
	}
}

// Only the canonical lowercase form is an order id: the other forms
// uuid.Parse takes name the same order differently, or not at all for
// PostgreSQL.
func TestCheckOrderID(t *testing.T) {
	id := "01a247dd-0372-7c3e-9b1a-0123456789ab"
	if err := CheckOrderID(id); err != nil {
		t.Errorf("CheckOrderID(%q) = %v", id, err)
	}
	for _, bad := range []string{strings.ToUpper(id), "urn:uuid:" + id, "{" + id + "}", strings.ReplaceAll(id, "-", ""), "order-1", ""} {
		want := fmt.Sprintf("order id %q is not a lowercase UUID", bad)
		if err := CheckOrderID(bad); err == nil || err.Error() != want {
			t.Errorf("CheckOrderID(%q) = %v, want %q", bad, err, want)
		}
	}
}
