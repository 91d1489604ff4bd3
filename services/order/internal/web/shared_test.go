package web_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// TestPagesShareTheirFanOut: viewers of /ops/data and of the storefront
// who ask at once share one round of the requests those pages make
// elsewhere (a peer's /metrics, the inventory's stock). Each view made
// its own: 20 viewers, 20 scrapes of every peer and 20 stock requests per
// product. The peer and the inventory here answer only when the order
// service gives up on them, so that every viewer asks while the first
// round runs.
func TestPagesShareTheirFanOut(t *testing.T) {
	t.Parallel()
	var scrapes, stock atomic.Int64
	slow := func(n *atomic.Int64) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			<-r.Context().Done()
		}))
	}
	peer, inventory := slow(&scrapes), slow(&stock)
	defer peer.Close()
	defer inventory.Close()
	s := startShop(t, map[string]string{"OPS_PEERS": "payment=" + peer.URL, "INVENTORY_URL": inventory.URL})
	s.product("SKU-0001", "Espresso beans, 1 kg", 2499)

	const viewers = 20
	for _, c := range []struct {
		path  string
		count *atomic.Int64
		want  string
	}{
		{"/ops/data", &scrapes, `"service":"payment","backlog":null`},
		{"/", &stock, "Espresso beans"},
	} {
		var wg sync.WaitGroup
		for range viewers {
			wg.Go(func() {
				res, err := http.Get(s.url + c.path) // not s.do: it may not fail the test from here
				if err != nil {
					t.Error(err)
					return
				}
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != 200 || !strings.Contains(string(body), c.want) {
					t.Errorf("GET %s = %d, lacking %q: %.300s", c.path, res.StatusCode, c.want, body)
				}
			})
		}
		wg.Wait()
		if n := c.count.Load(); n > 2 {
			t.Errorf("%d viewers of %s at once made %d requests elsewhere; want them to share one", viewers, c.path, n)
		}
	}
}
