package httpserver

import (
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
		if dup, got := jsonShape([]byte(body), tc.at); got != tc.want || dup != "" {
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
		if dup, _ := jsonShape([]byte(body), 0); dup != want {
			t.Errorf("jsonShape(%s) repeat = %q, want %q", body, dup, want)
		}
	}
}
