package seed

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeAdmin is the order and inventory services' admin PUTs as Seed uses
// them: If-None-Match: * creates (201) what is missing and refuses (412)
// what exists. Like the services' router, it answers 404 to a path such
// as "//v1/products/...".
func fakeAdmin(t *testing.T) *httptest.Server {
	t.Helper()
	var mu sync.Mutex
	have := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut || strings.Contains(r.URL.Path, "//") ||
			!(strings.HasPrefix(r.URL.Path, "/v1/products/") || strings.HasPrefix(r.URL.Path, "/v1/stock/")) {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if have[r.URL.Path] && r.Header.Get("If-None-Match") == "*" {
			w.WriteHeader(http.StatusPreconditionFailed)
			return
		}
		have[r.URL.Path] = true
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// Base URLs with a trailing slash are the same URLs: they used to make
// every path "//v1/...", which the services answer with 404.
func TestSeedTrimsTheBaseURLs(t *testing.T) {
	srv := fakeAdmin(t)
	res, err := Seed(context.Background(), srv.URL+"/", srv.URL+"//", "token")
	if err != nil {
		t.Fatalf("Seed: %v", err)
	}
	if n := len(Catalog); res != (Result{Products: n, StockSet: n}) {
		t.Errorf("Seed: %+v, want every product and every SKU's stock created", res)
	}
}
