// Package hostlist is the host allow-list of the HTTP servers
// (HTTP_ALLOWED_HOSTS, httpserver.Config.AllowedHosts): which entries it
// takes (Check, for the configuration) and which request hosts they let
// through (List, for the server), in one place so the two agree.
//
// An entry is a host name (localhost, shop.example.com), an IP address
// (127.0.0.1, ::1 or [::1]) or a wildcard for the names under one
// (*.example.com, which is not example.com itself), case-insensitive and
// without a port: every port is allowed.
package hostlist

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// List is a set of entries ready to match.
type List struct {
	names    map[string]bool // canonical's form
	suffixes []string        // ".example.com" for *.example.com
}

// New makes entries (Check's form; others never match) a List; none is
// nil, which allows every host.
func New(entries []string) *List {
	if len(entries) == 0 {
		return nil
	}
	l := &List{names: map[string]bool{}}
	for _, e := range entries {
		if rest, ok := strings.CutPrefix(e, "*."); ok {
			l.suffixes = append(l.suffixes, "."+canonical(rest))
			continue
		}
		l.names[canonical(e)] = true
	}
	return l
}

// Allows reports whether l lets a request for host through: a request's
// Host, whose port, case, trailing dot and IPv6 brackets and form do not
// matter. A nil List allows every host; an empty host (an HTTP/1.0
// request without one) none but that.
func (l *List) Allows(host string) bool {
	if l == nil {
		return true
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = canonical(host)
	if l.names[host] {
		return true
	}
	for _, s := range l.suffixes {
		if len(host) > len(s) && strings.HasSuffix(host, s) {
			return true
		}
	}
	return false
}

// canonical is a host name or address as List compares them: in lower
// case, without the brackets of an IPv6 address or a trailing dot, an
// address in its standard form ("::1" for "0:0:0:0:0:0:0:1").
func canonical(h string) string {
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if ip, err := netip.ParseAddr(h); err == nil {
		return ip.WithZone("").String()
	}
	return h
}

// Check reports why entry cannot be in a List.
func Check(entry string) error {
	name, wildcard := strings.CutPrefix(entry, "*.")
	switch {
	case entry == "*":
		return errors.New(`"*" alone: leave the list empty to allow every host`)
	case strings.Contains(name, "*"):
		return fmt.Errorf("%q: a wildcard is a whole first label, as in *.example.com", entry)
	case strings.Contains(entry, "/"):
		return fmt.Errorf("%q is not a host name: leave out the scheme and the path", entry)
	}
	if !wildcard {
		addr := strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")
		if ip, err := netip.ParseAddr(addr); err == nil && ip.Zone() == "" {
			return nil
		}
	}
	if _, port, err := net.SplitHostPort(name); err == nil {
		return fmt.Errorf("%q has a port (%s): list the host alone; every port is allowed", entry, port)
	}
	if !hostName(name) {
		return fmt.Errorf("%q is not a host name or an IP address", entry)
	}
	return nil
}

// hostName reports whether s is a DNS name: dot-separated labels of 1 to
// 63 letters, digits, hyphens and underscores (Docker's service names
// have them), at most 253 characters, a trailing dot allowed.
func hostName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
