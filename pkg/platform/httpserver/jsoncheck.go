package httpserver

import (
	"bytes"
	"encoding"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// badText returns the offset of the first text in body, a well-formed
// JSON value, that is not Unicode, and what is wrong with it: a byte
// sequence that is not UTF-8, or a \u escape of half a surrogate pair.
// encoding/json turns both into U+FFFD without a word, so "Ada \xff"
// would be stored, and printed on a label, as "Ada �". -1 when the text
// is sound. One pass over the bytes.
func badText(body []byte) (int, string) {
	inString := false
	for i := 0; i < len(body); {
		c := body[i]
		if c >= utf8.RuneSelf {
			if r, n := utf8.DecodeRune(body[i:]); r == utf8.RuneError && n == 1 {
				return i, "a byte that is not UTF-8"
			} else {
				i += n
			}
			continue
		}
		switch {
		case c == '"':
			inString = !inString
			i++
		case c == '\\' && inString:
			if i+6 > len(body) || body[i+1] != 'u' {
				i += 2 // a one-character escape
				continue
			}
			u := hex4(body[i+2 : i+6])
			switch {
			case 0xD800 <= u && u < 0xDC00: // must be followed by its low half
				if i+12 <= len(body) && body[i+6] == '\\' && body[i+7] == 'u' {
					if l := hex4(body[i+8 : i+12]); 0xDC00 <= l && l < 0xE000 {
						i += 12
						continue
					}
				}
				return i, "\\u" + string(body[i+2:i+6]) + ", half of a surrogate pair"
			case 0xDC00 <= u && u < 0xE000:
				return i, "\\u" + string(body[i+2:i+6]) + ", half of a surrogate pair"
			}
			i += 6
		default:
			i++
		}
	}
	return -1, ""
}

// hex4 is the value of four hex digits (well-formed JSON has them there).
func hex4(b []byte) rune {
	n, err := strconv.ParseUint(string(b), 16, 32)
	if err != nil {
		return -1
	}
	return rune(n)
}

// maxUnknown bounds the unknown fields one answer names, and maxVisits
// the values unknownFields looks at: a 1 MiB body holds some 350,000
// empty objects, and each costs a decoder (an unauthenticated client could
// send one after another). Past it the answer names what encoding/json
// named.
const (
	maxUnknown = 20
	maxVisits  = 10_000
)

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// unknownFields returns the paths ("items.0.color") of body's object
// keys that no field of t takes, in the order they appear, at most
// maxUnknown: encoding/json names only the first, and without its path.
// It follows t, so it goes no deeper than t does; a field whose type
// decodes itself (json.Unmarshaler, encoding.TextUnmarshaler) is not
// looked into. It runs on the error path only, and looks at maxVisits
// values at most.
func unknownFields(body []byte, t reflect.Type) []string {
	var out []string
	visits := 0
	join := func(path, part string) string {
		if path == "" {
			return part
		}
		return path + "." + part
	}
	// members calls fn with each key and value of the object raw.
	members := func(raw []byte, fn func(key string, v json.RawMessage)) {
		dec := json.NewDecoder(bytes.NewReader(raw))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			return
		}
		for dec.More() && len(out) < maxUnknown && visits < maxVisits {
			visits++
			tok, err := dec.Token()
			key, ok := tok.(string)
			var v json.RawMessage
			if err != nil || !ok || dec.Decode(&v) != nil {
				return
			}
			fn(key, v)
		}
	}
	var walk func(raw []byte, t reflect.Type, path string)
	walk = func(raw []byte, t reflect.Type, path string) {
		if visits++; visits > maxVisits {
			return
		}
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
			return
		}
		switch t.Kind() {
		case reflect.Struct:
			members(raw, func(key string, v json.RawMessage) {
				if f, ok := fieldFor(t, key); ok {
					walk(v, f, join(path, key))
				} else {
					out = append(out, join(path, key))
				}
			})
		case reflect.Map:
			members(raw, func(key string, v json.RawMessage) { walk(v, t.Elem(), join(path, key)) })
		case reflect.Slice, reflect.Array:
			// One element at a time: the walk may stop long before the end.
			dec := json.NewDecoder(bytes.NewReader(raw))
			if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
				return // e.g. []byte, a base64 string
			}
			for i := 0; dec.More() && len(out) < maxUnknown && visits < maxVisits; i++ {
				var it json.RawMessage
				if dec.Decode(&it) != nil {
					return
				}
				walk(it, t.Elem(), join(path, strconv.Itoa(i)))
			}
		}
	}
	walk(body, t, "")
	return out
}

// fieldFor returns the type of t's field that encoding/json decodes key
// into: its JSON name, or its Go name without one, equal or equal but for
// case; promoted fields of embedded structs count.
func fieldFor(t reflect.Type, key string) (reflect.Type, bool) {
	var folded reflect.Type
	for _, f := range reflect.VisibleFields(t) {
		if !f.IsExported() || (f.Anonymous && f.Type.Kind() == reflect.Struct) {
			continue
		}
		name := f.Name
		if tag, ok := f.Tag.Lookup("json"); ok {
			n, _, _ := strings.Cut(tag, ",")
			if n == "-" && !strings.HasPrefix(tag, "-,") {
				continue
			}
			if n != "" {
				name = n
			}
		}
		if name == key {
			return f.Type, true
		}
		if folded == nil && strings.EqualFold(name, key) {
			folded = f.Type
		}
	}
	return folded, folded != nil
}
