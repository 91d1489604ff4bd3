package httpserver

import (
	"net/http"
	"strconv"
	"strings"
)

// PrefersHTML reports whether the request's Accept ranks text/html above
// JSON: a browser's navigation does ("text/html,...,*/*;q=0.8"); an API
// client's "application/json", fetch's "*/*" and no Accept at all do not.
// Pages answer their errors as HTML to the first, problem+json to the rest.
func PrefersHTML(r *http.Request) bool {
	accept := strings.Join(r.Header.Values("Accept"), ",")
	if accept == "" {
		return false
	}
	json := max(acceptQ(accept, "application/json"), acceptQ(accept, "application/problem+json"))
	return acceptQ(accept, "text/html") > json
}

// acceptQ is the quality accept gives mediaType (type/subtype, lower
// case): that of the most specific range matching it (RFC 9110 12.5.1),
// 0 when none does.
func acceptQ(accept, mediaType string) float64 {
	typ, _, _ := strings.Cut(mediaType, "/")
	best, q := 0, 0.0
	for _, rng := range strings.Split(accept, ",") {
		params := strings.Split(rng, ";")
		name := strings.ToLower(strings.TrimSpace(params[0]))
		specificity := 0
		switch name {
		case mediaType:
			specificity = 3
		case typ + "/*":
			specificity = 2
		case "*/*":
			specificity = 1
		}
		if specificity <= best {
			continue
		}
		rq := 1.0
		for _, p := range params[1:] {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && f >= 0 && f <= 1 {
					rq = f
				}
			}
		}
		best, q = specificity, rq
	}
	return q
}
