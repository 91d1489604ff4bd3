package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"time"
)

// maxDepth bounds the nesting of a payload, unknown fields included, so a
// hostile record cannot make Decode recurse without limit.
const maxDepth = 32

// parseJSON parses data as exactly one JSON value into maps, slices,
// strings, json.Numbers, bools and nils. Unlike encoding/json it rejects
// duplicate object keys, which different readers would resolve differently.
func parseJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := parseValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}

func parseValue(dec *json.Decoder, depth int) (any, error) {
	tok, err := dec.Token()
	if err == io.EOF {
		return nil, io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	if depth >= maxDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", maxDepth)
	}
	switch d {
	case '{':
		m := make(map[string]any)
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			k, ok := kt.(string)
			if !ok {
				return nil, fmt.Errorf("object key is %v, not a string", kt)
			}
			if _, dup := m[k]; dup {
				return nil, fmt.Errorf("duplicate key %q", k)
			}
			if m[k], err = parseValue(dec, depth+1); err != nil {
				return nil, err
			}
		}
		return m, closeDelim(dec)
	case '[':
		a := make([]any, 0)
		for dec.More() {
			v, err := parseValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		return a, closeDelim(dec)
	}
	return nil, fmt.Errorf("unexpected %v", d)
}

// closeDelim consumes the '}' or ']' that ends the current value.
func closeDelim(dec *json.Decoder) error {
	_, err := dec.Token()
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
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
		path := joinPath(prefix, f.name)
		raw := obj[f.name]
		if raw == nil { // absent or null
			if f.optional {
				continue
			}
			return missing(path)
		}
		if err := f.decode(dst.Field(f.index), raw, path); err != nil {
			return err
		}
	}
	return nil
}

func (f *field) decode(dst reflect.Value, raw any, path string) *DecodeError {
	wrongType := func(want string) *DecodeError {
		return malformed(path, fmt.Errorf("want %s, got %s", want, jsonType(raw)))
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
			return invalid(path, fmt.Errorf("%s is out of range", num))
		}
		if err != nil {
			return malformed(path, fmt.Errorf("want integer, got %s", num))
		}
		dst.SetInt(n)
	case kindTime:
		s, ok := raw.(string)
		if !ok {
			return wrongType("RFC 3339 time string")
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return malformed(path, fmt.Errorf("%q is not an RFC 3339 time", s))
		}
		if t.IsZero() {
			return invalid(path, errors.New("zero time"))
		}
		dst.Set(reflect.ValueOf(t.UTC()))
	case kindObject:
		obj, ok := raw.(map[string]any)
		if !ok {
			return wrongType("object")
		}
		return f.elem.decode(dst, obj, path)
	case kindList:
		arr, ok := raw.([]any)
		if !ok {
			return wrongType("array")
		}
		list := reflect.MakeSlice(dst.Type(), len(arr), len(arr))
		for i, item := range arr {
			ipath := fmt.Sprintf("%s[%d]", path, i)
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
