package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"time"
	"unicode/utf8"
)

// maxDepth bounds the nesting of a payload, unknown fields included, so a
// hostile record cannot make Decode recurse without limit.
const maxDepth = 32

// parseJSON parses data as exactly one JSON value into maps, slices,
// strings, json.Numbers, bools and nils. Unlike encoding/json it rejects
// duplicate object keys, which different readers would resolve differently,
// and nesting deeper than maxDepth.
//
// It is on every consumed record's path: parseJSONFast handles the
// records that are fine in one pass; the rest come here, where encoding/json
// says what is wrong (json.Valid, then one byte scan for keys and depth,
// then one ordinary decode, avoiding the reflection-heavy token API).
func parseJSON(data []byte) (any, error) {
	if v, ok := parseJSONFast(data); ok {
		return v, nil
	}
	return parseJSONExact(data)
}

// parseJSONExact is parseJSON by encoding/json alone.
func parseJSONExact(data []byte) (any, error) {
	if !json.Valid(data) {
		// Decode again only to say what is wrong and where.
		var v any
		dec := json.NewDecoder(bytes.NewReader(data))
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		return nil, errors.New("trailing data after the JSON value")
	}
	if err := checkKeysAndDepth(data); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// checkKeysAndDepth walks valid JSON and reports a repeated key within
// one object or nesting deeper than maxDepth.
func checkKeysAndDepth(data []byte) error {
	type frame struct {
		object bool
		keys   map[string]struct{}
		expect bool // in an object: the next string is a key
	}
	var stack []frame
	for i := 0; i < len(data); i++ {
		switch c := data[i]; c {
		case '{', '[':
			if len(stack) >= maxDepth {
				return fmt.Errorf("nested deeper than %d levels", maxDepth)
			}
			stack = append(stack, frame{object: c == '{', expect: c == '{'})
		case '}', ']':
			stack = stack[:len(stack)-1]
		case ',':
			if n := len(stack); n > 0 && stack[n-1].object {
				stack[n-1].expect = true
			}
		case '"':
			end := i + 1
			escaped := false
			for ; data[end] != '"'; end++ {
				if data[end] == '\\' {
					escaped = true
					end++
				}
			}
			if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].expect {
				key := string(data[i+1 : end])
				// Unquoted as the decoder will: escapes, and bytes that are
				// not UTF-8 (each becomes U+FFFD, so "\x8a" and "\x97" are
				// one key).
				if escaped || !utf8.ValidString(key) {
					if err := json.Unmarshal(data[i:end+1], &key); err != nil {
						return err
					}
				}
				f := &stack[n-1]
				if f.keys == nil {
					f.keys = make(map[string]struct{}, 8)
				}
				if _, dup := f.keys[key]; dup {
					return fmt.Errorf("duplicate key %q", key)
				}
				f.keys[key] = struct{}{}
				f.expect = false
			}
			i = end
		}
	}
	return nil
}

// jsonType names the JSON type of a parsed value, for error messages.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "boolean"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return fmt.Sprintf("%T", v)
}

// decode sets the fields of dst, a value of s.typ, from obj. It checks
// presence and JSON types; ranges are Validate's job.
func (s *structSpec) decode(dst reflect.Value, obj map[string]any, prefix string) *DecodeError {
	for _, f := range s.fields {
		raw := obj[f.name]
		if raw == nil { // absent or null
			if f.optional {
				continue
			}
			return missing(joinPath(prefix, f.name))
		}
		if err := f.decode(dst.Field(f.index), raw, prefix); err != nil {
			return err
		}
	}
	return nil
}

// decode sets dst from raw; the field's path (prefix.name) is built only
// for an error or a nested object, not for every field of every record.
func (f *field) decode(dst reflect.Value, raw any, prefix string) *DecodeError {
	path := func() string { return joinPath(prefix, f.name) }
	wrongType := func(want string) *DecodeError {
		return malformed(path(), fmt.Errorf("want %s, got %s", want, jsonType(raw)))
	}
	switch f.kind {
	case kindString:
		s, ok := raw.(string)
		if !ok {
			return wrongType("string")
		}
		dst.SetString(s)
	case kindInt:
		num, ok := raw.(json.Number)
		if !ok {
			return wrongType("integer")
		}
		n, err := strconv.ParseInt(num.String(), 10, 64)
		if errors.Is(err, strconv.ErrRange) || err == nil && dst.OverflowInt(n) {
			return invalid(path(), fmt.Errorf("%s is out of range", num))
		}
		if err != nil {
			return malformed(path(), fmt.Errorf("want integer, got %s", num))
		}
		dst.SetInt(n)
	case kindTime:
		s, ok := raw.(string)
		if !ok {
			return wrongType("RFC 3339 time string")
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return malformed(path(), fmt.Errorf("%q is not an RFC 3339 time", s))
		}
		if t.IsZero() {
			return invalid(path(), errors.New("zero time"))
		}
		dst.Set(reflect.ValueOf(t.UTC()))
	case kindObject:
		obj, ok := raw.(map[string]any)
		if !ok {
			return wrongType("object")
		}
		return f.elem.decode(dst, obj, path())
	case kindList:
		arr, ok := raw.([]any)
		if !ok {
			return wrongType("array")
		}
		// Validate says it too; said here, the items beyond are not built.
		if err := f.checkLen(len(arr)); err != nil {
			return invalid(path(), err)
		}
		list := reflect.MakeSlice(dst.Type(), len(arr), len(arr))
		base := path()
		for i, item := range arr {
			ipath := fmt.Sprintf("%s[%d]", base, i)
			obj, ok := item.(map[string]any)
			if !ok {
				return malformed(ipath, fmt.Errorf("want object, got %s", jsonType(item)))
			}
			if err := f.elem.decode(list.Index(i), obj, ipath); err != nil {
				return err
			}
		}
		dst.Set(list)
	}
	return nil
}
