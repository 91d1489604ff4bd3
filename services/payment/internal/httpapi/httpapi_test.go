package httpapi

import (
	"strings"
	"testing"
)

func TestCheckOrderID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id string
		ok bool
	}{
		{"01a211f5-4f48-7c0d-916c-8edd52dce103", true},
		{"order-42", true},
		{strings.Repeat("x", maxOrderIDLen), true},
		{strings.Repeat("x", maxOrderIDLen+1), false},
		{"", false},
		{" ", false},
		{"a\tb", false},
		{"a\x00b", false},
		{"\xff", false},
	}
	for _, tt := range tests {
		if msg := checkOrderID(tt.id); (msg == "") != tt.ok {
			t.Errorf("checkOrderID(%q) = %q, want ok %v", tt.id, msg, tt.ok)
		}
	}
}
