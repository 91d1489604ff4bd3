package suite

import "testing"

// TestLoopbackHosts: a service the suite runs on loopback only answers
// for loopback's names alone (and the address it listens on); on any
// other address, for every name, which the suite cannot know.
func TestLoopbackHosts(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]string{
		"127.0.0.1:8080":    "localhost,127.0.0.1,::1",
		"localhost:0":       "localhost,127.0.0.1,::1",
		"[::1]:8080":        "localhost,127.0.0.1,::1",
		"[::1%lo]:8080":     "localhost,127.0.0.1,::1",
		"127.0.0.2:8080":    "localhost,127.0.0.1,::1,127.0.0.2",
		":8080":             "",
		"0.0.0.0:8080":      "",
		"[::]:8080":         "",
		"192.0.2.7:8080":    "",
		"shop.example:8080": "",
		"garbage":           "",
	} {
		if got := LoopbackHosts(addr); got != want {
			t.Errorf("LoopbackHosts(%q) = %q; want %q", addr, got, want)
		}
	}
}
