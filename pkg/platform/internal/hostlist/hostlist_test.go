package hostlist

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		entry, want string // want: "" for valid, else part of the error
	}{
		{"localhost", ""},
		{"127.0.0.1", ""},
		{"::1", ""},
		{"[::1]", ""},
		{"Shop.Example.COM", ""},
		{"shop.example.com.", ""},
		{"*.example.com", ""},
		{"order_svc", ""},
		{"*", "leave the list empty to allow every host"},
		{"*example.com", "a wildcard is a whole first label"},
		{"a.*.example.com", "a wildcard is a whole first label"},
		{"*.*.example.com", "a wildcard is a whole first label"},
		{"localhost:8080", `"localhost:8080" has a port (8080): list the host alone`},
		{"[::1]:8080", `"[::1]:8080" has a port (8080)`},
		{"http://localhost", "leave out the scheme and the path"},
		{"shop example.com", "is not a host name or an IP address"},
		{"fe80::1%eth0", "is not a host name or an IP address"},
		{"*.[::1]", "is not a host name or an IP address"},
		{"a..example.com", "is not a host name or an IP address"},
		{strings.Repeat("a", 64) + ".example.com", "is not a host name or an IP address"},
	} {
		err := Check(c.entry)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("Check(%q) = %v; want %q", c.entry, err, c.want)
		}
	}
}

// TestAllows: a request's Host matches an entry whatever its port, case,
// trailing dot, and an IPv6 address's brackets and form; a wildcard
// matches the names under its suffix, not the suffix itself.
func TestAllows(t *testing.T) {
	t.Parallel()
	l := New([]string{"localhost", "127.0.0.1", "[::1]", "*.Example.com"})
	for host, want := range map[string]bool{
		"localhost:8080":         true,
		"LocalHost":              true,
		"localhost.:8080":        true,
		"127.0.0.1:18200":        true,
		"[::1]:8080":             true,
		"[0:0:0:0:0:0:0:1]":      true,
		"shop.example.com":       true,
		"a.b.EXAMPLE.com:443":    true,
		"evil.example:8080":      false,
		"example.com":            false,
		"badexample.com":         false,
		"localhost.evil.example": false,
		"127.0.0.2:8080":         false,
		"[::2]:8080":             false,
		"":                       false,
	} {
		if got := l.Allows(host); got != want {
			t.Errorf("Allows(%q) = %t; want %t", host, got, want)
		}
	}
	if !New(nil).Allows("evil.example") {
		t.Error("an empty list refuses a host; want every host allowed")
	}
}
