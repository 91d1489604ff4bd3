package config

import (
	"cmp"
	"reflect"
)

// Variable is one environment variable a configuration reads, as a usage
// message lists it.
type Variable struct {
	// Name is the variable, e.g. "HTTP_ADDR".
	Name string
	// Default is the value Load uses when it is unset or empty ("" when
	// there is none).
	Default string
}

// Variables lists the variables T reads, in declaration order, with the
// defaults Load would use given the same options (WithDefault's over the
// `envDefault` tags).
func Variables[T any](opts ...Option) []Variable {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	t := reflect.TypeFor[T]()
	if t.Kind() != reflect.Struct {
		return nil
	}
	var out []Variable
	for _, f := range fieldsOf(t, "") {
		out = append(out, Variable{Name: f.key, Default: cmp.Or(o.defaults[f.key], f.def)})
	}
	return out
}
