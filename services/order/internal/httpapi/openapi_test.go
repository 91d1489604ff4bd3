package httpapi

import (
	"net/http"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"go.yaml.in/yaml/v3"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/httpserver"
	"github.com/shopflow/shopflow/services/order/internal/order"
)

func loadSpec(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile("../../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := yaml.Unmarshal(b, &spec); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if spec["openapi"] != "3.1.0" {
		t.Fatalf("openapi = %v, want 3.1.0", spec["openapi"])
	}
	return spec
}

// TestOpenAPIRoutes: the document describes exactly the routes served.
func TestOpenAPIRoutes(t *testing.T) {
	spec := loadSpec(t)
	var documented []string
	for path, ops := range spec["paths"].(map[string]any) {
		for method := range ops.(map[string]any) {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	r := chi.NewRouter()
	New(nil, "", nil, 0).Routes(r)
	served := []string{"GET /healthz", "GET /readyz", "GET /metrics"} // the platform's
	err := chi.Walk(r, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		served = append(served, method+" "+strings.TrimSuffix(route, "/"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(documented)
	sort.Strings(served)
	if !slices.Equal(documented, served) {
		t.Errorf("documented routes\n  %v\nserved routes\n  %v", documented, served)
	}
}

// TestOpenAPISchemas: each schema has the properties of its Go type, with
// matching JSON types, and requires the ones that are always present.
func TestOpenAPISchemas(t *testing.T) {
	spec := loadSpec(t)
	schemas := spec["components"].(map[string]any)["schemas"].(map[string]any)
	types := map[string]reflect.Type{
		"PlaceOrderRequest": reflect.TypeFor[PlaceOrderRequest](),
		"ItemRequest":       reflect.TypeFor[ItemRequest](),
		"PaymentMethod":     reflect.TypeFor[PaymentMethod](),
		"Address":           reflect.TypeFor[order.Address](),
		"Order":             reflect.TypeFor[Order](),
		"Line":              reflect.TypeFor[Line](),
		"Steps":             reflect.TypeFor[Steps](),
		"OrderList":         reflect.TypeFor[OrderList](),
		"KeyPlacement":      reflect.TypeFor[KeyPlacement](),
		"Product":           reflect.TypeFor[Product](),
		"ProductList":       reflect.TypeFor[ProductList](),
		"PutProductRequest": reflect.TypeFor[PutProductRequest](),
		"Problem":           reflect.TypeFor[httpserver.Problem](),
		"FieldError":        reflect.TypeFor[httpserver.FieldError](),
	}
	// Members added outside the struct: the request id extension, and
	// those of a total-changed refusal.
	extra := map[string][]string{"Problem": {"request_id", "total_cents", "expected_total_cents", "currency"}}
	byType := map[reflect.Type]string{}
	for name, typ := range types {
		byType[typ] = name
	}
	for name, typ := range types {
		s, ok := schemas[name].(map[string]any)
		if !ok {
			t.Errorf("schema %s missing", name)
			continue
		}
		props, _ := s["properties"].(map[string]any)
		var required []string
		for _, r := range asList(s["required"]) {
			required = append(required, r.(string))
		}
		var wantProps, wantRequired []string
		for i := range typ.NumField() {
			f := typ.Field(i)
			tag := f.Tag.Get("json")
			jname, opts, _ := strings.Cut(tag, ",")
			if jname == "-" || !f.IsExported() {
				continue
			}
			wantProps = append(wantProps, jname)
			if !strings.Contains(opts, "omitempty") {
				wantRequired = append(wantRequired, jname)
			}
			p, ok := props[jname].(map[string]any)
			if !ok {
				continue // reported below
			}
			ft := f.Type
			if ft.Kind() == reflect.Pointer && strings.Contains(opts, "omitempty") {
				ft = ft.Elem() // optional, never null
			}
			if msg := checkType(ft, p, schemas, byType); msg != "" {
				t.Errorf("%s.%s: %s", name, jname, msg)
			}
		}
		wantProps = append(wantProps, extra[name]...)
		var gotProps []string
		for p := range props {
			gotProps = append(gotProps, p)
		}
		sort.Strings(gotProps)
		sort.Strings(wantProps)
		sort.Strings(required)
		sort.Strings(wantRequired)
		if !slices.Equal(gotProps, wantProps) {
			t.Errorf("%s properties = %v, Go type has %v", name, gotProps, wantProps)
		}
		if !slices.Equal(required, wantRequired) {
			t.Errorf("%s required = %v, Go type always has %v", name, required, wantRequired)
		}
	}
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// checkType compares a Go field type with a property schema.
func checkType(typ reflect.Type, p map[string]any, schemas map[string]any, byType map[reflect.Type]string) string {
	nullable := false
	if typ.Kind() == reflect.Pointer {
		typ, nullable = typ.Elem(), true
	}
	if ref, ok := p["$ref"].(string); ok {
		name := strings.TrimPrefix(ref, "#/components/schemas/")
		if byType[typ] == name {
			return ""
		}
		// A named enum of strings (Status) stands for a string type.
		if s, ok := schemas[name].(map[string]any); ok && s["type"] == "string" && typ.Kind() == reflect.String {
			return ""
		}
		return "refers to " + name + ", Go type is " + typ.String()
	}
	var types []string
	switch v := p["type"].(type) {
	case string:
		types = []string{v}
	case []any:
		for _, x := range v {
			types = append(types, x.(string))
		}
	}
	if slices.Contains(types, "null") != nullable {
		return "nullability differs from the Go type " + typ.String()
	}
	want := ""
	switch {
	case typ == reflect.TypeFor[time.Time]():
		want = "string"
	case typ.Kind() == reflect.String:
		want = "string"
	case typ.Kind() == reflect.Bool:
		want = "boolean"
	case typ.Kind() >= reflect.Int && typ.Kind() <= reflect.Uint64:
		want = "integer"
	case typ.Kind() == reflect.Slice:
		want = "array"
		if items, ok := p["items"].(map[string]any); ok {
			if msg := checkType(typ.Elem(), items, schemas, byType); msg != "" {
				return "items: " + msg
			}
		} else {
			return "array without items"
		}
	case typ.Kind() == reflect.Struct:
		return "a struct should be a $ref to its schema"
	}
	if !slices.Contains(types, want) {
		return "type " + strings.Join(types, "|") + ", Go type " + typ.String() + " wants " + want
	}
	return ""
}

// TestOpenAPIAddress: the document's address limits are the contract's
// (pkg/events), which validation applies.
func TestOpenAPIAddress(t *testing.T) {
	spec := loadSpec(t)
	props := spec["components"].(map[string]any)["schemas"].(map[string]any)["Address"].(map[string]any)["properties"].(map[string]any)
	for _, f := range []string{"name", "line1", "line2", "city"} {
		if got := props[f].(map[string]any)["maxLength"]; got != events.MaxAddressFieldLength {
			t.Errorf("Address.%s maxLength = %v, want %d", f, got, events.MaxAddressFieldLength)
		}
	}
	var enum []string
	for _, c := range props["country"].(map[string]any)["enum"].([]any) {
		enum = append(enum, c.(string))
	}
	if want := events.ShippingCountries(); !slices.Equal(enum, want) {
		t.Errorf("Address.country enum = %v, want the countries orders ship to, %v", enum, want)
	}
}
