package httpserver

import (
	"fmt"
	"strings"
	"testing"
)

func TestJSONShape(t *testing.T) {
	t.Parallel()
	body := `{"a":1,"items":[{"sku":"S","q":2},{"sku":"T","q":"x","tags":["p","q"]}],"z":{"y":null}}`
	at := func(s string) int64 { return int64(strings.Index(body, s) + len(s)) } // just after s
	for _, tc := range []struct {
		at   int64
		want string
	}{
		{0, ""},
		{at(`"a":1`), "a"},
		{at(`"q":"x"`), "items.1.q"},
		{at(`"q":2`), "items.0.q"},
		{at(`["p"`), "items.1.tags.0"},
		{at(`"p","q"`), "items.1.tags.1"},
		{at(`"p","q"]`), "items.1.tags"},
		{at(`"items":[`), "items"},
		{at(`"y":null`), "z.y"},
		{at(`"z":{`), "z"},
		{int64(len(body)), ""},
	} {
		if dup, got := jsonShape([]byte(body), tc.at, false); got != tc.want || dup != "" {
			t.Errorf("jsonShape at %d = %q, %q; want %q, no repeat", tc.at, dup, got, tc.want)
		}
	}
	for body, want := range map[string]string{
		`{"a":1,"a":2}`:                  "a",
		`{"a":{"b":1,"b":2}}`:            "a.b",
		`[{"k":1},{"k":1,"k":2}]`:        "1.k",
		`{"a":{"b":1},"c":{"b":2}}`:      "",
		`{"a":1,"\u0061":2}`:             "a", // the same key, escaped
		`{"a\"b":1,"a\u0022b":2}`:        "a\"b",
		` { "k" : [ 1 , { "k" : 1 } ] }`: "",
		`{"a":[{"b":1},{"b":2}],"c":[]}`: "",
	} {
		if dup, _ := jsonShape([]byte(body), 0, false); dup != want {
			t.Errorf("jsonShape(%s) repeat = %q, want %q", body, dup, want)
		}
	}
	// A struct's fields match keys without regard to case.
	for body, want := range map[string]string{`{"items":[{"sku":"a","SKU":"b"}]}`: "items.0.SKU", "{\"\u017fku\":1,\"sku\":2}": "sku"} {
		if dup, _ := jsonShape([]byte(body), 0, true); dup != want {
			t.Errorf("jsonShape(%s), folding, repeat = %q, want %q", body, dup, want)
		}
		if dup, _ := jsonShape([]byte(body), 0, false); dup != "" {
			t.Errorf("jsonShape(%s), not folding, repeat = %q, want none", body, dup)
		}
	}
	// Only the first value counts: what follows it (DecodeJSON refuses
	// it apart) neither panics nor names a path.
	for _, body := range []string{`{"a":"x"}]`, `"x"]`, `{"a":1}}`, `1 }`, `[1]] {"a":1,"a":2}`} {
		if dup, got := jsonShape([]byte(body), int64(len(body)), false); dup != "" || got != "" && got != "a" {
			t.Errorf("jsonShape(%s) at its end = %q, %q", body, dup, got)
		}
		if dup, _ := jsonShape([]byte(body), 0, false); dup != "" {
			t.Errorf("jsonShape(%s) repeat = %q, want none", body, dup)
		}
	}
}

// TestJSONShapeManyKeys: an object with many keys, where a repeat is
// found through the map that replaces the list past a few keys.
// BenchmarkJSONShape times it: each key costs a map look-up, not a
// comparison with every key before it (a 1 MiB body of distinct keys took
// 82 s that way).
func TestJSONShapeManyKeys(t *testing.T) {
	t.Parallel()
	body := manyKeys(100_000)
	dup, _ := jsonShape(body, 0, true)
	_, at := jsonShape(body, int64(len(`{"currency":1`)), false)
	if dup != "k7" || at != "currency" {
		t.Errorf("jsonShape over 200,000 keys = %q, %q; want the repeat k7 and the path currency", dup, at)
	}
}

// manyKeys is an object of 2n distinct keys (half of them escaped), then
// a repeat of k7.
func manyKeys(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"currency":1`)
	for i := range n {
		fmt.Fprintf(&b, `,"k%d":0,"\u006b%dx":0`, i, i)
	}
	b.WriteString(`,"k7":1}`)
	return []byte(b.String())
}

// BenchmarkJSONShape: an order's body, and a 4 MB object of 200,000
// keys (linear: about 0.1 s here; comparing each key with those before
// it took minutes).
func BenchmarkJSONShape(b *testing.B) {
	order := []byte(`{"customer_id":"load-abc","currency":"USD","items":[{"sku":"SKU-0001","quantity":2},{"sku":"SKU-0003","quantity":1}],"payment":{"card_token":"tok_visa"},"shipping_address":{"name":"Ada Lovelace","line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}}`)
	big := manyKeys(100_000)
	for name, body := range map[string][]byte{"order": order, "200k keys": big} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				jsonShape(body, 0, true)
			}
		})
	}
}
