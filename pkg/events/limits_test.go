package events

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// largest fills v, a value of s.typ, with the most the contract allows:
// every list at its bound, every bounded string at its bound in '<',
// which encoding/json writes as \u003c (6 bytes, the most it spends on
// a character; any encoder spends at most 12, \uXXXX\uXXXX), integers at
// their bound or their least. It calls visit with each bounded field's
// path and value.
func largest(s *structSpec, v reflect.Value, prefix string, visit func(path string, f *field, v reflect.Value)) {
	for i := range s.fields {
		f := &s.fields[i]
		fv := v.Field(f.index)
		path := joinPath(prefix, f.name)
		switch f.kind {
		case kindString:
			switch {
			case f.format == "currency":
				fv.SetString("USD")
			case f.format == "country":
				fv.SetString("US")
			case f.enum != nil:
				fv.SetString(f.enum[0])
			default:
				fv.SetString(strings.Repeat("<", f.maxLen))
			}
		case kindInt:
			if f.hasMax {
				fv.SetInt(f.max)
			} else {
				fv.SetInt(f.min)
			}
		case kindTime:
			fv.Set(reflect.ValueOf(placedAt))
		case kindObject:
			largest(f.elem, fv, path, visit)
		case kindList:
			list := reflect.MakeSlice(fv.Type(), f.maxItems, f.maxItems)
			for j := range f.maxItems {
				largest(f.elem, list.Index(j), fmt.Sprintf("%s[%d]", path, j), visit)
			}
			fv.Set(list)
		}
		if f.maxLen > 0 || f.maxItems > 0 || f.hasMax {
			visit(path, f, fv)
		}
	}
}

// largestPayload is the largest payload of type t (see largest), an
// OrderPlaced priced so that its total is the sum of its lines, and the
// bounded fields it visited.
func largestPayload(t Type, visit func(path string, f *field, v reflect.Value)) Payload {
	spec := specOf(t)
	v := reflect.New(spec.typ).Elem()
	largest(spec, v, "", visit)
	p := v.Interface().(Payload)
	if op, ok := p.(OrderPlaced); ok {
		op.TotalCents = 0
		for i := range op.Items {
			op.Items[i].UnitPriceCents = 1_000_000_00 // the API's highest price
			op.TotalCents += int64(op.Items[i].Quantity) * op.Items[i].UnitPriceCents
		}
		p = op
	}
	return p
}

// TestTheLargestEventsFit: the largest event of every type the bounds
// allow encodes, decodes back, and stays within MaxPayloadBytes by a
// factor of two, so that however another producer escapes its strings
// (at most twice what encoding/json spends on a character) a valid event
// is never refused for its size; and each bound, passed by one, is
// refused naming the field and the bound.
func TestTheLargestEventsFit(t *testing.T) {
	for _, typ := range Types() {
		t.Run(string(typ), func(t *testing.T) {
			p := largestPayload(typ, func(string, *field, reflect.Value) {})
			e := New("/shopflow/test", p)
			e.Subject = p.AggregateID()
			m, err := Encode(e)
			if err != nil {
				t.Fatalf("the largest %s does not encode: %v", typ, err)
			}
			if 2*len(m.Value) > MaxPayloadBytes {
				t.Errorf("the largest %s is %d bytes; twice that passes MaxPayloadBytes (%d)", typ, len(m.Value), MaxPayloadBytes)
			}
			if _, err := Decode(m.Headers, m.Value); err != nil {
				t.Fatalf("the largest %s does not decode: %v", typ, err)
			}
			t.Logf("largest %s: %d bytes", typ, len(m.Value))

			// Each bound passed by one, on a fresh copy each time.
			var paths []string
			largestPayload(typ, func(path string, f *field, _ reflect.Value) { paths = append(paths, path) })
			for _, target := range paths {
				p := largestPayload(typ, func(path string, f *field, v reflect.Value) {
					if path != target {
						return
					}
					switch f.kind {
					case kindString:
						v.SetString(v.String() + "<")
					case kindInt:
						v.SetInt(v.Int() + 1)
					case kindList:
						v.Set(reflect.Append(v, v.Index(0)))
					}
				})
				if op, ok := p.(OrderPlaced); ok { // the total follows the lines
					op.TotalCents = 0
					for _, l := range op.Items {
						op.TotalCents += int64(l.Quantity) * l.UnitPriceCents
					}
					p = op
				}
				err := p.Validate()
				var de *DecodeError
				if !errors.As(err, &de) || !errors.Is(err, ErrInvalidField) || de.Field != target || !strings.Contains(err.Error(), "more than") {
					t.Errorf("%s one past its bound: %v; want an invalid field %q naming the bound", target, err, target)
				}
			}
		})
	}
}

// TestDecodeRefusesWhatTheDatabaseCannotStore: a string holding U+0000
// (which JSON can carry as \u0000 and PostgreSQL's text cannot store) or
// beyond its bound, too many lines, a quantity beyond its bound and a
// payload beyond MaxPayloadBytes are each refused naming the field and
// the bound, so a consumer dead-letters them at once rather than fail
// its transaction on every attempt.
func TestDecodeRefusesWhatTheDatabaseCannotStore(t *testing.T) {
	sample := samples()
	_, placed := sampleEvent(t, sample[0])
	// The sample's two lines and these: one more than MaxLines.
	manyLines := strings.Repeat(`{"sku":"SKU-0002","quantity":1,"unit_price_cents":999},`, MaxLines-1)
	tests := []struct {
		name   string
		typ    int // index into samples()
		mutate func(t *testing.T, r *record)
		kind   error
		field  string
		says   string
	}{
		{"NUL in a card token", 0, func(t *testing.T, r *record) { r.replace(t, `"tok_visa"`, `"tok_visa\u0000"`) },
			ErrInvalidField, "payment.card_token", "U+0000"},
		{"NUL in a SKU", 0, func(t *testing.T, r *record) { r.replace(t, `"SKU-0001"`, `"\u0000SKU-0001"`) },
			ErrInvalidField, "items[0].sku", "U+0000"},
		{"NUL in an address", 0, func(t *testing.T, r *record) { r.replace(t, `"Apt 2"`, `"Apt\u00002"`) },
			ErrInvalidField, "shipping_address.line2", "U+0000"},
		{"NUL in a reason", 2, func(t *testing.T, r *record) { r.replace(t, `insufficient funds`, `insufficient\u0000funds`) },
			ErrInvalidField, "reason", "U+0000"},
		{"NUL in an order id", 1, func(t *testing.T, r *record) {
			id := "0193a1b2-7c3d-7e4f-8a5b-6c7d8e9f0a1b"
			r.replace(t, `"`+id+`"`, `"`+id+`\u0000"`)
			r.set(HeaderSubject, id+"\x00")
		}, ErrInvalidField, "order_id", "U+0000"},
		{"SKU too long", 0, func(t *testing.T, r *record) { r.replace(t, `"SKU-0001"`, `"`+strings.Repeat("S", 65)+`"`) },
			ErrInvalidField, "items[0].sku", "65 characters, more than the 64 allowed"},
		{"customer id too long in characters", 0, func(t *testing.T, r *record) {
			r.replace(t, `"cust-42"`, `"`+strings.Repeat("é", 65)+`"`)
		}, ErrInvalidField, "customer_id", "65 characters, more than the 64 allowed"},
		{"too many lines", 0, func(t *testing.T, r *record) {
			r.replace(t, `"items":[`, `"items":[`+manyLines)
			r.replace(t, `"total_cents":3499`, fmt.Sprintf(`"total_cents":%d`, 3499+999*(MaxLines-1)))
		}, ErrInvalidField, "items", "101 items, more than the 100 allowed"},
		{"too many lines, however bad", 0, func(t *testing.T, r *record) { // the count is said before the first bad line
			r.replace(t, `"items":[`, `"items":[`+strings.Repeat(`{},`, 100_000))
		}, ErrInvalidField, "items", "100002 items, more than the 100 allowed"},
		{"quantity over the bound", 0, func(t *testing.T, r *record) {
			r.replace(t, `"quantity":1,`, `"quantity":1001,`)
			r.replace(t, `"total_cents":3499`, fmt.Sprintf(`"total_cents":%d`, 2500+1001*999))
		}, ErrInvalidField, "items[1].quantity", "1001 is more than 1000"},
		{"payload too large", 0, func(t *testing.T, r *record) {
			r.replace(t, `{"order_id"`, `{"padding":"`+strings.Repeat("x", MaxPayloadBytes)+`","order_id"`)
		}, ErrMalformed, "", fmt.Sprintf("%d bytes, more than the %d a payload may have", len(placed.Value)+len(`"padding":"",`)+MaxPayloadBytes, MaxPayloadBytes)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, m := sampleEvent(t, sample[tt.typ])
			r := &record{headers: m.Headers, value: string(m.Value)}
			tt.mutate(t, r)
			ev, err := Decode(r.headers, []byte(r.value))
			var de *DecodeError
			if !errors.As(err, &de) || !errors.Is(err, tt.kind) || de.Field != tt.field || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("decoded %+v, %v; want %v of field %q saying %q", ev.Payload, err, tt.kind, tt.field, tt.says)
			}
		})
	}
}

// TestEncodeRefusesWhatTheDatabaseCannotStore: a producer cannot publish
// what consumers would refuse: U+0000, a string that is not UTF-8
// (encoding/json would publish it altered), too many lines.
func TestEncodeRefusesWhatTheDatabaseCannotStore(t *testing.T) {
	placed := samples()[0].(OrderPlaced)
	nul, notUTF8, many := placed, placed, placed
	nul.ShippingAddress.Name = "Ada\x00Lovelace"
	notUTF8.CustomerID = "cust-\xff"
	many.Items = nil
	many.TotalCents = 0
	for range MaxLines + 1 {
		many.Items = append(many.Items, Line{SKU: "SKU-0001", Quantity: 1, UnitPriceCents: 1})
		many.TotalCents++
	}
	for _, tt := range []struct {
		p           OrderPlaced
		field, says string
	}{
		{nul, "shipping_address.name", "U+0000"},
		{notUTF8, "customer_id", "not UTF-8"},
		{many, "items", "101 items, more than the 100 allowed"},
	} {
		_, err := Encode(New("/shopflow/test", tt.p))
		var de *DecodeError
		if !errors.As(err, &de) || de.Field != tt.field || !strings.Contains(err.Error(), tt.says) || !strings.HasPrefix(err.Error(), "encode ") {
			t.Errorf("Encode = %v; want an encode error of %q saying %q", err, tt.field, tt.says)
		}
	}
}

// TestEveryStringAndListIsBounded: a string or list field without a
// bound does not compile, so a field added later cannot take any size.
func TestEveryStringAndListIsBounded(t *testing.T) {
	type unbounded struct {
		S string `json:"s"`
	}
	type unboundedList struct {
		L []Line `json:"l"`
	}
	type unknownLimit struct {
		S string `json:"s" event:"maxlen=maxNothing"`
	}
	for _, v := range []any{unbounded{}, unboundedList{}, unknownLimit{}} {
		if _, err := compileStruct(reflect.TypeOf(v)); err == nil {
			t.Errorf("%T compiled", v)
		}
	}
	for name, n := range limitNames {
		if n < 1 {
			t.Errorf("limit %s = %d", name, n)
		}
	}
	// The bound is in characters, as JSON Schema's maxLength counts them.
	if n := utf8.RuneCountInString(strings.Repeat("é", maxSKULength)); n != maxSKULength {
		t.Fatal(n)
	}
	long := StockReserved{OrderID: "o", ReservationID: "r", Items: []StockLine{{SKU: strings.Repeat("é", maxSKULength), Quantity: 1}}}
	if err := long.Validate(); err != nil {
		t.Errorf("%d two-byte characters: %v", maxSKULength, err)
	}
}
