package testenv

import (
	"net"
	"strconv"
	"testing"
)

// TestFreeAddr: distinct loopback ports below the kernel's ephemeral
// range (so no connection's source port and no ":0" server takes one),
// each free to listen on.
func TestFreeAddr(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 50 {
		addr := FreeAddr(t)
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host != "127.0.0.1" {
			t.Fatalf("FreeAddr = %q (%v), want a 127.0.0.1 address", addr, err)
		}
		if n, _ := strconv.Atoi(port); n < 20000 || n >= ephemeralStart() {
			t.Errorf("FreeAddr = %s, want a port in 20000..%d", addr, ephemeralStart()-1)
		}
		if seen[addr] {
			t.Errorf("FreeAddr gave %s twice", addr)
		}
		seen[addr] = true
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("listen on %s: %v", addr, err)
		}
		l.Close()
	}
}
