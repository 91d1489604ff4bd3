package httpserver

import (
	"fmt"
	"net/http"

	"github.com/shopflow/shopflow/pkg/platform/internal/hostlist"
)

// allowHosts refuses a request for a Host that list does not allow
// (Config.AllowedHosts), but for the operational endpoints, which probes
// and scrapers reach by an address of their own choosing. It stops DNS
// rebinding: a page on evil.example whose DNS server answers, once the
// page has loaded, with 127.0.0.1 (or a private address) sends its
// requests to a service there as its own origin, which the browser lets
// it read and crossOrigin lets through as same-origin; but they carry
// Host: evil.example.
//
// The answer is 421 Misdirected Request (RFC 9110 15.5.20: this server
// does not answer for that name), rather than 400: the request is well
// formed, sent to the wrong server. A nil list allows every host.
func allowHosts(list *hostlist.List) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if list == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if operational[r.URL.Path] || list.Allows(r.Host) {
				next.ServeHTTP(w, r)
				return
			}
			host := r.Host
			if len(host) > 100 {
				host = host[:100] + "..."
			}
			WriteProblem(w, r, Problem{Status: http.StatusMisdirectedRequest,
				Detail: fmt.Sprintf("this service does not answer for host %q: reach it by a name HTTP_ALLOWED_HOSTS lists", host)})
		})
	}
}
