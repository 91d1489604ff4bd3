package httpserver

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"
)

// Every code point written as a \u escape (a pair above U+FFFF) is text;
// every half of a pair written alone is not, wherever it stands.
func TestBadTextEscapes(t *testing.T) {
	for r := rune(0); r <= 0x10FFFF; r++ {
		var esc string
		switch {
		case r >= 0xD800 && r < 0xE000:
			body := fmt.Sprintf(`{"a":"x\u%04x"}`, r)
			if off, _ := badText([]byte(body)); off != 7 {
				t.Fatalf("%s: offset %d, want 7", body, off)
			}
			continue
		case r > 0xFFFF:
			hi, lo := utf16.EncodeRune(r)
			esc = fmt.Sprintf(`\u%04X\u%04x`, hi, lo)
		default:
			esc = fmt.Sprintf(`\u%04x`, r)
		}
		if off, what := badText([]byte(`["` + esc + `"]`)); off >= 0 {
			t.Fatalf("%U as %s: %d %s", r, esc, off, what)
		}
	}
	for body, want := range map[string]int{
		`"\\ud800"`:              -1, // an escaped backslash, then letters
		`"\\\ud800"`:             3,
		`"\ud83d\u0041"`:         1, // a high half before something else
		`"\ud83d"`:               1,
		"\"caf\xc3\xa9\"":        -1,
		"\"caf\xc3\"":            4,
		"\"\xed\xa0\x80\"":       1, // a surrogate in UTF-8 is no UTF-8
		`{"k\ud800":1}`:          3, // keys too
		"\"\xf0\x9f\x98\x80\"":   -1,
		`"\"\ud83d\ude00\"" `:    -1,
		`["a","\n\t\u00e9\\"]`:   -1,
		"\"\xf4\x90\x80\x80\"":   1, // above U+10FFFF
		"\"\xc0\xaf\"":           1, // overlong
		`"\/\b\f\r\ud83d\udfff"`: -1,
	} {
		if off, what := badText([]byte(body)); off != want {
			t.Errorf("%q: offset %d (%s), want %d", body, off, what, want)
		}
	}
}

func TestUnknownFields(t *testing.T) {
	type line struct {
		SKU      string `json:"sku"`
		Quantity int    `json:"quantity"`
	}
	type Meta struct {
		Note string `json:"note"`
	}
	type req struct {
		Meta
		Items   []line          `json:"items"`
		Labels  map[string]line `json:"labels"`
		Skip    string          `json:"-"`
		Dash    string          `json:"-,"`
		Plain   string
		Raw     []byte           `json:"raw"`
		Nested  *struct{ A int } `json:"nested"`
		private string
	}
	_ = req{}.private
	body := `{"note":"n","NOTE":"m","items":[{"SKU":"a","qty":1},{"sku":"b"}],"labels":{"x":{"sku":"c","colour":1}},` +
		`"Skip":1,"-":"d","plain":"e","raw":"AAE=","nested":{"a":1,"b":2},"private":3,"extra":{"deep":[1]}}`
	got := unknownFields([]byte(body), reflect.TypeFor[*req]())
	want := []string{"items.0.qty", "labels.x.colour", "Skip", "nested.b", "private", "extra"}
	if !slices.Equal(got, want) {
		t.Errorf("unknownFields = %q, want %q", got, want)
	}
}

// A body of many values costs no more than maxVisits of them: a 1 MiB
// array of empty objects took some 350,000 decoders.
func TestUnknownFieldsIsBounded(t *testing.T) {
	type line struct {
		SKU string `json:"sku"`
	}
	type req struct {
		Items []line `json:"items"`
	}
	body := []byte(`{"x":1,"items":[{}` + strings.Repeat(`,{}`, 300_000) + `]}`)
	var got []string
	allocs := testing.AllocsPerRun(1, func() { got = unknownFields(body, reflect.TypeFor[req]()) })
	if !slices.Equal(got, []string{"x"}) {
		t.Errorf("unknownFields = %q, want [x]", got)
	}
	if allocs > 20*maxVisits {
		t.Errorf("%.0f allocations for a body of 300,000 values, want at most %d (%d values looked at)", allocs, 20*maxVisits, maxVisits)
	}
}

// So does an object of many keys.
func TestUnknownFieldsIsBoundedInKeys(t *testing.T) {
	type req struct {
		SKU string `json:"sku"`
	}
	body := []byte(`{` + strings.Repeat(`"sku":"a",`, 100_000) + `"x":1}`)
	allocs := testing.AllocsPerRun(1, func() { unknownFields(body, reflect.TypeFor[req]()) })
	if allocs > 20*maxVisits {
		t.Errorf("%.0f allocations for an object of 100,000 keys, want at most %d", allocs, 20*maxVisits)
	}
}
