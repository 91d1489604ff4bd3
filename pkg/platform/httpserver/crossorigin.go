package httpserver

import "net/http"

// crossOrigin refuses the state-changing requests (any method but GET,
// HEAD and OPTIONS) that a browser sends from another origin: a page
// elsewhere could otherwise make its visitor's browser cancel an order by
// a plain HTML form, which needs no CORS permission, even on a service
// that listens on the visitor's loopback only. net/http's
// CrossOriginProtection decides, by Sec-Fetch-Site (every browser since
// 2023) or else by comparing Origin with Host; a request with neither, as
// curl, shop and the services send, is not from a browser and passes,
// and so does one from the service's own pages (same-origin). A refused
// request is answered 403 problem+json.
func crossOrigin(next http.Handler) http.Handler {
	c := http.NewCrossOriginProtection()
	c.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteProblem(w, r, Problem{Status: http.StatusForbidden,
			Detail: "cross-origin request refused: a browser sent it from another site's page, and " +
				r.Method + " changes state; only this service's own pages (same origin) and clients that are not browsers may"})
	}))
	return c.Handler(next)
}
