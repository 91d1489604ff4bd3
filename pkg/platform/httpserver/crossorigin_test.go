package httpserver

import (
	"strings"
	"testing"
)

// TestCrossOriginWritesRefused: a state-changing request a browser sends
// from another site's page (an HTML form POST needs no CORS permission)
// is refused 403 problem+json, naming the route in the metrics; the
// service's own pages (same origin), the user typing an address
// (Sec-Fetch-Site: none) and clients that are not browsers (no
// Sec-Fetch-Site, no Origin: curl, shop, the services) pass, and so
// does every read. A cross-site form could cancel any pending order.
func TestCrossOriginWritesRefused(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	host := strings.TrimPrefix(f.url, "http://")
	body := func() *strings.Reader {
		return strings.NewReader(`{"customer_id":"c-1","items":[{"sku":"a","quantity":1}]}`)
	}
	for _, c := range []struct {
		name, method, path string
		header             []string
		want               int
	}{
		{"form from another site", "POST", "/v1/orders", []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}, 403},
		{"a sibling subdomain", "POST", "/v1/orders", []string{"Sec-Fetch-Site", "same-site", "Origin", "https://evil.shop.example"}, 403},
		{"an older browser: Origin only", "POST", "/v1/orders", []string{"Origin", "https://evil.example"}, 403},
		{"PUT from another site", "PUT", "/v1/stock/a", []string{"Sec-Fetch-Site", "cross-site"}, 403},
		{"the service's own page", "POST", "/v1/orders", []string{"Sec-Fetch-Site", "same-origin", "Origin", f.url}, 201},
		{"an older browser on the service's page", "POST", "/v1/orders", []string{"Origin", f.url}, 201},
		{"typed by the user", "POST", "/v1/orders", []string{"Sec-Fetch-Site", "none"}, 201},
		{"not a browser", "POST", "/v1/orders", nil, 201},
		{"a read from another site", "GET", "/v1/orders/o-1", []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}, 200},
	} {
		var res response
		if c.method == "GET" {
			res = f.do(t, c.method, c.path, "", nil, c.header...)
		} else {
			res = f.do(t, c.method, c.path, "application/json", body(), c.header...)
		}
		if res.status != c.want {
			t.Errorf("%s: %s %s (Host %s, %v) = %d %s; want %d", c.name, c.method, c.path, host, c.header, res.status, res.body, c.want)
			continue
		}
		if c.want == 403 {
			if p := problemOf(t, res); !strings.Contains(p["detail"].(string), "cross-origin request refused") {
				t.Errorf("%s: detail %q", c.name, p["detail"])
			}
		}
	}
	metrics := f.do(t, "GET", "/metrics", "", nil).body
	if want := `shop_http_request_duration_seconds_count{code="403",lifecycle="",method="POST",route="/v1/orders"} 3`; !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %s", want)
	}
}
