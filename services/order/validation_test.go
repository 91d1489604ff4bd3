package order_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/shopflow/shopflow/pkg/events"
)

// TestBadInput: every bad request gets a 4xx problem+json naming the
// field, and nothing reaches the database.
func TestBadInput(t *testing.T) {
	t.Parallel()
	h := start(t, adminToken)
	h.putProduct("SKU-0001", 1999, "USD")
	h.putProduct("SKU-EUR", 1999, "EUR")

	with := func(change func(b map[string]any)) map[string]any {
		b := orderBody()
		change(b)
		return b
	}
	addr := func(field string, v any) map[string]any {
		return with(func(b map[string]any) { b["shipping_address"].(map[string]any)[field] = v })
	}
	items := func(n, qty int) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = map[string]any{"sku": fmt.Sprintf("SKU-%04d", i+1), "quantity": qty}
		}
		return out
	}
	tests := []struct {
		name   string
		method string
		path   string
		body   any
		status int
		field  string // in errors[].field, or "" to check only status and type
	}{
		{"malformed JSON", "POST", "/v1/orders", `{"customer_id": "c1",`, 400, ""},
		{"not an object", "POST", "/v1/orders", `[1,2]`, 400, ""},
		{"empty body", "POST", "/v1/orders", ``, 400, ""},
		{"unknown field", "POST", "/v1/orders", with(func(b map[string]any) { b["discount"] = 5 }), 400, "discount"},
		{"unknown field in a line", "POST", "/v1/orders", with(func(b map[string]any) {
			b["items"] = []any{map[string]any{"sku": "SKU-0001", "quantity": 1, "color": "red"}}
		}), 400, "items.0.color"},
		{"unknown field in the address", "POST", "/v1/orders", addr("state", "CA"), 400, "shipping_address.state"},
		{"name not UTF-8", "POST", "/v1/orders", "{\"customer_id\":\"c\",\"shipping_address\":{\"name\":\"Ada \xff\"}}", 400, "shipping_address.name"},
		{"name with half a surrogate pair", "POST", "/v1/orders", `{"customer_id":"c","shipping_address":{"name":"Ada \ud800"}}`, 400, "shipping_address.name"},
		{"wrong type", "POST", "/v1/orders", with(func(b map[string]any) { b["items"] = "SKU-0001" }), 400, "items"},
		{"missing customer", "POST", "/v1/orders", with(func(b map[string]any) { delete(b, "customer_id") }), 400, "customer_id"},
		{"blank customer", "POST", "/v1/orders", with(func(b map[string]any) { b["customer_id"] = " " }), 400, "customer_id"},
		{"no items", "POST", "/v1/orders", with(func(b map[string]any) { b["items"] = []any{} }), 400, "items"},
		{"101 items", "POST", "/v1/orders", with(func(b map[string]any) { b["items"] = items(101, 1) }), 400, "items"},
		{"quantity 0", "POST", "/v1/orders", with(func(b map[string]any) { b["items"] = items(1, 0) }), 400, "items.0.quantity"},
		{"quantity negative", "POST", "/v1/orders", with(func(b map[string]any) { b["items"] = items(1, -3) }), 400, "items.0.quantity"},
		{"quantity 1001", "POST", "/v1/orders", with(func(b map[string]any) { b["items"] = items(1, 1001) }), 400, "items.0.quantity"},
		{"quantity not a whole number", "POST", "/v1/orders", `{"customer_id":"c","currency":"USD","items":[{"sku":"SKU-0001","quantity":1}, {"sku":"SKU-0001","quantity":1.5}]}`, 400, "items.1.quantity"},
		{"repeated field", "POST", "/v1/orders", `{"customer_id":"c","currency":"USD","customer_id":"d"}`, 400, "customer_id"},
		{"unknown SKU", "POST", "/v1/orders", with(func(b map[string]any) { b["items"] = []any{map[string]any{"sku": "SKU-4040", "quantity": 1}} }), 400, "items.0.sku"},
		{"malformed SKU", "POST", "/v1/orders", with(func(b map[string]any) { b["items"] = []any{map[string]any{"sku": "sku 1", "quantity": 1}} }), 400, "items.0.sku"},
		{"repeated SKU", "POST", "/v1/orders", with(func(b map[string]any) { b["items"] = []any{items(1, 1)[0], items(1, 2)[0]} }), 400, "items.1.sku"},
		{"unsupported currency", "POST", "/v1/orders", with(func(b map[string]any) { b["currency"] = "JPY" }), 400, "currency"},
		{"malformed currency", "POST", "/v1/orders", with(func(b map[string]any) { b["currency"] = "usd" }), 400, "currency"},
		{"SKU sold in another currency", "POST", "/v1/orders", with(func(b map[string]any) { b["items"] = []any{map[string]any{"sku": "SKU-EUR", "quantity": 1}} }), 400, "items.0.sku"},
		{"missing card token", "POST", "/v1/orders", with(func(b map[string]any) { delete(b, "payment") }), 400, "payment.card_token"},
		{"bad card token", "POST", "/v1/orders", with(func(b map[string]any) { b["payment"] = map[string]any{"card_token": "4111111111111111"} }), 400, "payment.card_token"},
		{"missing address", "POST", "/v1/orders", with(func(b map[string]any) { delete(b, "shipping_address") }), 400, "shipping_address.name"},
		{"blank name", "POST", "/v1/orders", addr("name", ""), 400, "shipping_address.name"},
		{"control character in line1", "POST", "/v1/orders", addr("line1", "1 Main\x00St"), 400, "shipping_address.line1"},
		{"long city", "POST", "/v1/orders", addr("city", strings.Repeat("x", events.MaxAddressFieldLength+1)), 400, "shipping_address.city"},
		{"bad postal code", "POST", "/v1/orders", addr("postal_code", "12#45"), 400, "shipping_address.postal_code"},
		{"lower-case country", "POST", "/v1/orders", addr("country", "us"), 400, "shipping_address.country"},
		{"unknown country", "POST", "/v1/orders", addr("country", "XX"), 400, "shipping_address.country"},
		{"country the carrier does not serve", "POST", "/v1/orders", addr("country", "BR"), 400, "shipping_address.country"},
		{"name longer than a label line", "POST", "/v1/orders", addr("name", strings.Repeat("é", events.MaxAddressFieldLength+1)), 400, "shipping_address.name"},
		{"line1 longer than a label line", "POST", "/v1/orders", addr("line1", strings.Repeat("x", events.MaxAddressFieldLength+1)), 400, "shipping_address.line1"},
		{"line2 longer than a label line", "POST", "/v1/orders", addr("line2", strings.Repeat("x", events.MaxAddressFieldLength+1)), 400, "shipping_address.line2"},
		{"name in a script the label cannot print", "POST", "/v1/orders", addr("name", "山田太郎"), 400, "shipping_address.name"},
		{"city in a script the label cannot print", "POST", "/v1/orders", addr("city", "東京"), 400, "shipping_address.city"},
		{"no-break space in line2", "POST", "/v1/orders", addr("line2", "Flat\u00a02"), 400, "shipping_address.line2"},
		{"address not an object", "POST", "/v1/orders", with(func(b map[string]any) { b["shipping_address"] = "1 Main St" }), 400, "shipping_address"},
		{"body over 1 MiB", "POST", "/v1/orders", `{"customer_id":"` + strings.Repeat("x", 1<<20) + `"}`, 413, ""},
		{"unknown route", "GET", "/v1/nothing", nil, 404, ""},
		{"wrong method", "DELETE", "/v1/orders", nil, 405, ""},
		{"malformed order id", "GET", "/v1/orders/42", nil, 400, "id"},
		{"unknown order", "GET", "/v1/orders/0190f0f0-0000-7000-8000-000000000000", nil, 404, ""},
		{"product without price", "PUT", "/v1/products/SKU-0002", map[string]any{"name": "x", "currency": "USD"}, 400, "price_cents"},
		{"product with bad SKU", "PUT", "/v1/products/bad%20sku", map[string]any{"name": "x", "price_cents": 1, "currency": "USD"}, 400, "sku"},
		{"product in unsupported currency", "PUT", "/v1/products/SKU-0002", map[string]any{"name": "x", "price_cents": 1, "currency": "JPY"}, 400, "currency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.do(tt.method, tt.path, tt.body, "Authorization", "Bearer "+adminToken)
			if r.status != tt.status {
				t.Fatalf("%s %s = %d %s, want %d", tt.method, tt.path, r.status, r.body, tt.status)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type = %q, want application/problem+json", ct)
			}
			var p struct {
				Status int `json:"status"`
				Detail string
				Errors []struct{ Field, Message string }
			}
			if err := json.Unmarshal(r.body, &p); err != nil || p.Status != tt.status {
				t.Fatalf("body is not a problem with status %d: %s", tt.status, r.body)
			}
			if tt.field == "" {
				return
			}
			for _, e := range p.Errors {
				if e.Field == tt.field && e.Message != "" {
					return
				}
			}
			t.Errorf("problem does not name field %q: %s", tt.field, r.body)
		})
	}
	// An unknown field does not hide the others: one answer names them all
	// (it named only the unknown field, and the rest came one fix later).
	r := h.do("POST", "/v1/orders", with(func(b map[string]any) {
		b["extra"] = 1
		b["currency"] = "usd"
		b["items"] = items(1, 0)
		b["shipping_address"].(map[string]any)["country"] = "XX"
	}))
	var all struct{ Errors []struct{ Field string } }
	if err := json.Unmarshal(r.body, &all); r.status != http.StatusBadRequest || err != nil {
		t.Fatalf("several bad fields = %d %s, want 400", r.status, r.body)
	}
	var named []string
	for _, e := range all.Errors {
		named = append(named, e.Field)
	}
	for _, want := range []string{"extra", "currency", "items.0.quantity", "shipping_address.country"} {
		if !slices.Contains(named, want) {
			t.Errorf("several bad fields: errors name %v, want %s among them", named, want)
		}
	}
	// A + left unencoded in a query string is a space; the answer says so.
	if r := h.do("GET", "/v1/orders?customer_id=alice+shop@example.com", nil); r.status != http.StatusBadRequest ||
		!strings.Contains(string(r.body), "send it as %2B") {
		t.Errorf("customer_id=alice+shop@... = %d %s, want 400 saying to send + as %%2B", r.status, r.body)
	}
	// Unknown content type.
	r = h.do("POST", "/v1/orders", "customer_id=c1", "Content-Type", "application/x-www-form-urlencoded")
	if r.status != http.StatusUnsupportedMediaType {
		t.Errorf("form body = %d, want 415", r.status)
	}
	if n := h.countOrders(); n != 0 {
		t.Errorf("%d orders stored from bad requests, want 0", n)
	}
}

// TestAddressesTheCarrierTakes: every country the carrier serves, with
// every field a full label line, is accepted. With the refusals in
// TestBadInput, the API takes exactly what the shipping service ships
// (the OrderPlaced contract, pkg/events), so no order waits for good on
// an address shipping dead-letters.
func TestAddressesTheCarrierTakes(t *testing.T) {
	t.Parallel()
	h := start(t, adminToken)
	h.putProduct("SKU-0001", 1999, "USD")
	full := strings.Repeat("é", events.MaxAddressFieldLength)
	for _, c := range events.ShippingCountries() {
		b := orderBody()
		a := b["shipping_address"].(map[string]any)
		a["country"], a["name"], a["line1"], a["line2"], a["city"] = c, full, full, full, full
		if r := h.do("POST", "/v1/orders", b, "Idempotency-Key", "ship-to-"+c); r.status != http.StatusCreated {
			t.Errorf("an order to %s with full lines = %d %s, want 201", c, r.status, r.body)
		}
	}
	// An accent typed as a combining mark is the letter's own (the
	// address is stored composed, NFC); a mark no letter composes with
	// is refused, naming its code point.
	b := orderBody()
	b["shipping_address"].(map[string]any)["name"] = "Zoe\u0308 Lukasiewicz"
	r := h.do("POST", "/v1/orders", b, "Idempotency-Key", "decomposed")
	if r.status != http.StatusCreated {
		t.Fatalf("an order to a name with a combining diaeresis = %d %s, want 201", r.status, r.body)
	}
	if got := r.json(t)["shipping_address"].(map[string]any)["name"]; got != "Zo\u00eb Lukasiewicz" {
		t.Errorf("stored name %q, want the composed \"Zo\u00eb Lukasiewicz\"", got)
	}
	b["shipping_address"].(map[string]any)["name"] = "Iq\u0308bal"
	if r := h.do("POST", "/v1/orders", b, "Idempotency-Key", "uncomposable"); r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "U+0308") {
		t.Errorf("a name with a mark that composes with nothing = %d %s, want 400 naming U+0308", r.status, r.body)
	}
	// The letters of the countries it serves (and Greek and Cyrillic)
	// are all on the label.
	for i, name := range []string{"Zoë Müller-Łukasiewicz", "Łódź, ul. Świętokrzyska 12", "Dvořák, Plzeň", "Øster Allé 5, Århus",
		"Ștefan cel Mare, Iași", "Αθήνα", "Москва, ул. Тверская"} {
		b := orderBody()
		b["shipping_address"].(map[string]any)["name"] = name
		if r := h.do("POST", "/v1/orders", b, "Idempotency-Key", fmt.Sprint("letters-", i)); r.status != http.StatusCreated {
			t.Errorf("an order to %q = %d %s, want 201", name, r.status, r.body)
		}
	}
}
