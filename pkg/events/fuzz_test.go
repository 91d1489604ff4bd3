package events

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// packHeaders and unpackHeaders carry a header list through the fuzzer as
// one byte string, "key:value" lines (values cannot hold a newline).
func packHeaders(hs []Header) []byte {
	var b bytes.Buffer
	for _, h := range hs {
		b.WriteString(h.Key)
		b.WriteByte(':')
		b.Write(h.Value)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func unpackHeaders(b []byte) []Header {
	var hs []Header
	for line := range bytes.Lines(b) {
		k, v, _ := bytes.Cut(bytes.TrimSuffix(line, []byte("\n")), []byte(":"))
		hs = append(hs, Header{Key: string(k), Value: v})
	}
	return hs
}

// FuzzDecode checks that Decode never panics, that its errors are
// *DecodeErrors of one of the four kinds, and that whatever it accepts
// re-encodes to a record that decodes to the same event.
func FuzzDecode(f *testing.F) {
	for _, p := range samples() {
		e := New("/shopflow/fuzz", p)
		e.ID, e.Time, e.TraceParent = "0193a1b2-7c3d-7e4f-8a5b-6c7d8e9f0a1b", placedAt, traceParent // stable seeds
		m, err := Encode(e)
		if err != nil {
			f.Fatal(err)
		}
		hs := packHeaders(m.Headers)
		f.Add(hs, m.Value)
		f.Add(hs, append(bytes.Clone(m.Value), " x"...))                                        // trailing garbage
		f.Add(hs, m.Value[:len(m.Value)/2])                                                     // truncated
		f.Add(bytes.Replace(hs, []byte("ce_time:"), []byte("ce_time:x"), 1), m.Value)           // bad time
		f.Add(bytes.Replace(hs, []byte("ce_type:shop."), []byte("ce_type:shop.x"), 1), m.Value) // unknown type
	}
	f.Add([]byte(""), []byte(""))
	f.Add([]byte("ce_specversion:1.0\nce_type:shop.order.confirmed.v1\n"), []byte(`{"order_id":null}`))
	f.Add([]byte("ce_specversion:1.0\nce_id:0193a1b2-7c3d-7e4f-8a5b-6c7d8e9f0a1b\nce_source:/s\nce_type:shop.stock.rejected.v1\nce_time:9999-12-31T23:59:59.999999999-23:59\nce_subject:o\n"),
		[]byte(`{"order_id":"o","short":[{"sku":"s","requested":9223372036854775807,"available":0,"x":[[[{}]]]}]}`))

	kinds := []error{ErrUnknownType, ErrMalformed, ErrMissingField, ErrInvalidField}
	f.Fuzz(func(t *testing.T, headers, value []byte) {
		e, err := Decode(unpackHeaders(headers), value)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %T %v is not a *DecodeError", err, err)
			}
			n := 0
			for _, k := range kinds {
				if errors.Is(err, k) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("error %v matches %d kinds", err, n)
			}
			return
		}
		m, err := Encode(e)
		if err != nil {
			t.Fatalf("decoded %+v but cannot encode it: %v", e, err)
		}
		e2, err := Decode(m.Headers, m.Value)
		if err != nil {
			t.Fatalf("re-encoded %s %q does not decode: %v", m.Value, m.Headers, err)
		}
		if !reflect.DeepEqual(e, e2) {
			t.Fatalf("round trip changed the event:\n%+v\n%+v", e, e2)
		}
	})
}

// FuzzParseJSONFast checks the one-pass parser against encoding/json:
// where the exact path accepts a value, the fast one must give the same
// tree; where it rejects one, the fast one must step aside (so the error
// is encoding/json's).
func FuzzParseJSONFast(f *testing.F) {
	for _, p := range samples() {
		m, err := Encode(New("/shopflow/fuzz", p))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(m.Value)
	}
	for _, s := range []string{
		``, ` `, `{}`, `[]`, `{"a":[]}`, `{"a":{}}`, `null`, `true`, `false`, `0`, `-0`, `1.5e-3`, `1E+9`, `-`, `01`, `1.`, `.5`, `1e`,
		`"plain"`, `"esc\"aped"`, `"\u00e9\n\t\\/"`, `"\ud83d\ude00"`, `"\ud800"`, `"é"`, "\"\xff\xfe\"", "\"\xef\xbf\xbd\"", "\"a\x01\"",
		`"\x"`, `"\u12"`, `{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `{"a" : 1 , "b" :[1, 2 ,3] }`, "\t{\n\"a\"\r:1}\n",
		`{"a":1}x`, `{"a":1,}`, `[1,]`, `{"a"}`, `{1:2}`, `[`, `{`, `"`, `tru`, `nul`, `[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := parseJSONFast(data)
		exact, err := parseJSONExact(data)
		switch {
		case err != nil && ok:
			t.Fatalf("%q: fast parser accepted %#v, encoding/json says %v", data, fast, err)
		case err == nil && !ok:
			t.Fatalf("%q: fast parser stepped aside from a value encoding/json accepts: %#v", data, exact)
		case err == nil && !reflect.DeepEqual(fast, exact):
			t.Fatalf("%q: fast parser gave %#v, encoding/json %#v", data, fast, exact)
		}
	})
}
