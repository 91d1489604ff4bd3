package web_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/config"
	"github.com/shopflow/shopflow/pkg/platform/service"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
	"github.com/shopflow/shopflow/services/order"
)

const adminToken = "web-test-admin-token"

// shop is an order service running in-process for one test.
type shop struct {
	t       *testing.T
	url     string
	brokers []string
	prefix  string
	dbURL   string
}

// startShop runs the order service with the given extra environment
// (INVENTORY_URL, SHIPPING_URL, OPS_PEERS) on a fresh database and topics.
func startShop(t *testing.T, env map[string]string) *shop {
	t.Helper()
	c := testenv.Common(t)
	vars := map[string]string{
		"DATABASE_URL": c.DatabaseURL, "KAFKA_BROKERS": strings.Join(c.KafkaBrokers, ","), "HTTP_ADDR": c.HTTPAddr,
		"KAFKA_TOPIC_PREFIX": c.KafkaTopicPrefix, "ADMIN_TOKEN": adminToken, "LOG_LEVEL": "warn",
	}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := config.Load[order.Config](config.WithEnvironment(vars), config.WithDefault("HTTP_ADDR", order.DefaultHTTPAddr))
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := testenv.Serve(t, func(ctx context.Context, started func(string)) error {
		return order.Run(service.OnStarted(ctx, started), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	})
	return &shop{t: t, url: "http://" + addr, brokers: c.KafkaBrokers, prefix: c.KafkaTopicPrefix, dbURL: c.DatabaseURL}
}

// lockOrders takes an ACCESS EXCLUSIVE lock on the orders table, as an
// operator's LOCK TABLE or a long migration does, until the test ends.
func (s *shop) lockOrders() {
	s.t.Helper()
	ctx := context.Background()
	tx, err := testenv.PoolAt(s.t, s.dbURL, "orders").Begin(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { _ = tx.Rollback(ctx) })
	if _, err := tx.Exec(ctx, `LOCK TABLE orders IN ACCESS EXCLUSIVE MODE`); err != nil {
		s.t.Fatal(err)
	}
}

func (s *shop) do(method, path, body string, header map[string]string) (*http.Response, string) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return res, string(b)
}

func (s *shop) product(sku, name string, cents int64) {
	s.t.Helper()
	body := fmt.Sprintf(`{"name":%q,"price_cents":%d,"currency":"USD"}`, name, cents)
	if res, b := s.do("PUT", "/v1/products/"+sku, body, map[string]string{"Authorization": "Bearer " + adminToken, "Content-Type": "application/json"}); res.StatusCode != 200 && res.StatusCode != 201 {
		s.t.Fatalf("put product %s: %d %s", sku, res.StatusCode, b)
	}
}

// follow opens the order's event stream (for a minute at most, closed
// when the test ends) and reads it: got has each status event, ended the
// stream's end (nil: the server ended it).
func (s *shop) follow(id string) (got <-chan statusEvent, ended <-chan error) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	s.t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", s.url+"/orders/"+id+"/events", nil)
	stream, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { stream.Body.Close() })
	events, end := make(chan statusEvent, 16), make(chan error, 1)
	go readEvents(stream.Body, events, end)
	return events, end
}

func (s *shop) place(card string) string {
	s.t.Helper()
	body := `{"customer_id":"web-test","currency":"USD","items":[{"sku":"SKU-0001","quantity":2}],
	  "payment":{"card_token":"` + card + `"},
	  "shipping_address":{"name":"Ada Lovelace","line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}}`
	res, b := s.do("POST", "/v1/orders", body, map[string]string{"Content-Type": "application/json"})
	if res.StatusCode != http.StatusCreated {
		s.t.Fatalf("place order: %d %s", res.StatusCode, b)
	}
	var o struct{ ID string }
	if err := json.Unmarshal([]byte(b), &o); err != nil || o.ID == "" {
		s.t.Fatalf("place order: %v in %s", err, b)
	}
	return o.ID
}

// confirm has the orders (each placed by place, SKU-0001 at $24.99)
// confirmed as payment, inventory and shipping would, and waits until
// they are.
func (s *shop) confirm(ids ...string) {
	s.t.Helper()
	var results []events.Payload
	for _, id := range ids {
		results = append(results,
			events.PaymentAuthorized{OrderID: id, PaymentID: "pay-" + id, AmountCents: 4998, Currency: "USD", AuthorizationCode: "A1"},
			events.StockReserved{OrderID: id, ReservationID: "res-" + id, Items: []events.StockLine{{SKU: "SKU-0001", Quantity: 2}}},
			events.ShipmentScheduled{OrderID: id, ShipmentID: "shp-" + id, Carrier: "ACME", TrackingNumber: "TRK-42", PickupAt: time.Now().Add(time.Hour)},
		)
	}
	s.publish(results...)
	for _, id := range ids {
		s.await(id, "confirmed")
	}
}

// cancel cancels a pending order, as its customer would.
func (s *shop) cancel(id string) {
	s.t.Helper()
	if res, b := s.do("POST", "/v1/orders/"+id+"/cancel", "", nil); res.StatusCode != http.StatusOK || !strings.Contains(b, `"status":"cancelled"`) {
		s.t.Fatalf("cancel order %s: %d %s", id, res.StatusCode, b)
	}
}

// await waits until the order's status is status, as its event stream
// tells (for a minute at most).
func (s *shop) await(id, status string) {
	s.t.Helper()
	got, ended := s.follow(id)
	for ev := range got {
		if ev.Status == status {
			return
		}
	}
	s.t.Fatalf("order %s did not become %s (its stream ended: %v)", id, status, <-ended)
}

// publish writes events as the other services would.
func (s *shop) publish(payloads ...events.Payload) {
	s.t.Helper()
	// A transport of its own: kafka-go's default one caches metadata
	// process-wide, and may predate the test's topics.
	w := &kafka.Writer{Addr: kafka.TCP(s.brokers...), Balancer: &kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond, Transport: &kafka.Transport{}}
	defer w.Close()
	for _, p := range payloads {
		m, err := events.Encode(events.New(p.EventType().Source(), p))
		if err != nil {
			s.t.Fatal(err)
		}
		km := kafka.Message{Topic: s.prefix + m.Topic, Key: m.Key, Value: m.Value}
		for _, h := range m.Headers {
			km.Headers = append(km.Headers, kafka.Header(h))
		}
		if err := w.WriteMessages(context.Background(), km); err != nil {
			s.t.Fatal(err)
		}
	}
}

// externalRef finds references a page would load from elsewhere.
var externalRef = regexp.MustCompile(`(?i)(src|href)\s*=\s*"(https?:)?//`)

func TestStorefrontShowsProductsAndAvailability(t *testing.T) {
	t.Parallel()
	// The inventory answers per SKU: a count, nothing (404), or too late.
	inventory := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch strings.TrimPrefix(r.URL.Path, "/v1/stock/") {
		case "SKU-0001":
			fmt.Fprint(w, `{"sku":"SKU-0001","available":7}`)
		case "SKU-0002":
			fmt.Fprint(w, `{"sku":"SKU-0002","available":0}`)
		case "SKU-0004":
			select { // slower than the page's timeout
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		default:
			http.NotFound(w, r)
		}
	}))
	defer inventory.Close()
	s := startShop(t, map[string]string{"INVENTORY_URL": inventory.URL})
	s.product("SKU-0001", "Espresso beans, 1 kg", 2499)
	s.product("SKU-0002", "Filter papers & <more>", 499)
	s.product("SKU-0003", "Burr grinder", 12900)
	s.product("SKU-0004", "Pour-over kettle", 5900)

	start := time.Now()
	res, page := s.do("GET", "/", "", nil)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("a slow inventory held the page for %s", took)
	}
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	// The form cuts no pasted value short (maxlength): the API says a
	// value is too long, with every other field it refuses, in one answer
	// (the checkout shows them all).
	if cut := strings.Count(page, "maxlength"); cut != 0 {
		t.Errorf("%d maxlength in the form, want none", cut)
	}
	long := strings.Repeat("x", 70)
	res, body := s.do("POST", "/v1/orders", `{"customer_id":"","currency":"USD","items":[{"sku":"SKU-0001","quantity":1}],
	  "payment":{"card_token":"tok_visa"},"shipping_address":{"name":"`+long+`","line1":"","city":"","postal_code":"","country":"US"}}`,
		map[string]string{"Content-Type": "application/json"})
	for _, want := range []string{`"field":"shipping_address.name","message":"is too long: 70 characters, at most 60"`,
		`"field":"customer_id","message":"is required"`, `"field":"shipping_address.line1","message":"is required"`,
		`"field":"shipping_address.city","message":"is required"`, `"field":"shipping_address.postal_code","message":"is required"`} {
		if res.StatusCode != 400 || !strings.Contains(body, want) {
			t.Errorf("a 70-character name among empty fields = %d %s; want 400 with %s", res.StatusCode, body, want)
		}
	}
	if !strings.Contains(page, "we ship to AT, AU, BE,") || !strings.Contains(page, ", SE, US.") {
		t.Error("the country hint does not list the countries orders ship to")
	}
	row := func(sku string) string {
		i := strings.Index(page, `data-sku="`+sku+`"`)
		if i < 0 {
			t.Fatalf("no row for %s in:\n%s", sku, page)
		}
		j := strings.Index(page[i:], "</tr>")
		return page[i : i+j]
	}
	for _, c := range []struct{ sku, price, avail string }{
		{"SKU-0001", "$24.99", "7 in stock"},
		{"SKU-0002", "$4.99", "out of stock"},
		{"SKU-0003", "$129.00", "unknown"}, // inventory does not know it
		{"SKU-0004", "$59.00", "unknown"},  // inventory too slow
	} {
		r := row(c.sku)
		if !strings.Contains(r, ">"+c.price+"<") || !strings.Contains(r, c.avail+"</td>") {
			t.Errorf("%s: want price %s and %q in\n%s", c.sku, c.price, c.avail, r)
		}
		// Out of stock cannot go in the cart; unknown stock still can.
		if disabled := strings.Contains(r, ` disabled>`); disabled != (c.avail == "out of stock") {
			t.Errorf("%s (%s): Add to cart disabled = %v in\n%s", c.sku, c.avail, disabled, r)
		}
	}
	if !strings.Contains(page, "Filter papers &amp; &lt;more&gt;") {
		t.Error("product name not escaped")
	}
	for _, want := range []string{`<label for="customer_id">`, `<label for="card-tok_declined">`, `value="tok_flaky"`,
		`<script src="/static/store.js" defer>`, `<html lang="en">`} {
		if !strings.Contains(page, want) {
			t.Errorf("storefront lacks %s", want)
		}
	}
	if m := externalRef.FindString(page); m != "" {
		t.Errorf("storefront loads from elsewhere: %s", m)
	}
	for path, ctype := range map[string]string{"/static/app.css": "text/css", "/static/store.js": "text/javascript",
		"/static/order.js": "text/javascript", "/static/ops.js": "text/javascript"} {
		res, body := s.do("GET", path, "", nil)
		if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), ctype) || len(body) < 100 {
			t.Errorf("GET %s = %d %s, %d bytes", path, res.StatusCode, res.Header.Get("Content-Type"), len(body))
		}
		if m := externalRef.FindString(body); m != "" || strings.Contains(body, "@import") {
			t.Errorf("%s loads from elsewhere: %s", path, m)
		}
		// Asked again each time, by content: an upgrade's new script is
		// never hidden behind a cached old one.
		etag := res.Header.Get("ETag")
		if cc, sniff := res.Header.Get("Cache-Control"), res.Header.Get("X-Content-Type-Options"); cc != "no-cache" || etag == "" || sniff != "nosniff" {
			t.Errorf("GET %s: Cache-Control %q, ETag %q, X-Content-Type-Options %q; want no-cache, a tag, nosniff", path, cc, etag, sniff)
		}
		if again, _ := s.do("GET", path, "", map[string]string{"If-None-Match": etag}); again.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s If-None-Match its ETag = %d, want 304", path, again.StatusCode)
		}
	}
	for _, path := range []string{"/", "/ops", "/orders/nope"} { // the last an error page, for a browser
		if res, _ := s.do("GET", path, "", map[string]string{"Accept": "text/html"}); res.Header.Get("Referrer-Policy") != "same-origin" {
			t.Errorf("GET %s: Referrer-Policy %q, want same-origin", path, res.Header.Get("Referrer-Policy"))
		}
	}
	if res, _ := s.do("GET", "/ops/data", "", nil); res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("GET /ops/data: X-Content-Type-Options %q, want nosniff", res.Header.Get("X-Content-Type-Options"))
	}

	// With the inventory gone the page still renders, availability unknown
	// (once the availability its viewers share, up to a second old, is
	// read again).
	inventory.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		res, page = s.do("GET", "/", "", nil)
		if res.StatusCode == 200 && strings.Count(page, "unknown</td>") == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("inventory down: GET / = %d, %d unknown", res.StatusCode, strings.Count(page, "unknown</td>"))
			break
		}
	}
}

// statusEvent is the data of one server-sent "status" event.
type statusEvent struct {
	Status         string `json:"status"`
	Terminal       bool   `json:"terminal"`
	Settled        bool   `json:"settled"`
	Reason         string `json:"reason"`
	TrackingNumber string `json:"tracking_number"`
	LabelURL       string `json:"label_url"`
	Steps          []struct {
		Key, State, Label string
	} `json:"steps"`
}

// readEvents sends each status event of the stream to out until it ends.
func readEvents(body io.Reader, out chan<- statusEvent, errs chan<- error) {
	sc := bufio.NewScanner(body)
	var name, data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		case line == "" && name == "status":
			var ev statusEvent
			if err := json.Unmarshal([]byte(data), &ev); err != nil {
				errs <- err
				return
			}
			out <- ev
			name, data = "", ""
		}
	}
	errs <- sc.Err() // nil: the server ended the stream
	close(out)
}

func TestOrderPageFollowsTheSaga(t *testing.T) {
	t.Parallel()
	s := startShop(t, map[string]string{"SHIPPING_URL": "http://shipping.test:8083"})
	s.product("SKU-0001", "Espresso beans, 1 kg", 2499)

	cases := []struct {
		name       string
		results    func(id string) []events.Payload
		status     string
		reason     string
		tracking   bool
		stepStates []string
	}{
		{"confirmed", func(id string) []events.Payload {
			return []events.Payload{
				events.PaymentAuthorized{OrderID: id, PaymentID: "pay-1", AmountCents: 4998, Currency: "USD", AuthorizationCode: "A1"},
				events.StockReserved{OrderID: id, ReservationID: "res-1", Items: []events.StockLine{{SKU: "SKU-0001", Quantity: 2}}},
				events.ShipmentScheduled{OrderID: id, ShipmentID: "shp-1", Carrier: "ACME", TrackingNumber: "TRK-42", PickupAt: time.Now().Add(time.Hour)},
			}
		}, "confirmed", "", true, []string{"done", "done", "done"}},
		{"declined", func(id string) []events.Payload {
			// The decline first, then the others' work and its compensation:
			// the stream follows the order until all of it has arrived.
			return []events.Payload{
				events.PaymentDeclined{OrderID: id, AmountCents: 4998, Currency: "USD", Reason: "insufficient funds"},
				events.StockReserved{OrderID: id, ReservationID: "res-2", Items: []events.StockLine{{SKU: "SKU-0001", Quantity: 2}}},
				events.StockReleased{OrderID: id, ReservationID: "res-2", Items: []events.StockLine{{SKU: "SKU-0001", Quantity: 2}}},
				events.ShipmentScheduled{OrderID: id, ShipmentID: "shp-2", Carrier: "ACME", TrackingNumber: "TRK-43", PickupAt: time.Now().Add(time.Hour)},
				events.ShipmentCancelled{OrderID: id, ShipmentID: "shp-2", TrackingNumber: "TRK-43"},
			}
		}, "cancelled", "payment declined: insufficient funds", false, []string{"failed", "undone", "undone"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &shop{t: t, url: s.url, brokers: s.brokers, prefix: s.prefix} // fail this subtest, not its parent
			id := s.place("tok_visa")
			res, page := s.do("GET", "/orders/"+id, "", nil)
			if res.StatusCode != 200 || !strings.Contains(page, "In progress") || !strings.Contains(page, `aria-live="polite"`) ||
				!strings.Contains(page, `href="/orders/`+id+`">Refresh`) || !strings.Contains(page, "Ada Lovelace") {
				t.Fatalf("order page while pending = %d:\n%s", res.StatusCode, page)
			}

			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", s.url+"/orders/"+id+"/events", nil)
			stream, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer stream.Body.Close()
			if ct := stream.Header.Get("Content-Type"); stream.StatusCode != 200 || ct != "text/event-stream" {
				t.Fatalf("events = %d %s", stream.StatusCode, ct)
			}
			got := make(chan statusEvent, 16)
			ended := make(chan error, 1)
			go readEvents(stream.Body, got, ended)
			first := <-got
			if first.Status != "pending" || first.Terminal || first.Steps[0].Label != "waiting" {
				t.Fatalf("first event = %+v", first)
			}

			s.publish(c.results(id)...)
			var last statusEvent
			for ev := range got {
				last = ev
			}
			if err := <-ended; err != nil {
				t.Fatalf("stream: %v", err)
			}
			if last.Status != c.status || !last.Terminal || !last.Settled || last.Reason != c.reason {
				t.Errorf("last event = %+v, want %s %q", last, c.status, c.reason)
			}
			for i, want := range c.stepStates {
				if last.Steps[i].State != want {
					t.Errorf("step %s = %s, want %s", last.Steps[i].Key, last.Steps[i].State, want)
				}
			}
			label := "/orders/" + id + "/label" // the order service passes it on from shipping
			if c.tracking && (last.TrackingNumber != "TRK-42" || last.LabelURL != label) {
				t.Errorf("tracking %q, label %q", last.TrackingNumber, last.LabelURL)
			}

			// Reloaded, the page shows the same without a stream.
			_, page = s.do("GET", "/orders/"+id, "", nil)
			if !strings.Contains(page, `data-status="`+c.status+`"`) || !strings.Contains(page, c.reason) {
				t.Errorf("order page after the saga lacks %s %q", c.status, c.reason)
			}
			if c.tracking && !strings.Contains(page, `href="`+label+`"`) {
				t.Errorf("order page lacks the label link %s", label)
			}
			if strings.Contains(page, `http-equiv="refresh"`) {
				t.Error("a settled order page still refreshes itself")
			}
			// A stream for a settled order says so once and ends.
			res, body := s.do("GET", "/orders/"+id+"/events", "", nil)
			if res.StatusCode != 200 || strings.Count(body, "event: status") != 1 || !strings.Contains(body, `"settled":true`) {
				t.Errorf("stream of a settled order = %d %q", res.StatusCode, body)
			}
		})
	}
}

// TestHeadOfAnEventStream: HEAD of a pending order's stream answers the
// headers and ends. Routed to the stream's handler (HEAD goes wherever GET
// does), it streamed into nothing until the order settled or for 10
// minutes, and the client's next request on that connection waited.
func TestHeadOfAnEventStream(t *testing.T) {
	t.Parallel()
	s := startShop(t, nil)
	s.product("SKU-0001", "Widget", 1999)
	id := s.place("tok_visa") // stays pending: nothing answers it here
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxConnsPerHost: 1}}
	res, err := client.Head(s.url + "/orders/" + id + "/events")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("HEAD = %d %q, want 200 text/event-stream", res.StatusCode, res.Header.Get("Content-Type"))
	}
	// The same connection serves the next request at once.
	res, err = client.Get(s.url + "/healthz")
	if err != nil {
		t.Fatalf("the request after the HEAD: %v", err)
	}
	res.Body.Close()
}

// TestEventStreamOutlivesTheRequestDeadline: the order page's stream
// lifts the server's request deadline (HTTP_REQUEST_TIMEOUT, 1 s here)
// and follows the order past it, within its own lifetime; every other
// request ends at the deadline.
func TestEventStreamOutlivesTheRequestDeadline(t *testing.T) {
	t.Parallel()
	const deadline = time.Second
	s := startShop(t, map[string]string{"HTTP_REQUEST_TIMEOUT": deadline.String()})
	s.product("SKU-0001", "Espresso beans, 1 kg", 2499)
	id := s.place("tok_visa")
	got, ended := s.follow(id)
	if first := <-got; first.Status != "pending" {
		t.Fatalf("first event = %+v", first)
	}
	select {
	case ev, open := <-got:
		if !open {
			t.Fatalf("the stream ended within %s, the request deadline being %s, the order still pending (%v)", 3*deadline, deadline, <-ended)
		}
		t.Fatalf("before anything happened to the order: event %+v", ev)
	case <-time.After(3 * deadline): // the stream must stay open past the deadline
	}
	s.publish(
		events.PaymentAuthorized{OrderID: id, PaymentID: "pay-1", AmountCents: 4998, Currency: "USD", AuthorizationCode: "A1"},
		events.StockReserved{OrderID: id, ReservationID: "res-1", Items: []events.StockLine{{SKU: "SKU-0001", Quantity: 2}}},
		events.ShipmentScheduled{OrderID: id, ShipmentID: "shp-1", Carrier: "ACME", TrackingNumber: "TRK-42", PickupAt: time.Now().Add(time.Hour)},
	)
	var last statusEvent
	for ev := range got {
		last = ev
	}
	if err := <-ended; err != nil {
		t.Fatalf("stream: %v", err)
	}
	if last.Status != "confirmed" || !last.Settled {
		t.Errorf("last event = %+v, want the order confirmed, followed past the deadline", last)
	}
}

// TestAPendingOrderShowsNoTrackingNumber: shipping books before payment
// has answered, and the payment may yet be declined (the shipment then
// cancelled): the page showed the tracking number and label link of a
// pending order as soon as shipping answered. They appear once the order
// is confirmed.
func TestAPendingOrderShowsNoTrackingNumber(t *testing.T) {
	t.Parallel()
	s := startShop(t, nil)
	s.product("SKU-0001", "Espresso beans, 1 kg", 2499)
	id := s.place("tok_visa")
	got, _ := s.follow(id)
	<-got // pending, nothing answered
	s.publish(
		events.StockReserved{OrderID: id, ReservationID: "res-1", Items: []events.StockLine{{SKU: "SKU-0001", Quantity: 2}}},
		events.ShipmentScheduled{OrderID: id, ShipmentID: "shp-1", Carrier: "ACME", TrackingNumber: "TRK-42", PickupAt: time.Now().Add(time.Hour)},
	)
	for ev := range got {
		if ev.Steps[2].State != "done" {
			continue
		}
		if ev.Status != "pending" || ev.TrackingNumber != "" || ev.LabelURL != "" {
			t.Errorf("shipped, not paid: status %s, tracking %q, label %q; want pending with neither", ev.Status, ev.TrackingNumber, ev.LabelURL)
		}
		break
	}
	if _, page := s.do("GET", "/orders/"+id, "", nil); strings.Contains(page, "TRK-42") || !strings.Contains(page, `id="tracking" hidden`) {
		t.Errorf("the page of an order shipped, not paid, shows its tracking number:\n%s", page)
	}
	s.publish(events.PaymentAuthorized{OrderID: id, PaymentID: "pay-1", AmountCents: 4998, Currency: "USD", AuthorizationCode: "A1"})
	var last statusEvent
	for ev := range got {
		last = ev
	}
	if last.Status != "confirmed" || last.TrackingNumber != "TRK-42" || last.LabelURL != "/orders/"+id+"/label" {
		t.Errorf("confirmed: %+v, want tracking TRK-42 and the label", last)
	}
}

// TestEventStreamKeepsBeatingWhileTheDatabaseHoldsTheOrder: a stream
// whose poll waits on a locked orders table (as on a frozen database)
// still sends its heartbeat. The poll shared the heartbeat's loop and had
// no timeout, so the stream went silent: the page showed no "Connection
// lost", and an idle proxy cut the stream.
func TestEventStreamKeepsBeatingWhileTheDatabaseHoldsTheOrder(t *testing.T) {
	t.Parallel()
	s := startShop(t, nil)
	s.product("SKU-0001", "Espresso beans, 1 kg", 2499)
	id := s.place("tok_visa") // stays pending: nothing answers it here
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.url+"/orders/"+id+"/events", nil)
	stream, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stream.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	for line := range lines {
		if strings.HasPrefix(line, "event: status") {
			break
		}
	}
	s.lockOrders()
	locked := time.Now()
	const within = 15*time.Second + 5*time.Second // the heartbeat's period, and some
	timeout := time.After(within)
	for {
		select {
		case line, open := <-lines:
			if !open {
				t.Fatalf("the stream ended %s after the orders were locked, the order pending", time.Since(locked).Round(time.Millisecond))
			}
			if line == ": keep-alive" {
				return
			}
		case <-timeout:
			t.Fatalf("no heartbeat within %s of locking the orders table: the stream went silent", within)
		}
	}
}

// TestPagesUnavailableWhileTheDatabaseHoldsThem: an order page whose read
// waits on a locked table is answered at the request's deadline with a
// 503 page and Retry-After, not left without an answer until the lock
// goes or the write timeout cuts the connection; so is the stream's
// first read.
func TestPagesUnavailableWhileTheDatabaseHoldsThem(t *testing.T) {
	t.Parallel()
	const deadline = time.Second
	s := startShop(t, map[string]string{"HTTP_REQUEST_TIMEOUT": deadline.String()})
	s.product("SKU-0001", "Espresso beans, 1 kg", 2499)
	id := s.place("tok_visa")
	s.lockOrders()
	client := &http.Client{Timeout: 20 * time.Second}
	for _, c := range []struct{ path, accept, ctype string }{
		{"/orders/" + id, "text/html", "text/html"},
		{"/orders/" + id + "/events", "text/html", "application/problem+json"},
		{"/orders/" + id, "application/json", "application/problem+json"}, // an API client's terms
	} {
		req, _ := http.NewRequest("GET", s.url+c.path, nil)
		req.Header.Set("Accept", c.accept)
		start := time.Now()
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: no answer after %s: %v", c.path, time.Since(start).Round(time.Millisecond), err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" ||
			!strings.HasPrefix(res.Header.Get("Content-Type"), c.ctype) {
			t.Errorf("GET %s (Accept %s) with the orders locked = %d %s (Retry-After %q) after %s:\n%s\nwant 503 %s with Retry-After",
				c.path, c.accept, res.StatusCode, res.Header.Get("Content-Type"), res.Header.Get("Retry-After"),
				time.Since(start).Round(time.Millisecond), body, c.ctype)
		}
		// The page loads again by itself once the database is back.
		if c.ctype == "text/html" && res.Header.Get("Refresh") != "5" {
			t.Errorf("GET %s's 503: Refresh %q, want 5", c.path, res.Header.Get("Refresh"))
		}
	}
}

func TestOrderPagesRejectBadIDs(t *testing.T) {
	t.Parallel()
	s := startShop(t, nil)
	const browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	cases := []struct {
		path, ctype string
		status      int
		want        string
		accept      string
	}{
		// The order page answers in the asker's terms too: a page for a
		// browser, the problem for an API client (Accept JSON, */* or none).
		{"/orders/not-an-id", "text/html", 400, "That is not an order number", browser},
		{"/orders/0192f4c2-0000-7000-8000-000000000000", "text/html", 404, "No such order", browser},
		{"/orders/not-an-id", "application/problem+json", 400, `"field":"id"`, ""},
		{"/orders/not-an-id", "application/problem+json", 400, `"field":"id"`, "*/*"},
		{"/orders/0192f4c2-0000-7000-8000-000000000000", "application/problem+json", 404, `"detail":"no such order"`, "application/json"},
		{"/orders/0192f4c2-0000-7000-8000-000000000000", "application/problem+json", 404, `"detail":"no such order"`, ""},
		{"/orders/not-an-id/label", "text/html", 400, "That is not an order number", browser},
		{"/orders/not-an-id/label", "application/problem+json", 400, `"field":"id"`, "application/json"},
		{"/orders/not-an-id/events", "application/problem+json", 400, `"field":"id"`, ""},
		{"/orders/0192f4c2-0000-7000-8000-000000000000/events", "application/problem+json", 404, "no such order", ""},
		{"/static/nope.js", "application/problem+json", 404, `"instance":"/static/nope.js"`, ""},
		{"/static/", "application/problem+json", 404, "no such file", ""}, // no directory listing
		{"/static/../web.go", "", 404, "", ""},
		// Unknown pages: a page leading back to the shop for a browser,
		// the problem for anyone else.
		{"/orders/", "text/html", 404, `<a href="/">Back to the shop</a>`, browser},
		{"/ops/", "text/html", 404, "Page not found", browser},
		{"/nope", "text/html", 404, "Page not found", browser},
		{"/nope", "application/problem+json", 404, "no route for GET /nope", ""},
		{"/ops/", "application/problem+json", 404, "no route for GET /ops/", "application/json"},
		{"/v1/nope", "application/problem+json", 404, "no route for GET /v1/nope", "*/*"},
	}
	for _, c := range cases {
		res, body := s.do("GET", c.path, "", map[string]string{"Accept": c.accept})
		if res.StatusCode != c.status || !strings.HasPrefix(res.Header.Get("Content-Type"), c.ctype) || !strings.Contains(body, c.want) {
			t.Errorf("GET %s = %d %s %q; want %d %s containing %q", c.path, res.StatusCode, res.Header.Get("Content-Type"), body, c.status, c.ctype, c.want)
		}
	}
	// Other spellings of an order number lead to its one address (they
	// were served as they were, 200, with links and a stream that used
	// the canonical form).
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	const canonical = "0192f4c2-0000-7000-8000-000000000000"
	for _, spelling := range []string{strings.ToUpper(canonical), "{" + canonical + "}", "urn:uuid:" + canonical, strings.ReplaceAll(canonical, "-", "")} {
		res, err := noFollow.Get(s.url + "/orders/" + spelling)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != "/orders/"+canonical {
			t.Errorf("GET /orders/%s = %d Location %q, want 301 to /orders/%s", spelling, res.StatusCode, res.Header.Get("Location"), canonical)
		}
	}
}

func TestOpsDashboard(t *testing.T) {
	t.Parallel()
	payment := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "# HELP shop_outbox_backlog x\n# TYPE shop_outbox_backlog gauge\nshop_outbox_backlog{service=\"payment\"} 3\nshop_outbox_backlog_seconds 99\n")
	}))
	defer payment.Close()
	inventory := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "go_goroutines 12\n") // a service without the gauge
	}))
	defer inventory.Close()
	s := startShop(t, map[string]string{"OPS_PEERS": "payment=" + payment.URL + ",inventory=" + inventory.URL + ",shipping=http://127.0.0.1:1"})
	s.product("SKU-0001", "Espresso beans, 1 kg", 2499)
	ids := []string{s.place("tok_visa"), s.place("tok_visa")}
	// A record the order service cannot decode goes to its dead-letter topic.
	w := &kafka.Writer{Addr: kafka.TCP(s.brokers...), RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, Transport: &kafka.Transport{}}
	if err := w.WriteMessages(context.Background(), kafka.Message{Topic: s.prefix + events.TopicPayments, Key: []byte("x"), Value: []byte("not an event")}); err != nil {
		t.Fatal(err)
	}
	w.Close()

	type snap struct {
		OrdersPerSecond *float64 `json:"orders_per_second"`
		PlacedLastMin   *int64   `json:"placed_last_minute"`
		StatusMix       []struct {
			Status string
			Count  int64
		} `json:"status_mix"`
		Groups []struct {
			Group       string
			Lag         *int64
			DeadLetters *int64 `json:"dead_letters"`
		}
		Outbox []struct {
			Service string
			Backlog *int64
		}
		Recent   []struct{ ID string }
		Problems []string
	}
	var last snap
	var lastBody string
	groups := func() map[string][2]int64 {
		m := map[string][2]int64{}
		for _, g := range last.Groups {
			if g.Lag != nil && g.DeadLetters != nil {
				m[g.Group] = [2]int64{*g.Lag, *g.DeadLetters}
			}
		}
		return m
	}
	// Eventually: the relay has published both OrderPlaced (nobody
	// consumes them here: lag 2 for each saga group) and the order group
	// has dead-lettered the bad record.
	testenv.Eventually(t, time.Minute, "lag 2 for the saga groups and one dead letter for order", func() bool {
		res, body := s.do("GET", "/ops/data", "", nil)
		if res.StatusCode != 200 {
			t.Fatalf("/ops/data = %d %s", res.StatusCode, body)
		}
		last, lastBody = snap{}, body
		if err := json.Unmarshal([]byte(body), &last); err != nil {
			t.Fatal(err)
		}
		g := groups()
		return g["payment"] == [2]int64{2, 0} && g["shipping"] == [2]int64{2, 0} && g["order"] == [2]int64{0, 1}
	})
	if last.PlacedLastMin == nil || *last.PlacedLastMin != 2 || last.OrdersPerSecond == nil || *last.OrdersPerSecond <= 0 {
		t.Errorf("rate: %s", lastBody)
	}
	if len(last.StatusMix) != 3 || last.StatusMix[0].Status != "pending" || last.StatusMix[0].Count != 2 {
		t.Errorf("status mix: %+v", last.StatusMix)
	}
	if len(last.Recent) != 2 || last.Recent[0].ID != ids[1] || last.Recent[1].ID != ids[0] {
		t.Errorf("recent orders: %+v, want %v newest first", last.Recent, ids)
	}
	backlogs := map[string]*int64{}
	for _, o := range last.Outbox {
		backlogs[o.Service] = o.Backlog
	}
	if len(backlogs) != 4 || backlogs["order"] == nil || backlogs["payment"] == nil || *backlogs["payment"] != 3 ||
		backlogs["inventory"] != nil || backlogs["shipping"] != nil {
		t.Errorf("outbox backlog: %s", lastBody)
	}
	if len(last.Problems) != 2 {
		t.Errorf("problems: %q, want inventory's and shipping's backlog", last.Problems)
	}
	// Anyone on the port reads the page: the reasons name no address
	// (they said "dial tcp 127.0.0.1:...: connection refused").
	for _, p := range last.Problems {
		if strings.Contains(p, "127.0.0.1") || strings.Contains(p, "dial") || !strings.HasSuffix(p, "(the order service's log says why)") {
			t.Errorf("problem %q: want a short reason without addresses", p)
		}
		if strings.HasPrefix(p, "shipping") && !strings.Contains(p, ": unavailable (") { // nothing on its port
			t.Errorf("problem %q: want shipping unavailable", p)
		}
	}

	res, page := s.do("GET", "/ops", "", nil)
	if strings.Contains(page, "%!") || !regexp.MustCompile(`id="ops-rate">\d+\.\d\d<`).MatchString(page) {
		t.Errorf("ops page shows a figure badly:\n%s", page)
	}
	for _, want := range []string{"<h1>Operations</h1>", `<tr data-service="inventory"><th scope="row">inventory</th><td class="num">n/a</td>`,
		`href="/orders/` + ids[0] + `"`, `data-group="order">`, `<script src="/static/ops.js" defer>`} {
		if res.StatusCode != 200 || !strings.Contains(page, want) {
			t.Errorf("ops page (%d) lacks %s", res.StatusCode, want)
		}
	}
}

// TestShutdownEndsStreams: an open stream must not hold the service's
// graceful shutdown until its deadline.
func TestShutdownEndsStreams(t *testing.T) {
	t.Parallel()
	c := testenv.Common(t)
	c.ShutdownTimeout = 30 * time.Second
	cfg := order.Config{Common: c, Currencies: []string{"USD"}, AdminToken: adminToken,
		InventoryURL: "http://127.0.0.1:1", ShippingURL: "http://127.0.0.1:1"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- order.Run(service.OnStarted(ctx, func(a string) { addr <- a }), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	var s *shop
	select {
	case a := <-addr:
		s = &shop{t: t, url: "http://" + a}
	case err := <-done:
		t.Fatal(err)
	}
	s.product("SKU-0001", "Espresso beans, 1 kg", 2499)
	id := s.place("tok_visa")
	stream, err := http.Get(s.url + "/orders/" + id + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	got, ended := make(chan statusEvent, 4), make(chan error, 1)
	go readEvents(stream.Body, got, ended)
	<-got

	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("shutdown: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("an open stream held the shutdown")
	}
	t.Logf("shut down in %s with a stream open", time.Since(start))
	if err := <-ended; err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("stream ended with %v", err)
	}
}

// TestConfigRejectsBadURLs: the pages' settings fail start-up with the
// variable's name.
func TestConfigRejectsBadURLs(t *testing.T) {
	base := map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres", "HTTP_ADDR": ":0"}
	for _, c := range []struct{ name, value, wantVar string }{
		{"INVENTORY_URL", "127.0.0.1:8082", "INVENTORY_URL"},
		{"SHIPPING_URL", "ftp://shipping", "SHIPPING_URL"},
		{"OPS_PEERS", "payment=http://127.0.0.1:8081,inventory=nope", "OPS_PEERS"},
		{"OPS_PEERS", "payment", "OPS_PEERS"},
	} {
		env := map[string]string{c.name: c.value}
		for k, v := range base {
			env[k] = v
		}
		_, err := config.Load[order.Config](config.WithEnvironment(env))
		if err == nil || !strings.Contains(err.Error(), c.wantVar) {
			t.Errorf("%s=%q: err = %v, want one naming %s", c.name, c.value, err, c.wantVar)
		}
	}
	cfg, err := config.Load[order.Config](config.WithEnvironment(base))
	if err != nil || cfg.InventoryURL != "http://127.0.0.1:8082" || cfg.OpsPeers["shipping"] != "http://127.0.0.1:8083" || len(cfg.OpsPeers) != 3 {
		t.Errorf("defaults: %v %+v", err, cfg)
	}
}

// The order page's label link is the order service's own: it fetches the
// PDF from SHIPPING_URL and passes it on, shipping's errors included, so
// the browser needs no route to shipping (under compose it has no fixed
// host port, and the link pointed at a port nothing listened on).
func TestLabelPassedOn(t *testing.T) {
	t.Parallel()
	pdf := []byte("%PDF-1.7 label")
	shipping := startShipping(t, nil)
	s := startShop(t, map[string]string{"SHIPPING_URL": shipping.URL})
	s.product("SKU-0001", "Espresso beans, 1 kg", 2499)
	// Confirmed, all three: shipping has the label of the first, no
	// shipment for the second, and a cancelled one for the third.
	id, unbooked, cancelled := s.place("tok_visa"), s.place("tok_visa"), s.place("tok_visa")
	s.confirm(id, unbooked, cancelled)
	shipping.answer(id, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/pdf")
		w.Header().Set("Content-Disposition", `inline; filename="label.pdf"`)
		w.Write(pdf) //nolint:errcheck // a test server
	})
	shipping.answer(cancelled, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusGone)
		io.WriteString(w, `{"status":410,"detail":"shipment was cancelled; its label is void","instance":"`+r.URL.Path+`"}`) //nolint:errcheck // a test server
	})
	res, body := s.do("GET", "/orders/"+id+"/label", "", nil)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/pdf" || body != string(pdf) ||
		res.Header.Get("Content-Disposition") != `inline; filename="label.pdf"` {
		t.Errorf("label = %d %s %q", res.StatusCode, res.Header, body)
	}
	res, body = s.do("GET", "/orders/"+unbooked+"/label", "", nil)
	if res.StatusCode != 404 || res.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(body, "no shipment") {
		t.Errorf("label of an order without a shipment = %d %s %s", res.StatusCode, res.Header, body)
	}
	// A browser following the order page's link gets a page that says
	// why, not shipping's problem with its internal path; an API client
	// asking for JSON still gets the problem, shipping's own.
	browser := map[string]string{"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
	for _, c := range []struct {
		path, accept, ctype string
		status              int
		want                string
	}{
		{"/orders/" + unbooked + "/label", browser["Accept"], "text/html", 404, "has not shipped yet"},
		{"/orders/" + cancelled + "/label", browser["Accept"], "text/html", 410, "The order was cancelled"},
		{"/orders/" + cancelled + "/label", "application/json", "application/problem+json", 410, "shipment was cancelled"},
		{"/orders/" + cancelled + "/label", "", "application/problem+json", 410, "shipment was cancelled"},
	} {
		res, body := s.do("GET", c.path, "", map[string]string{"Accept": c.accept})
		if res.StatusCode != c.status || !strings.HasPrefix(res.Header.Get("Content-Type"), c.ctype) || !strings.Contains(body, c.want) ||
			(c.ctype == "text/html" && (!strings.Contains(body, "No label for this order") || strings.Contains(body, "/v1/shipments"))) {
			t.Errorf("GET %s (Accept %q) = %d %s %q; want %d %s with %q", c.path, c.accept, res.StatusCode, res.Header.Get("Content-Type"), body, c.status, c.ctype, c.want)
		}
	}
	if res, body := s.do("HEAD", "/orders/"+id+"/label", "", nil); res.StatusCode != 200 || body != "" || !slices.Contains(shipping.asked(), "HEAD /v1/shipments/"+id+"/label") {
		t.Errorf("HEAD label = %d %q, shipping asked %v; want 200, no body, HEAD passed on", res.StatusCode, body, shipping.asked())
	}
	if res, _ := s.do("GET", "/orders/nope/label", "", nil); res.StatusCode != 400 {
		t.Errorf("label of a non-id = %d, want 400", res.StatusCode)
	}
	shipping.Close()
	if res, body := s.do("GET", "/orders/"+id+"/label", "", nil); res.StatusCode != 502 || !strings.Contains(body, "does not answer") {
		t.Errorf("label with shipping down = %d %s, want 502", res.StatusCode, body)
	}
	if res, body := s.do("GET", "/orders/"+id+"/label", "", browser); res.StatusCode != 502 ||
		!strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, "not available right now") {
		t.Errorf("label with shipping down, for a browser = %d %s, want 502 and a page", res.StatusCode, body)
	}
}
