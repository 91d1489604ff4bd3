// Package config reads a service's configuration from the environment into
// a typed struct, once, at start-up.
//
// A service declares its configuration as a struct that embeds Common (the
// settings every service shares) and adds its own fields, each tagged with
// the variable it comes from (github.com/caarlos0/env/v11 tags: `env`,
// `envDefault`, `envSeparator`, `envKeyValSeparator`, `envPrefix`; and
// `format`, which says what a value looks like in the message about a
// value that does not parse, where the type alone would not):
//
//	type Config struct {
//		config.Common
//		CaptureDelay time.Duration `env:"PAYMENT_CAPTURE_DELAY" envDefault:"0s"`
//		APIKey       string        `env:"PAYMENT_API_KEY" secret:"true"`
//	}
//
//	cfg, err := config.Load[Config](config.WithDefault("HTTP_ADDR", ":8081"))
//
// Load reports every problem at once (errors.Join), one per variable, and
// each names the variable ("config: HTTP_ADDR: \"abc\" is not host:port"),
// so a misconfigured deployment is fixed in one round. After parsing, Load
// calls Validate on every struct in the configuration that has one (Common's
// included, so a service that adds its own Validate cannot forget the shared
// checks).
//
// Redacted gives a loggable view of a loaded configuration with secrets
// masked, for the customary "starting with config ..." line.
package config

import (
	"cmp"
	"encoding"
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/shopflow/shopflow/pkg/platform/kafkasec"
)

// VarError is a problem with one environment variable. Load returns them
// (joined); a Validate method may return them too, so its messages read
// like the rest.
type VarError struct {
	// Var is the variable's name, e.g. "HTTP_ADDR".
	Var string
	// Err says what is wrong with it.
	Err error
}

// Error reads "config: VAR: problem".
func (e *VarError) Error() string { return "config: " + e.Var + ": " + e.Err.Error() }

// Unwrap returns the underlying problem.
func (e *VarError) Unwrap() error { return e.Err }

// errMissing is what an unset (or empty) required variable reports.
var errMissing = errors.New("missing")

// Option adjusts how Load reads the environment.
type Option func(*options)

type options struct {
	environ  map[string]string
	defaults map[string]string
}

// WithEnvironment makes Load read variables from m instead of the process
// environment (for tests and in-process runs).
func WithEnvironment(m map[string]string) Option {
	return func(o *options) { o.environ = m }
}

// WithDefault supplies a default for the variable name, used when it is
// unset or empty. It takes precedence over an `envDefault` tag, so each
// service can give a shared field its own default (Common.HTTPAddr has none:
// the order service passes WithDefault("HTTP_ADDR", ":8080"), payment
// ":8081", and so on).
func WithDefault(name, value string) Option {
	return func(o *options) {
		if o.defaults == nil {
			o.defaults = map[string]string{}
		}
		o.defaults[name] = value
	}
}

// validator is what Load looks for on the configuration and its nested
// structs.
type validator interface {
	Validate() error
}

// Load reads T, a struct type, from the environment: the process's (or the
// one given by WithEnvironment), with the defaults of WithDefault and the
// `envDefault` tags filling unset or empty variables. Then it calls
// Validate() error on every nested struct that has one and on T itself,
// innermost first.
//
// On failure it returns the zero T and every problem joined, at most one
// per variable (a value that does not parse is not also reported by
// Validate), in declaration order.
func Load[T any](opts ...Option) (T, error) {
	var cfg, zero T
	rv := reflect.ValueOf(&cfg).Elem()
	if rv.Kind() != reflect.Struct {
		return zero, fmt.Errorf("config: %T is not a struct", zero)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	environ := o.environ
	if environ == nil {
		environ = env.ToMap(os.Environ())
	}
	environ = withDefaults(environ, o.defaults)

	fields := fieldsOf(rv.Type(), "")
	var errs []error
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: environ}); err != nil {
		errs = append(errs, translate(err, fields, environ)...)
	}
	errs = append(errs, validate(rv)...)
	if err := tidy(errs, fields); err != nil {
		return zero, err
	}
	return cfg, nil
}

// withDefaults returns a copy of environ with defaults filling unset or
// empty variables.
func withDefaults(environ, defaults map[string]string) map[string]string {
	out := make(map[string]string, len(environ)+len(defaults))
	maps.Copy(out, environ)
	for k, v := range defaults {
		if out[k] == "" {
			out[k] = v
		}
	}
	return out
}

// field is one variable-backed field of a configuration struct.
type field struct {
	name   string // Go field name, as env's errors report it
	typ    reflect.Type
	key    string // variable name
	def    string // envDefault
	format string // what a value looks like, for messages
	secret bool
}

// fieldsOf lists the variable-backed fields of t in declaration order,
// following env's rules for nested structs and `envPrefix`.
func fieldsOf(t reflect.Type, prefix string) []field {
	var out []field
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		key, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if key == "-" {
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if key == "" && ft.Kind() == reflect.Struct && !isTextUnmarshaler(ft) {
			out = append(out, fieldsOf(ft, prefix+f.Tag.Get("envPrefix"))...)
			continue
		}
		if key == "" {
			continue
		}
		out = append(out, field{
			name:   f.Name,
			typ:    f.Type,
			key:    prefix + key,
			def:    f.Tag.Get("envDefault"),
			format: format(f),
			secret: f.Tag.Get("secret") == "true",
		})
	}
	return out
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

func isTextUnmarshaler(t reflect.Type) bool {
	return reflect.PointerTo(t).Implements(textUnmarshaler)
}

// translate turns env's errors into VarErrors naming the variable.
func translate(err error, fields []field, environ map[string]string) []error {
	var out []error
	for _, e := range leaves(err) {
		var (
			parse    env.ParseError
			notSet   env.VarIsNotSetError
			empty    env.EmptyVarError
			loadFile env.LoadFileContentError
		)
		switch {
		case errors.As(e, &parse):
			f, ok := fieldNamed(fields, parse.Name, parse.Type)
			if !ok {
				out = append(out, fmt.Errorf("config: field %s: %w", parse.Name, parse.Err))
				continue
			}
			raw := environ[f.key]
			if raw == "" {
				raw = f.def
			}
			shown := fmt.Sprintf("%q", raw)
			if f.secret {
				shown = "the value"
			}
			if lo, hi, ok := intRange(f.typ); ok && errors.Is(parse.Err, strconv.ErrRange) {
				// A whole number too large for the field is a number all
				// the same: "not a valid integer" sent people looking for a typo.
				out = append(out, &VarError{Var: f.key, Err: fmt.Errorf("%s is out of range (%d..%d)", shown, lo, hi)})
				continue
			}
			out = append(out, &VarError{Var: f.key, Err: fmt.Errorf("%s is not a valid %s", shown, f.format)})
		case errors.As(e, &notSet):
			out = append(out, &VarError{Var: notSet.Key, Err: errMissing})
		case errors.As(e, &empty):
			out = append(out, &VarError{Var: empty.Key, Err: errMissing})
		case errors.As(e, &loadFile):
			out = append(out, &VarError{Var: loadFile.Key, Err: fmt.Errorf("cannot read file %q: %w", loadFile.Filename, loadFile.Err)})
		default:
			out = append(out, fmt.Errorf("config: %w", e))
		}
	}
	return out
}

// intRange gives the values a signed or unsigned integer type holds; false
// for other types (and for uint64, whose top does not fit an int64).
func intRange(t reflect.Type) (lo, hi int64, ok bool) {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		bits := t.Bits()
		return -1 << (bits - 1), 1<<(bits-1) - 1, true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32:
		if t.Bits() < 64 {
			return 0, 1<<t.Bits() - 1, true
		}
	}
	return 0, 0, false
}

// fieldNamed finds the one field env's error is about; env reports only
// the Go field name and type, so an ambiguous match is not guessed.
func fieldNamed(fields []field, name string, typ reflect.Type) (field, bool) {
	var found []field
	for _, f := range fields {
		if f.name == name && f.typ == typ {
			found = append(found, f)
		}
	}
	if len(found) != 1 {
		return field{}, false
	}
	return found[0], true
}

// format says what a value of field f should look like: its `format` tag
// when it has one (a map of URLs is more than "key=value pairs"), else
// what its type and separators ask for.
func format(f reflect.StructField) string {
	if s := f.Tag.Get("format"); s != "" {
		return s
	}
	if f.Type.Kind() == reflect.Map {
		// env's defaults when the tags are absent.
		sep, kv := cmp.Or(f.Tag.Get("envSeparator"), ","), cmp.Or(f.Tag.Get("envKeyValSeparator"), ":")
		return fmt.Sprintf("list of key%svalue pairs separated by %q", kv, sep)
	}
	return describe(f.Type)
}

// describe names what a value of type t should look like.
func describe(t reflect.Type) string {
	if t == reflect.TypeFor[time.Duration]() {
		return "duration (like 20s or 1m30s)"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return describe(t.Elem())
	case reflect.Bool:
		return "boolean (true or false)"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice:
		return "comma-separated list of " + describe(t.Elem()) + " values"
	}
	return t.String()
}

// validate calls Validate on the nested structs of v that have one, then
// on v itself.
func validate(v reflect.Value) []error {
	var errs []error
	t := v.Type()
	for i := range t.NumField() {
		if !t.Field(i).IsExported() {
			continue
		}
		fv := v.Field(i)
		if fv.Kind() == reflect.Pointer {
			if fv.IsNil() {
				continue
			}
			fv = fv.Elem()
		}
		if fv.Kind() == reflect.Struct {
			errs = append(errs, validate(fv)...)
		}
	}
	if v.CanAddr() {
		if val, ok := v.Addr().Interface().(validator); ok {
			if err := val.Validate(); err != nil {
				for _, e := range leaves(err) {
					// kafkasec cannot use VarError (config imports it);
					// its errors have the same shape.
					var kv *kafkasec.VarError
					if errors.As(e, &kv) {
						e = &VarError{Var: kv.Var, Err: kv.Err}
					}
					errs = append(errs, e)
				}
			}
		}
	}
	return errs
}

// leaves flattens joined errors (errors.Join, env's AggregateError).
func leaves(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leaves(e)...)
		}
		return out
	}
	return []error{err}
}

// tidy keeps the first problem per variable (a Validate promoted from an
// embedded struct runs twice, and a value that failed to parse would also
// fail validation as a zero), drops repeated messages, orders problems as
// the variables are declared and joins them.
func tidy(errs []error, fields []field) error {
	type entry struct {
		err error
		pos int
	}
	pos := map[string]int{}
	for i, f := range fields {
		if _, ok := pos[f.key]; !ok {
			pos[f.key] = i
		}
	}
	var kept []entry
	seenVar := map[string]bool{}
	seenMsg := map[string]bool{}
	for _, e := range errs {
		p := len(fields)
		var ve *VarError
		if errors.As(e, &ve) {
			if seenVar[ve.Var] {
				continue
			}
			seenVar[ve.Var] = true
			if i, ok := pos[ve.Var]; ok {
				p = i
			}
		} else if !strings.HasPrefix(e.Error(), "config: ") {
			e = fmt.Errorf("config: %w", e)
		}
		if seenMsg[e.Error()] {
			continue
		}
		seenMsg[e.Error()] = true
		kept = append(kept, entry{err: e, pos: p})
	}
	slices.SortStableFunc(kept, func(a, b entry) int { return cmp.Compare(a.pos, b.pos) })
	out := make([]error, len(kept))
	for i, k := range kept {
		out[i] = k.err
	}
	return errors.Join(out...)
}
