package order_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestCrossSiteCancelRefused: a page on another site cannot cancel an
// order through its visitor's browser: a plain HTML form POST to the
// cancel endpoint (no body, a form's Content-Type, which needs no CORS
// permission) is refused 403 and the order stays pending; the order
// page's own cancel (same origin) still cancels it. The form's POST
// cancelled the order (200).
func TestCrossSiteCancelRefused(t *testing.T) {
	t.Parallel()
	h := start(t, adminToken)
	h.putProduct("SKU-0001", 1250, "USD")
	id := h.place(orderBody())["id"].(string)
	form := h.do("POST", "/v1/orders/"+id+"/cancel", nil, "Content-Type", "application/x-www-form-urlencoded",
		"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
	if form.status != http.StatusForbidden || form.header.Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(string(form.body), "cross-origin request refused") {
		t.Errorf("cross-site form cancel = %d %s %s; want 403 problem+json", form.status, form.header.Get("Content-Type"), form.body)
	}
	if got := h.do("GET", "/v1/orders/"+id, nil).json(t)["status"]; got != "pending" {
		t.Fatalf("after the cross-site form, the order is %v; want pending", got)
	}
	own := h.do("POST", "/v1/orders/"+id+"/cancel", nil, "Origin", h.base, "Sec-Fetch-Site", "same-origin")
	if own.status != http.StatusOK || own.json(t)["status"] != "cancelled" {
		t.Errorf("the order page's cancel = %d %s; want 200, cancelled", own.status, own.body)
	}
}
