package httpserver

import (
	"net/http"
	"net/url"

	"github.com/go-chi/chi/v5"
)

// PathParam returns the route parameter name of r, unescaped. chi matches
// a request's escaped path when it differs from the default encoding
// (r.URL.RawPath: "/v1/stock/SKU%2D0001", "/v1/payments/a%2Fb") and then
// hands the parameter over still escaped, so a client that escapes more
// than it must (RFC 3986 calls the two forms equivalent) would find
// nothing. A parameter that does not unescape is returned as it is, for
// the handler's own check to refuse.
func PathParam(r *http.Request, name string) string {
	v := chi.URLParam(r, name)
	if r.URL.RawPath == "" {
		return v
	}
	if u, err := url.PathUnescape(v); err == nil {
		return u
	}
	return v
}
