package httpserver

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// jsonShape walks body, which starts with a well-formed JSON value, up to
// the end of that value, and returns the path of the first object key
// that repeats within its object ("" when none does, or when at is not
// 0), and the path of the innermost value whose bytes hold the offset at
// ("" when at is 0 or outside every value). Paths are the field names and
// array indices from the top, joined by dots ("items.1.quantity"), as
// Problem.Errors names fields. With fold, keys that differ only in case
// repeat (encoding/json matches struct fields so); else only equal ones.
//
// encoding/json keeps the last of repeated keys without a word (a
// request's meaning would then depend on which parser reads it), and
// names a wrongly typed field without its array indices
// ("items.quantity": which line?); DecodeJSON uses this to say both. It
// runs on every decoded body, so it reads bytes rather than tokens (with
// a json.Decoder's Token, an order's body took 33 us and 222
// allocations) and stays linear in the body's size: the first repeat
// ends the walk, and an object's keys go into a map past a few.
func jsonShape(body []byte, at int64, fold bool) (dup, atPath string) {
	type frame struct {
		obj     bool
		wantKey bool     // obj: the next string is a key
		keys    [][]byte // obj: the keys so far, unquoted (and folded)
		seen    map[string]bool
		key     []byte // obj: the key of the value being read, quoted
		index   int    // array: the index of the value being read
		start   int
	}
	const linearKeys = 8
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
	// repeats records key (quoted) in f and reports whether f had it.
	repeats := func(f *frame, key []byte) bool {
		k := key[1 : len(key)-1]
		if bytes.IndexByte(k, '\\') >= 0 {
			k = []byte(unquoteKey(key))
		}
		if fold {
			k = foldKey(k)
		}
		if f.seen != nil {
			if f.seen[string(k)] {
				return true
			}
			f.seen[string(k)] = true
			return false
		}
		for _, old := range f.keys {
			if bytes.Equal(old, k) {
				return true
			}
		}
		f.keys = append(f.keys, k)
		if len(f.keys) > linearKeys {
			f.seen = make(map[string]bool, 2*len(f.keys))
			for _, old := range f.keys {
				f.seen[string(old)] = true
			}
		}
		return false
	}
	for i := 0; i < len(body); {
		switch c := body[i]; c {
		case ' ', '\t', '\r', '\n', ',', ':':
			i++
			continue
		case '{', '[':
			stack = append(stack, frame{obj: c == '{', wantKey: c == '{', start: i})
			i++
			continue
		case '}', ']':
			if len(stack) == 0 {
				return dup, atPath // past the value (trailing data)
			}
			f := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			holds(f.start, i+1)
			i++
		case '"':
			end := stringEnd(body, i)
			if n := len(stack); n > 0 && stack[n-1].obj && stack[n-1].wantKey {
				f := &stack[n-1]
				key := body[i:end]
				if at == 0 && repeats(f, key) {
					return path(stack[:n-1], key), ""
				}
				f.key, f.wantKey = key, false
				i = end
				continue
			}
			holds(i, end)
			i = end
		default: // a number, true, false or null
			end := i
			for end < len(body) && !endsLiteral(body[end]) {
				end++
			}
			holds(i, end)
			i = end
		}
		// A value ended: the top-level one, or one in the innermost
		// container.
		n := len(stack)
		if n == 0 {
			return dup, atPath
		}
		if stack[n-1].obj {
			stack[n-1].wantKey = true
		} else {
			stack[n-1].index++
		}
	}
	return dup, atPath
}

// foldKey returns k in a form equal for keys encoding/json takes for one
// struct field (it compares them under Unicode simple folding), without
// copying the common case, a lower-case ASCII key.
func foldKey(k []byte) []byte {
	lower := true
	for _, c := range k {
		if c >= 0x80 {
			return bytes.ToLower(bytes.ToUpper(k)) // "ſ" (long s) is "s", "K" (Kelvin) "k"
		}
		if 'A' <= c && c <= 'Z' {
			lower = false
		}
	}
	if lower {
		return k
	}
	return bytes.ToLower(k)
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
