package web_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/shopflow/shopflow/services/order/internal/web"
)

// shippingServer stands in for the shipping service: it answers an
// order's label as answer set it, any other request as otherwise (nil:
// shipping's 404 for an order without a shipment), and records what it
// was asked.
type shippingServer struct {
	*httptest.Server
	otherwise http.HandlerFunc

	mu       sync.Mutex
	answers  map[string]http.HandlerFunc // by the label's path
	requests []string                    // "METHOD path", in order
}

func startShipping(t *testing.T, otherwise http.HandlerFunc) *shippingServer {
	t.Helper()
	if otherwise == nil {
		otherwise = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"status":404,"detail":"order has no shipment"}`) //nolint:errcheck // a test server
		}
	}
	sh := &shippingServer{otherwise: otherwise, answers: map[string]http.HandlerFunc{}}
	sh.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sh.mu.Lock()
		sh.requests = append(sh.requests, r.Method+" "+r.URL.Path)
		h, ok := sh.answers[r.URL.Path]
		sh.mu.Unlock()
		if !ok {
			h = sh.otherwise
		}
		h(w, r)
	}))
	t.Cleanup(sh.Close)
	return sh
}

// answer sets how the order's label is answered.
func (sh *shippingServer) answer(orderID string, h http.HandlerFunc) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.answers["/v1/shipments/"+orderID+"/label"] = h
}

// asked is what shipping was asked so far, "METHOD path" each.
func (sh *shippingServer) asked() []string {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return append([]string(nil), sh.requests...)
}

// TestLabelRefusesWhatIsNotALabel: the order service passes on from
// shipping only what can be a label: a success that is not
// application/pdf, or an answer larger than web.MaxLabelBytes, is refused
// 502 (an API client a problem, a browser a page), and what is passed on
// carries a sandboxing Content-Security-Policy. A shipping service that
// answered text/html with a script had it run on the shop's origin, and
// 200 MB went through.
func TestLabelRefusesWhatIsNotALabel(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("A"), web.MaxLabelBytes+1)
	shipping := startShipping(t, nil)
	s := startShop(t, map[string]string{"SHIPPING_URL": shipping.URL})
	s.product("SKU-0001", "Espresso beans, 1 kg", 2499)
	label, page, large, streamed := s.place("tok_visa"), s.place("tok_visa"), s.place("tok_visa"), s.place("tok_visa")
	s.confirm(label, page, large, streamed) // only a confirmed order's label is asked for
	shipping.answer(label, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/pdf")
		io.WriteString(w, "%PDF-1.7 label") //nolint:errcheck // a test server
	})
	shipping.answer(page, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<script>alert(1)</script>") //nolint:errcheck // a test server
	})
	shipping.answer(large, func(w http.ResponseWriter, r *http.Request) { // too large, and says so
		w.Header().Set("Content-Type", "application/pdf")
		w.Header().Set("Content-Length", strconv.Itoa(len(big)))
		w.Write(big) //nolint:errcheck // a test server
	})
	shipping.answer(streamed, func(w http.ResponseWriter, r *http.Request) { // too large, unannounced
		w.Header().Set("Content-Type", "application/pdf")
		for i := 0; i < len(big); i += 64 << 10 {
			w.Write(big[i:min(i+64<<10, len(big))]) //nolint:errcheck // a test server
			w.(http.Flusher).Flush()
		}
	})
	res, body := s.do("GET", "/orders/"+label+"/label", "", nil)
	if res.StatusCode != 200 || body != "%PDF-1.7 label" || res.Header.Get("Content-Security-Policy") != "sandbox" ||
		!strings.HasPrefix(res.Header.Get("Content-Disposition"), "inline") {
		t.Errorf("a label = %d %q, CSP %q, Content-Disposition %q; want 200, the PDF, sandbox, inline",
			res.StatusCode, body, res.Header.Get("Content-Security-Policy"), res.Header.Get("Content-Disposition"))
	}
	for _, id := range []string{page, large} {
		res, body := s.do("GET", "/orders/"+id+"/label", "", nil)
		if res.StatusCode != 502 || res.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(body, "not a label") {
			t.Errorf("label %s = %d %s %.100q; want 502 problem+json", id, res.StatusCode, res.Header.Get("Content-Type"), body)
		}
		res, body = s.do("GET", "/orders/"+id+"/label", "", map[string]string{"Accept": "text/html"})
		if res.StatusCode != 502 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") ||
			!strings.Contains(body, "not available right now") || strings.Contains(body, "alert(1)") {
			t.Errorf("label %s for a browser = %d %s %.100q; want 502 and the shop's page", id, res.StatusCode, res.Header.Get("Content-Type"), body)
		}
	}
	// Unannounced, the size shows only as the label passes: the answer is
	// cut off, not ended as if it were whole.
	res, err := http.Get(s.url + "/orders/" + streamed + "/label")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if err == nil || n > web.MaxLabelBytes+1 {
		t.Errorf("an unannounced label of %d bytes: read %d bytes, err %v; want it cut off with an error", len(big), n, err)
	}
}

// TestLabelOnlyForConfirmedOrders: the label is passed on only for an
// order the order service knows and has confirmed, and shipping is not
// asked for any other: unknown 404, pending 409, cancelled 410, GET and
// HEAD alike. Shipping books a shipment as soon as it sees OrderPlaced,
// before payment answers, and serves the label of any order it booked:
// the order service passed it on for any order id, so anyone with the
// number of a pending order, which could still be cancelled, printed its
// label.
func TestLabelOnlyForConfirmedOrders(t *testing.T) {
	t.Parallel()
	shipping := startShipping(t, func(w http.ResponseWriter, r *http.Request) { // a label for every order
		w.Header().Set("Content-Type", "application/pdf")
		io.WriteString(w, "%PDF-1.7 label") //nolint:errcheck // a test server
	})
	s := startShop(t, map[string]string{"SHIPPING_URL": shipping.URL})
	s.product("SKU-0001", "Espresso beans, 1 kg", 2499)
	confirmed, pending, cancelled := s.place("tok_visa"), s.place("tok_visa"), s.place("tok_visa")
	s.confirm(confirmed)
	s.cancel(cancelled)
	const unknown = "0192f4c2-0000-7000-8000-000000000000"
	const browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	for _, c := range []struct {
		name, id, method, accept string
		status                   int
		ctype, want              string
	}{
		{"confirmed", confirmed, "GET", "", 200, "application/pdf", "%PDF-1.7 label"},
		{"confirmed", confirmed, "HEAD", "", 200, "application/pdf", ""},
		{"confirmed", confirmed, "GET", browser, 200, "application/pdf", "%PDF-1.7 label"},
		{"pending", pending, "GET", "", 409, "application/problem+json", "its label is served once the order is confirmed"},
		{"pending", pending, "GET", "application/json", 409, "application/problem+json", `"status":409`},
		{"pending", pending, "HEAD", "", 409, "application/problem+json", ""},
		{"pending", pending, "GET", browser, 409, "text/html", "The order is not confirmed yet"},
		{"unknown", unknown, "GET", "", 404, "application/problem+json", "no such order"},
		{"unknown", unknown, "HEAD", "", 404, "application/problem+json", ""},
		{"unknown", unknown, "GET", browser, 404, "text/html", "There is no order with that number"},
		{"cancelled", cancelled, "GET", "", 410, "application/problem+json", "the order was cancelled; its label is void"},
		{"cancelled", cancelled, "HEAD", "", 410, "application/problem+json", ""},
		{"cancelled", cancelled, "GET", browser, 410, "text/html", "The order was cancelled"},
	} {
		before := len(shipping.asked())
		res, body := s.do(c.method, "/orders/"+c.id+"/label", "", map[string]string{"Accept": c.accept})
		if res.StatusCode != c.status || !strings.HasPrefix(res.Header.Get("Content-Type"), c.ctype) || !strings.Contains(body, c.want) {
			t.Errorf("%s %s order's label (Accept %q) = %d %s %.200q; want %d %s with %q",
				c.method, c.name, c.accept, res.StatusCode, res.Header.Get("Content-Type"), body, c.status, c.ctype, c.want)
		}
		asked := shipping.asked()[before:]
		if c.status == 200 && (len(asked) != 1 || asked[0] != c.method+" /v1/shipments/"+c.id+"/label") {
			t.Errorf("%s %s order's label: shipping asked %v, want once with %s", c.method, c.name, asked, c.method)
		}
		if c.status != 200 && len(asked) != 0 {
			t.Errorf("%s %s order's label: shipping asked %v, want nothing", c.method, c.name, asked)
		}
	}
}

// TestLabelUnavailableWhileTheDatabaseHoldsTheOrder: a label whose order
// cannot be read in time (the orders table locked, as on a frozen
// database) is a 503 with Retry-After, as the order page is, and
// shipping is not asked.
func TestLabelUnavailableWhileTheDatabaseHoldsTheOrder(t *testing.T) {
	t.Parallel()
	shipping := startShipping(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/pdf")
		io.WriteString(w, "%PDF-1.7 label") //nolint:errcheck // a test server
	})
	s := startShop(t, map[string]string{"SHIPPING_URL": shipping.URL, "HTTP_REQUEST_TIMEOUT": "1s"})
	s.product("SKU-0001", "Espresso beans, 1 kg", 2499)
	id := s.place("tok_visa")
	s.confirm(id)
	s.lockOrders()
	for _, c := range []struct{ accept, ctype string }{{"", "application/problem+json"}, {"text/html", "text/html"}} {
		res, body := s.do("GET", "/orders/"+id+"/label", "", map[string]string{"Accept": c.accept})
		if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" ||
			!strings.HasPrefix(res.Header.Get("Content-Type"), c.ctype) {
			t.Errorf("label (Accept %q) with the orders locked = %d %s, Retry-After %q:\n%.300s\nwant 503 %s with Retry-After",
				c.accept, res.StatusCode, res.Header.Get("Content-Type"), res.Header.Get("Retry-After"), body, c.ctype)
		}
	}
	if asked := shipping.asked(); len(asked) != 0 {
		t.Errorf("shipping asked %v while the order could not be read; want nothing", asked)
	}
}
