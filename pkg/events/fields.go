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
	"unicode/utf8"
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
	hasMax   bool
	max      int64
	maxLen   int    // a string's bound, in characters
	maxItems int    // a list's bound
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
		case "max", "maxlen", "maxitems":
			n, err := limit(val)
			if err != nil {
				return f, fmt.Errorf("event tag %s: %w", key, err)
			}
			switch key {
			case "max":
				f.hasMax, f.max = true, n
			case "maxlen":
				f.maxLen = int(n)
			default:
				f.maxItems = int(n)
			}
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
	if (f.hasMin || f.hasMax) && f.kind != kindInt {
		return f, errors.New("min and max apply to integers only")
	}
	if f.hasMin && f.hasMax && f.max < f.min {
		return f, errors.New("max is below min")
	}
	if f.maxLen != 0 && f.kind != kindString {
		return f, errors.New("maxlen applies to strings only")
	}
	if f.maxItems != 0 && f.kind != kindList {
		return f, errors.New("maxitems applies to lists only")
	}
	// Every string and list is bounded, so that what one event costs a
	// consumer is bounded too (a format or an enum bounds a string).
	if f.kind == kindString && f.maxLen == 0 && f.format == "" && f.enum == nil {
		return f, errors.New("string fields need an event tag maxlen (or a format or enum)")
	}
	if f.kind == kindList && f.maxItems == 0 {
		return f, errors.New("list fields need an event tag maxitems")
	}
	if f.optional && f.kind != kindString {
		return f, errors.New("only strings can be optional")
	}
	return f, nil
}

// limit reads a bound of an event tag: a positive number, or the name of
// one of limitNames.
func limit(val string) (int64, error) {
	n, ok := limitNames[val]
	if !ok {
		var err error
		if n, err = strconv.ParseInt(val, 10, 64); err != nil {
			return 0, fmt.Errorf("%q is neither a number nor a known limit", val)
		}
	}
	if n < 1 {
		return 0, fmt.Errorf("%q is not positive", val)
	}
	return n, nil
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
		if err := f.checkText(s); err != nil {
			return invalid(path(), err)
		}
		if f.format != "" && !formats[f.format].re.MatchString(s) {
			return invalid(path(), fmt.Errorf("%q is not a %s code (%s)", s, f.format, formats[f.format].pattern))
		}
		if f.enum != nil && !slices.Contains(f.enum, s) {
			return invalid(path(), fmt.Errorf("%q is not one of %s", s, strings.Join(f.enum, ", ")))
		}
	case kindInt:
		n := v.Int()
		if n < f.min {
			return invalid(path(), fmt.Errorf("%d is less than %d", n, f.min))
		}
		if f.hasMax && n > f.max {
			return invalid(path(), fmt.Errorf("%d is more than %d", n, f.max))
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
		if err := f.checkLen(v.Len()); err != nil {
			return invalid(path(), err)
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

// checkText checks a non-empty string against what every string field
// must be: UTF-8 (encoding/json would publish anything else altered, each
// bad byte as U+FFFD), without U+0000, which PostgreSQL's text types
// cannot store (its refusal, SQLSTATE 22021, failed the consumer's
// transaction on every attempt), and within the field's length.
func (f *field) checkText(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("not UTF-8 text")
	}
	if strings.IndexByte(s, 0) >= 0 {
		return errors.New("holds U+0000 (NUL), which no string of the contract may: PostgreSQL cannot store it in text")
	}
	// Fewer bytes than the bound are fewer characters too.
	if f.maxLen > 0 && len(s) > f.maxLen {
		if n := utf8.RuneCountInString(s); n > f.maxLen {
			return fmt.Errorf("%d characters, more than the %d allowed", n, f.maxLen)
		}
	}
	return nil
}

// checkLen checks a list's length n against the field's bound.
func (f *field) checkLen(n int) error {
	if n > f.maxItems {
		return fmt.Errorf("%d items, more than the %d allowed", n, f.maxItems)
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
