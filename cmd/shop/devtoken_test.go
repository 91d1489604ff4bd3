package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// TestDevAdminTokenBeyondLoopback: the well-known dev-admin-token guards
// the services only while they listen on this machine alone; with one
// listening beyond it, shop dev gives them a random token and says so.
// `shop dev --order-addr :8080` kept dev-admin-token without a word.
func TestDevAdminTokenBeyondLoopback(t *testing.T) {
	t.Parallel()
	addrs := func(order string) map[string]*string {
		m := map[string]*string{}
		for _, name := range []string{"order", "payment", "inventory", "shipping"} {
			a := "127.0.0.1:0"
			if name == "order" {
				a = order
			}
			m[name] = &a
		}
		return m
	}
	for _, c := range []struct {
		token, order string
		random       bool
	}{
		{"dev-admin-token", "127.0.0.1:8080", false},
		{"dev-admin-token", "localhost:8080", false},
		{"dev-admin-token", "[::1]:8080", false},
		{"dev-admin-token", ":8080", true},
		{"dev-admin-token", "0.0.0.0:8080", true},
		{"dev-admin-token", "[::]:8080", true},
		{"dev-admin-token", "192.0.2.7:8080", true},
		{"dev-admin-token", "shop.example:8080", true},
		{"my-own-long-admin-token", ":8080", false},
	} {
		got, exposed := devAdminToken(c.token, addrs(c.order))
		if c.random != (got != c.token) || c.random != (exposed != "") {
			t.Errorf("token %s, --order-addr %s: got %q (%q); want a random one: %v", c.token, c.order, got, exposed, c.random)
		}
		if c.random && (len(got) < 15 || !strings.Contains(exposed, "--order-addr "+c.order)) {
			t.Errorf("--order-addr %s: token %q, exposed %q", c.order, got, exposed)
		}
	}
	if a, _ := devAdminToken("dev-admin-token", addrs(":8080")); a == func() string { b, _ := devAdminToken("dev-admin-token", addrs(":8080")); return b }() {
		t.Errorf("two random tokens are the same: %q", a)
	}
}

// TestDevRandomTokenWhenExposed runs `shop dev` with the order service
// on every interface: it warns, the banner shows the random token, the
// seed used it, and the well-known token is refused.
func TestDevRandomTokenWhenExposed(t *testing.T) {
	t.Parallel()
	d := startDev(t, testenv.DatabaseURL(t), "--data-dir", t.TempDir(), "--kafka-addr", testenv.FreeAddr(t),
		"--order-addr", "0.0.0.0:0", "--payment-addr", "127.0.0.1:0", "--inventory-addr", "127.0.0.1:0", "--shipping-addr", "127.0.0.1:0")
	banner := d.ready()
	_, errOut := d.output()
	if !strings.Contains(errOut, "--order-addr 0.0.0.0:0 listens beyond this machine") {
		t.Errorf("no warning on stderr:\n%s", errOut)
	}
	token := bannerURL(t, banner, "admin token")
	if token == "dev-admin-token" || len(token) < 15 || !strings.Contains(banner, "seeded:     ") {
		t.Errorf("banner's token %q, want a random one, and the seed done with it:\n%s", token, banner)
	}
	for tok, want := range map[string]int{"dev-admin-token": http.StatusUnauthorized, token: http.StatusOK} {
		req, _ := http.NewRequest("PUT", bannerURL(t, banner, "order")+"/v1/products/SKU-0001",
			strings.NewReader(`{"name":"Espresso beans, 1 kg","price_cents":2499,"currency":"USD"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("PUT a product with token %q = %d, want %d", tok, res.StatusCode, want)
		}
	}
	// The order service, listening beyond this machine, answers for any
	// name (shop dev cannot know which reach it); the others, on
	// loopback, for loopback's names only.
	if got := statusFor(t, bannerURL(t, banner, "order")+"/v1/products", "shop.example"); got != http.StatusOK {
		t.Errorf("order on 0.0.0.0, Host shop.example: %d; want 200", got)
	}
	if got := statusFor(t, bannerURL(t, banner, "inventory")+"/v1/stock/SKU-0001", "shop.example"); got != http.StatusMisdirectedRequest {
		t.Errorf("inventory on 127.0.0.1, Host shop.example: %d; want 421", got)
	}
	if err := d.interrupt(); err != nil {
		t.Errorf("shop dev after Ctrl-C: %v", err)
	}
}
