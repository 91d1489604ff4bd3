package events

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// fieldKind is the JSON shape of a payload field.
type fieldKind int

const (
	kindString fieldKind = iota
	kindInt
	kindTime
	kindObject // a nested struct
	kindList   // a slice of structs
)

// field is the compiled contract of one payload struct field: its JSON name
// and kind from the Go type and json tag, its constraints from the event tag.
type field struct {
	index    int
	goName   string
	name     string
	kind     fieldKind
	optional bool
	hasMin   bool
	min      int64
	format   string // key of formats
	enum     []string
	elem     *structSpec // kindObject: the struct; kindList: the element
}

// structSpec is the compiled contract of a payload struct.
type structSpec struct {
	typ    reflect.Type
	fields []field
}

// stringFormat is a named string constraint of the event tag.
type stringFormat struct {
	pattern string
	re      *regexp.Regexp
}

// formats are the values of format= in event tags.
var formats = map[string]stringFormat{
	"currency": {pattern: `^[A-Z]{3}$`}, // ISO 4217
	"country":  {pattern: `^[A-Z]{2}$`}, // ISO 3166-1 alpha-2
}

var timeType = reflect.TypeFor[time.Time]()

// specs holds the compiled contract of every payload type, built once at
// start-up from payloadTypes; a bad tag fails every test at once.
var specs = func() map[reflect.Type]*structSpec {
	for name, f := range formats {
		f.re = regexp.MustCompile(f.pattern)
		formats[name] = f
	}
	m := make(map[reflect.Type]*structSpec, len(payloadTypes))
	for _, p := range payloadTypes {
		s, err := compileStruct(reflect.TypeOf(p))
		if err != nil {
			panic("events: " + err.Error()) // a programming error in this package's tags
		}
		m[s.typ] = s
	}
	return m
}()

// specOf returns the contract of t's payload type, or nil.
func specOf(t Type) *structSpec {
	for _, p := range payloadTypes {
		if p.EventType() == t {
			return specs[reflect.TypeOf(p)]
		}
	}
	return nil
}

func compileStruct(t reflect.Type) (*structSpec, error) {
	if t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("%s is not a struct", t)
	}
	s := &structSpec{typ: t}
	for i := range t.NumField() {
		sf := t.Field(i)
		f, err := compileField(sf)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", t.Name(), sf.Name, err)
		}
		f.index = i
		s.fields = append(s.fields, f)
	}
	return s, nil
}

func compileField(sf reflect.StructField) (field, error) {
	f := field{goName: sf.Name}
	if !sf.IsExported() || sf.Anonymous {
		return f, errors.New("payload fields must be exported and named")
	}
	name, opts, _ := strings.Cut(sf.Tag.Get("json"), ",")
	if name == "" || name == "-" {
		return f, errors.New("missing json name")
	}
	f.name = name
	for tag := range strings.SplitSeq(sf.Tag.Get("event"), ",") {
		key, val, _ := strings.Cut(tag, "=")
		switch key {
		case "":
		case "optional":
			f.optional = true
		case "min":
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return f, fmt.Errorf("event tag min: %w", err)
			}
			f.hasMin, f.min = true, n
		case "format":
			if _, ok := formats[val]; !ok {
				return f, fmt.Errorf("event tag: unknown format %q", val)
			}
			f.format = val
		case "enum":
			f.enum = strings.Split(val, "|")
		default:
			return f, fmt.Errorf("event tag: unknown option %q", key)
		}
	}
	if (opts == "omitempty") != f.optional || (opts != "" && opts != "omitempty") {
		return f, errors.New("json omitempty goes with event optional, and nothing else")
	}
	t := sf.Type
	switch {
	case t == timeType:
		f.kind = kindTime
	case t.Kind() == reflect.String:
		f.kind = kindString
	case t.Kind() == reflect.Int || t.Kind() == reflect.Int64:
		f.kind = kindInt
		if !f.hasMin {
			return f, errors.New("integer fields need an event tag min")
		}
	case t.Kind() == reflect.Struct:
		f.kind = kindObject
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct && t.Elem() != timeType:
		f.kind = kindList
		t = t.Elem()
	default:
		return f, fmt.Errorf("unsupported type %s", t)
	}
	if f.kind == kindObject || f.kind == kindList {
		elem, err := compileStruct(t)
		if err != nil {
			return f, err
		}
		f.elem = elem
	}
	if (f.format != "" || f.enum != nil) && f.kind != kindString {
		return f, errors.New("format and enum apply to strings only")
	}
	if f.hasMin && f.kind != kindInt {
		return f, errors.New("min applies to integers only")
	}
	if f.optional && f.kind != kindString {
		return f, errors.New("only strings can be optional")
	}
	return f, nil
}

// validateFields checks p against its type's tagged constraints.
func validateFields(p Payload) error {
	v := reflect.ValueOf(p)
	s := specs[v.Type()]
	if s == nil {
		return &DecodeError{Kind: ErrUnknownType, Type: p.EventType(), op: "validate"}
	}
	if err := s.check(v, ""); err != nil {
		err.Type, err.op = p.EventType(), "validate"
		return err
	}
	return nil
}

// check returns the first field of v that breaks the contract.
func (s *structSpec) check(v reflect.Value, prefix string) *DecodeError {
	for _, f := range s.fields {
		if err := f.check(v.Field(f.index), prefix); err != nil {
			return err
		}
	}
	return nil
}

// check is structSpec.check for one field; its path (prefix.name) is
// built only when needed, as in decode.
func (f *field) check(v reflect.Value, prefix string) *DecodeError {
	path := func() string { return joinPath(prefix, f.name) }
	switch f.kind {
	case kindString:
		s := v.String()
		if s == "" {
			if f.optional {
				return nil
			}
			return missing(path())
		}
		if f.format != "" && !formats[f.format].re.MatchString(s) {
			return invalid(path(), fmt.Errorf("%q is not a %s code (%s)", s, f.format, formats[f.format].pattern))
		}
		if f.enum != nil && !slices.Contains(f.enum, s) {
			return invalid(path(), fmt.Errorf("%q is not one of %s", s, strings.Join(f.enum, ", ")))
		}
	case kindInt:
		if n := v.Int(); n < f.min {
			return invalid(path(), fmt.Errorf("%d is less than %d", n, f.min))
		}
	case kindTime:
		if t := v.Interface().(time.Time); !goodTime(t) {
			return checkTime(t, path())
		}
	case kindObject:
		return f.elem.check(v, path())
	case kindList:
		if v.Len() == 0 {
			return missing(path())
		}
		base := path()
		for i := range v.Len() {
			if err := f.elem.check(v.Index(i), fmt.Sprintf("%s[%d]", base, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkTime requires a non-zero time whose year is 1 to 9999 both as given
// and in UTC, so it encodes as RFC 3339 and decodes back.
func checkTime(t time.Time, path string) *DecodeError {
	if goodTime(t) {
		return nil
	}
	if t.IsZero() {
		return missing(path)
	}
	for _, y := range []int{t.Year(), t.UTC().Year()} {
		if y < 1 || y > 9999 {
			return invalid(path, fmt.Errorf("year %d is outside 1 to 9999", y))
		}
	}
	return nil
}

// goodTime is checkTime's test, without building an error.
func goodTime(t time.Time) bool {
	u := t.UTC()
	return !t.IsZero() && t.Year() >= 1 && t.Year() <= 9999 && u.Year() >= 1 && u.Year() <= 9999
}

var errOverflow = errors.New("amount overflows int64")

func joinPath(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}
