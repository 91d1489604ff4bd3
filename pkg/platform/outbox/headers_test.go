package outbox

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/segmentio/kafka-go"
)

// TestParseHeaders: the fast path and encoding/json read every shape the
// column can hold alike; what is not pairs of strings is an error.
func TestParseHeaders(t *testing.T) {
	tests := []struct {
		in   string
		want []kafka.Header
		bad  bool
	}{
		{in: `[]`, want: []kafka.Header{}},
		{in: ` [ ] `, want: []kafka.Header{}},
		{in: `[["ce_id", "0190"], ["content-type", "application/json"]]`,
			want: []kafka.Header{{Key: "ce_id", Value: []byte("0190")}, {Key: "content-type", Value: []byte("application/json")}}},
		{in: `[["a","x\"y"],["b","\u00e9\n"]]`, want: []kafka.Header{{Key: "a", Value: []byte(`x"y`)}, {Key: "b", Value: []byte("é\n")}}},
		{in: `[["a",""]]`, want: []kafka.Header{{Key: "a", Value: []byte{}}}},
		{in: `[["a","b","c"]]`, bad: true},
		{in: `[["a"]]`, bad: true},
		{in: `{"a":"b"}`, bad: true},
		{in: `[["a",1]]`, bad: true},
		{in: `[["a","b"]] x`, bad: true},
	}
	for _, tt := range tests {
		got, err := parseHeaders([]byte(tt.in))
		if tt.bad {
			if err == nil {
				t.Errorf("%s: parsed as %v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s = %q, %v; want %q", tt.in, got, err, tt.want)
		}
		// The slow path agrees.
		var pairs [][2]string
		if err := json.Unmarshal([]byte(tt.in), &pairs); err != nil || len(pairs) != len(tt.want) {
			t.Errorf("%s: encoding/json disagrees: %v %v", tt.in, pairs, err)
		}
	}
}
