package httpserver

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// jsonShape walks body, a well-formed JSON value, once and returns the
// path of the first object key that repeats within its object (""
// when none does), and the path of the innermost value whose bytes hold
// the offset at ("" when at is 0 or outside every value). Paths are the
// field names and array indices from the top, joined by dots
// ("items.1.quantity"), as Problem.Errors names fields.
//
// encoding/json keeps the last of repeated keys without a word (a
// request's meaning would then depend on which parser reads it), and
// names a wrongly typed field without its array indices
// ("items.quantity": which line?); DecodeJSON uses this to say both. It
// runs on every decoded body, so it reads bytes rather than tokens (with
// a json.Decoder's Token, an order's body took 33 us and 222
// allocations).
func jsonShape(body []byte, at int64) (dup, atPath string) {
	type frame struct {
		obj     bool
		wantKey bool     // obj: the next string is a key
		keys    [][]byte // obj: the keys so far, quoted as written
		key     []byte   // obj: the key of the value being read
		index   int      // array: the index of the value being read
		start   int
	}
	stack := make([]frame, 0, 8)
	path := func(frames []frame, last []byte) string {
		parts := make([]string, 0, len(frames)+1)
		for _, f := range frames {
			if f.obj {
				parts = append(parts, unquoteKey(f.key))
			} else {
				parts = append(parts, strconv.Itoa(f.index))
			}
		}
		if last != nil {
			parts = append(parts, unquoteKey(last))
		}
		return strings.Join(parts, ".")
	}
	depth := -1
	holds := func(start, end int) { // the value being read spans body[start:end]
		if int64(start) < at && at <= int64(end) && len(stack) > depth {
			atPath, depth = path(stack, nil), len(stack)
		}
	}
	done := func() { // the value being read ended
		if n := len(stack); n > 0 {
			if stack[n-1].obj {
				stack[n-1].wantKey = true
			} else {
				stack[n-1].index++
			}
		}
	}
	for i := 0; i < len(body); {
		switch c := body[i]; c {
		case ' ', '\t', '\r', '\n', ',', ':':
			i++
		case '{', '[':
			stack = append(stack, frame{obj: c == '{', wantKey: c == '{', start: i})
			i++
		case '}', ']':
			f := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			holds(f.start, i+1)
			done()
			i++
		case '"':
			end := stringEnd(body, i)
			if n := len(stack); n > 0 && stack[n-1].obj && stack[n-1].wantKey {
				f := &stack[n-1]
				key := body[i:end]
				for _, k := range f.keys {
					if dup == "" && sameKey(k, key) {
						dup = path(stack[:n-1], key)
					}
				}
				f.keys = append(f.keys, key)
				f.key, f.wantKey = key, false
			} else {
				holds(i, end)
				done()
			}
			i = end
		default: // a number, true, false or null
			end := i
			for end < len(body) && !endsLiteral(body[end]) {
				end++
			}
			holds(i, end)
			done()
			i = end
		}
	}
	return dup, atPath
}

// endsLiteral reports whether c ends a number or a true, false or null.
func endsLiteral(c byte) bool {
	switch c {
	case ' ', '\t', '\r', '\n', ',', ':', ']', '}':
		return true
	}
	return false
}

// stringEnd returns the index just past the JSON string that starts at
// body[start] (a quote).
func stringEnd(body []byte, start int) int {
	for i := start + 1; i < len(body); i++ {
		switch body[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(body)
}

// sameKey reports whether two quoted JSON strings say the same.
func sameKey(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	if bytes.IndexByte(a, '\\') < 0 && bytes.IndexByte(b, '\\') < 0 {
		return false
	}
	return unquoteKey(a) == unquoteKey(b)
}

// unquoteKey returns the text of a quoted JSON string.
func unquoteKey(q []byte) string {
	if bytes.IndexByte(q, '\\') < 0 {
		return string(q[1 : len(q)-1])
	}
	var s string
	if json.Unmarshal(q, &s) != nil {
		return string(q)
	}
	return s
}
