package httpserver

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"
)

func TestPathParam(t *testing.T) {
	t.Parallel()
	r := chi.NewRouter()
	var got string
	r.Get("/x/{p}", func(w http.ResponseWriter, r *http.Request) { got = PathParam(r, "p") })
	for path, want := range map[string]string{
		"/x/SKU-0001":   "SKU-0001",
		"/x/SKU%2D0001": "SKU-0001", // escaped more than it must be
		"/x/a%2Fb":      "a/b",      // an escaped slash stays in the segment
		"/x/a%20b":      "a b",
		"/x/%E2%82%AC":  "€",
	} {
		got = "(not routed)"
		r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", path, nil))
		if got != want {
			t.Errorf("PathParam of %s = %q, want %q", path, got, want)
		}
	}
}
