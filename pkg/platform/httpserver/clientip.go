package httpserver

import (
	"net/http"
	"net/netip"

	"github.com/go-chi/chi/v5/middleware"
)

// ClientIP is the client's address as the server determined it for r
// (the TCP peer, or X-Forwarded-For when the peer is a trusted proxy:
// Config.TrustedProxies), as the access log's client_ip shows it; the
// zero Addr when it is unknown (a trusted proxy's X-Forwarded-For that
// does not parse). An IPv4 address mapped into IPv6 is given as IPv4.
func ClientIP(r *http.Request) netip.Addr {
	return middleware.GetClientIPAddr(r.Context()).Unmap()
}

// ClientPrefix is the network a per-client limit counts r's client by:
// its address (ClientIP), or for IPv6 its /64, which one host, or one
// home, gets whole (counted by address, it could take a fresh one for
// every request). The zero Addr (unknown) is one network of its own.
func ClientPrefix(r *http.Request) netip.Prefix {
	ip := ClientIP(r)
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p
	}
	return netip.PrefixFrom(ip, ip.BitLen())
}
