package order_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/config"
	"github.com/shopflow/shopflow/pkg/platform/service"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
	"github.com/shopflow/shopflow/services/order"
)

const adminToken = "test-admin-token"

// harness is one order service running in-process on the test
// environment, with its own database and topic prefix.
type harness struct {
	t      testing.TB
	base   string
	prefix string
	db     *pgxpool.Pool
	dbURL  string
	kafka  []string
}

func start(t testing.TB, adminTok string) *harness {
	t.Helper()
	return startWith(t, adminTok, func(*config.Common) {})
}

// startWith is start with the common configuration changed by set.
func startWith(t testing.TB, adminTok string, set func(*config.Common)) *harness {
	t.Helper()
	return startConfigured(t, adminTok, func(c *order.Config) { set(&c.Common) })
}

// startConfigured is start with the configuration changed by set.
func startConfigured(t testing.TB, adminTok string, set func(*order.Config)) *harness {
	t.Helper()
	cfg := order.Config{Common: testenv.Common(t), AdminToken: adminTok, Currencies: []string{"USD", "EUR"}}
	set(&cfg)
	common := cfg.Common
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	addr, _ := testenv.Serve(t, func(ctx context.Context, started func(string)) error {
		return order.Run(service.OnStarted(ctx, started), cfg, log)
	})
	h := &harness{t: t, base: "http://" + addr, prefix: common.KafkaTopicPrefix, kafka: common.KafkaBrokers, dbURL: common.DatabaseURL}
	h.db = testenv.PoolAt(t, common.DatabaseURL, "orders")
	return h
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response %d is not JSON: %v: %s", r.status, err, r.body)
	}
	return m
}

func (h *harness) do(method, path string, body any, headers ...string) response {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, h.base+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return response{res.StatusCode, res.Header, b}
}

func (h *harness) putProduct(sku string, price int64, currency string) {
	h.t.Helper()
	r := h.do("PUT", "/v1/products/"+sku, map[string]any{"name": "Product " + sku, "price_cents": price, "currency": currency},
		"Authorization", "Bearer "+adminToken)
	if r.status != http.StatusOK && r.status != http.StatusCreated {
		h.t.Fatalf("PUT product %s = %d %s", sku, r.status, r.body)
	}
}

func orderBody(items ...any) map[string]any {
	if len(items) == 0 {
		items = []any{map[string]any{"sku": "SKU-0001", "quantity": 2}}
	}
	return map[string]any{
		"customer_id": "cust-42", "currency": "USD", "items": items,
		"payment": map[string]any{"card_token": "tok_visa"},
		"shipping_address": map[string]any{"name": "Ada Lovelace", "line1": "1 Main St", "city": "Springfield",
			"postal_code": "12345", "country": "US"},
	}
}

func (h *harness) place(body any, headers ...string) map[string]any {
	h.t.Helper()
	r := h.do("POST", "/v1/orders", body, headers...)
	if r.status != http.StatusCreated {
		h.t.Fatalf("POST /v1/orders = %d %s", r.status, r.body)
	}
	return r.json(h.t)
}

func (h *harness) produce(payloads ...events.Payload) {
	h.t.Helper()
	msgs := make([]kafka.Message, len(payloads))
	for i, p := range payloads {
		msgs[i] = h.message(p)
	}
	h.write(msgs...)
}

// write writes msgs one request each, in order.
func (h *harness) write(msgs ...kafka.Message) {
	h.t.Helper()
	// A transport of its own: kafka-go's shared default one caches
	// metadata from before this test's topics existed.
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(h.kafka...), Balancer: &kafka.Murmur2Balancer{}, Transport: tr,
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	for _, m := range msgs {
		if err := w.WriteMessages(context.Background(), m); err != nil {
			h.t.Fatal(err)
		}
	}
}

// message is p as the service that owns its step sends it.
func (h *harness) message(p events.Payload) kafka.Message {
	h.t.Helper()
	return h.messageFrom(p.EventType().Source(), p)
}

// messageFrom is p with ce_source source.
func (h *harness) messageFrom(source string, p events.Payload) kafka.Message {
	h.t.Helper()
	m, err := events.Encode(events.New(source, p))
	if err != nil {
		h.t.Fatal(err)
	}
	km := kafka.Message{Topic: h.prefix + m.Topic, Key: m.Key, Value: m.Value}
	for _, hd := range m.Headers {
		km.Headers = append(km.Headers, kafka.Header(hd))
	}
	return km
}

// produceAll writes the payloads in one request, so the consumer finds
// them together and applies them in batches.
func (h *harness) produceAll(payloads ...events.Payload) {
	h.t.Helper()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(h.kafka...), Balancer: &kafka.Murmur2Balancer{}, Transport: tr,
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, BatchSize: len(payloads)}
	defer w.Close()
	msgs := make([]kafka.Message, len(payloads))
	for i, p := range payloads {
		msgs[i] = h.message(p)
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		h.t.Fatal(err)
	}
}

// orderEvents reads shop.orders until done says so, decoded.
func (h *harness) orderEvents(done func([]events.Event) bool) ([]events.Event, []kafka.Message) {
	h.t.Helper()
	var evs []events.Event
	msgs := testenv.Consume(h.t, h.prefix+events.TopicOrders, time.Minute, func(ms []kafka.Message) bool {
		evs = evs[:0]
		for _, m := range ms {
			hs := make([]events.Header, len(m.Headers))
			for i, hd := range m.Headers {
				hs[i] = events.Header(hd)
			}
			ev, err := events.Decode(hs, m.Value)
			if err != nil {
				h.t.Fatalf("record on shop.orders does not decode: %v", err)
			}
			evs = append(evs, ev)
		}
		return done(evs)
	})
	return evs, msgs
}

func (h *harness) waitStatus(id, status string) map[string]any {
	h.t.Helper()
	// Not testenv.Eventually: its message is made before the polling, and
	// the order as last seen is what says why it did not get there.
	deadline := time.Now().Add(30 * time.Second)
	for {
		last := h.do("GET", "/v1/orders/"+id, nil).json(h.t)
		if last["status"] == status {
			return last
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("after 30s: order %s never became %s; last seen: %v", id, status, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *harness) countOrders() int {
	h.t.Helper()
	var n int
	if err := h.db.QueryRow(context.Background(), `SELECT count(*) FROM orders`).Scan(&n); err != nil {
		h.t.Fatal(err)
	}
	return n
}

// TestPlaceOrderPublishesOrderPlaced: POST → 201 with the order priced
// from the catalog → one record on shop.orders keyed by the order id with
// the CloudEvents headers.
func TestPlaceOrderPublishesOrderPlaced(t *testing.T) {
	t.Parallel()
	h := start(t, adminToken)
	h.putProduct("SKU-0001", 1999, "USD")
	h.putProduct("SKU-0002", 500, "USD")

	body := orderBody(map[string]any{"sku": "SKU-0001", "quantity": 2}, map[string]any{"sku": "SKU-0002", "quantity": 3})
	r := h.do("POST", "/v1/orders", body, "Idempotency-Key", "k-1")
	if r.status != http.StatusCreated {
		t.Fatalf("POST = %d %s", r.status, r.body)
	}
	o := r.json(t)
	id, _ := o["id"].(string)
	if loc := r.header.Get("Location"); loc != "/v1/orders/"+id {
		t.Errorf("Location = %q, want /v1/orders/%s", loc, id)
	}
	if o["status"] != "pending" || o["total_cents"] != float64(2*1999+3*500) || o["currency"] != "USD" {
		t.Errorf("order = %s", r.body)
	}
	steps, _ := o["steps"].(map[string]any)
	if steps["payment"] != "pending" || steps["inventory"] != "pending" || steps["shipping"] != "pending" {
		t.Errorf("steps = %v", steps)
	}
	if items, _ := o["items"].([]any); len(items) != 2 {
		t.Errorf("items = %v", o["items"])
	}
	// The response shows the instants the database keeps (microseconds),
	// so reading the order back gives the same ones.
	back := h.do("GET", "/v1/orders/"+id, nil).json(t)
	for _, k := range []string{"placed_at", "updated_at"} {
		if back[k] != o[k] {
			t.Errorf("%s: POST answered %v, GET answers %v", k, o[k], back[k])
		}
	}
	// A path escaped more than it must be names the same order (and
	// product): RFC 3986 calls the two forms equivalent.
	if r := h.do("GET", "/v1/orders/"+fmt.Sprintf("%%%02X", id[0])+id[1:], nil); r.status != http.StatusOK || r.json(t)["id"] != id {
		t.Errorf("GET with the id's first character escaped = %d %s", r.status, r.body)
	}
	if r := h.do("PUT", "/v1/products/SKU%2D0002", map[string]any{"name": "Product SKU-0002", "price_cents": 500, "currency": "USD"},
		"Authorization", "Bearer "+adminToken); r.status != http.StatusOK {
		t.Errorf("PUT /v1/products/SKU%%2D0002 (unchanged) = %d %s, want 200", r.status, r.body)
	}

	evs, msgs := h.orderEvents(func(evs []events.Event) bool { return len(evs) >= 1 })
	if string(msgs[0].Key) != id {
		t.Errorf("record key = %q, want the order id %s", msgs[0].Key, id)
	}
	hdr := map[string]string{}
	for _, hd := range msgs[0].Headers {
		hdr[hd.Key] = string(hd.Value)
	}
	for k, want := range map[string]string{"ce_specversion": "1.0", "ce_source": "/shopflow/order",
		"ce_type": "shop.order.placed.v1", "ce_subject": id, "content-type": "application/json"} {
		if hdr[k] != want {
			t.Errorf("header %s = %q, want %q", k, hdr[k], want)
		}
	}
	if hdr["ce_id"] == "" || hdr["ce_time"] == "" {
		t.Errorf("headers lack ce_id or ce_time: %v", hdr)
	}
	p, ok := evs[0].Payload.(events.OrderPlaced)
	if !ok || p.OrderID != id || p.TotalCents != 2*1999+3*500 || len(p.Items) != 2 || p.Items[0].UnitPriceCents != 1999 ||
		p.Payment.CardToken != "tok_visa" || p.ShippingAddress.Country != "US" {
		t.Errorf("OrderPlaced = %+v", evs[0].Payload)
	}
}

// TestPricesComeFromTheCatalog: a price in the request is refused, and a
// price change applies to the next order only.
func TestPricesComeFromTheCatalog(t *testing.T) {
	t.Parallel()
	h := start(t, adminToken)
	h.putProduct("SKU-0001", 1000, "USD")
	withPrice := orderBody(map[string]any{"sku": "SKU-0001", "quantity": 1, "unit_price_cents": 1})
	if r := h.do("POST", "/v1/orders", withPrice); r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "unit_price_cents") {
		t.Errorf("a client price = %d %s, want 400 naming unit_price_cents", r.status, r.body)
	}
	first := h.place(orderBody())
	h.putProduct("SKU-0001", 1500, "USD")
	second := h.place(orderBody())
	if first["total_cents"] != float64(2000) || second["total_cents"] != float64(3000) {
		t.Errorf("totals = %v, %v; want 2000 then 3000", first["total_cents"], second["total_cents"])
	}
	again := h.do("GET", "/v1/orders/"+first["id"].(string), nil).json(t)
	if again["total_cents"] != float64(2000) {
		t.Errorf("first order's total changed with the catalog: %v", again["total_cents"])
	}
}

// TestEmailCustomerIDs: ordinary email addresses, with + and ', are
// customer ids; an order placed with one is listed under it (the query
// string encoded, a + as %2B); markup is still refused.
func TestEmailCustomerIDs(t *testing.T) {
	t.Parallel()
	h := start(t, adminToken)
	h.putProduct("SKU-0001", 1999, "USD")
	for _, id := range []string{"alice+shop@example.com", "o'brien@example.com"} {
		b := orderBody()
		b["customer_id"] = id
		o := h.place(b)
		r := h.do("GET", "/v1/orders?customer_id="+url.QueryEscape(id), nil)
		list, _ := r.json(t)["orders"].([]any)
		if r.status != http.StatusOK || len(list) != 1 || list[0].(map[string]any)["id"] != o["id"] {
			t.Errorf("orders of %s = %d %s, want the one placed", id, r.status, r.body)
		}
	}
	b := orderBody()
	b["customer_id"] = "<script>@example.com"
	if r := h.do("POST", "/v1/orders", b); r.status != http.StatusBadRequest || !strings.Contains(string(r.body), `"field":"customer_id"`) {
		t.Errorf("customer id with markup = %d %s, want 400", r.status, r.body)
	}
}

// TestExpectedTotal: with expected_total_cents, an order that would cost
// another total (the price changed after the client showed it) is 409 and
// not placed; the refusal is not stored under its key, so the same key
// places the order once the price is back, and a new request with the new
// total is placed. Without the field, the catalog's price applies.
func TestExpectedTotal(t *testing.T) {
	t.Parallel()
	h := start(t, adminToken)
	h.putProduct("SKU-0001", 4900, "USD")
	expecting := func(total int64) map[string]any {
		b := orderBody(map[string]any{"sku": "SKU-0001", "quantity": 1})
		b["expected_total_cents"] = total
		return b
	}
	if o := h.place(expecting(4900), "Idempotency-Key", "right"); o["total_cents"] != float64(4900) {
		t.Errorf("expected total met: total %v", o["total_cents"])
	}
	h.putProduct("SKU-0001", 9900, "USD")
	r := h.do("POST", "/v1/orders", expecting(4900), "Idempotency-Key", "cart")
	p := r.json(t)
	if r.status != http.StatusConflict || r.header.Get("Content-Type") != "application/problem+json" ||
		p["type"] != "urn:shopflow:problem:total-changed" || p["total_cents"] != float64(9900) ||
		p["expected_total_cents"] != float64(4900) || !strings.Contains(p["detail"].(string), "9900") {
		t.Errorf("price changed under the cart = %d %s, want 409 total-changed naming 9900 and 4900", r.status, r.body)
	}
	if n := h.countOrders(); n != 1 {
		t.Fatalf("%d orders after the refusal, want 1", n)
	}
	// The refusal is not the key's answer: the same key and body place
	// the order once the price is back (not a 409 replayed, not a 422).
	h.putProduct("SKU-0001", 4900, "USD")
	if o := h.place(expecting(4900), "Idempotency-Key", "cart"); o["total_cents"] != float64(4900) {
		t.Errorf("same key after the price came back: total %v", o["total_cents"])
	}
	h.putProduct("SKU-0001", 9900, "USD")
	if o := h.place(expecting(9900), "Idempotency-Key", "accepted"); o["total_cents"] != float64(9900) {
		t.Errorf("new total accepted: total %v", o["total_cents"])
	}
	// A replay wins over the check: the first answer, though the price moved.
	if r := h.do("POST", "/v1/orders", expecting(4900), "Idempotency-Key", "right"); r.status != http.StatusCreated {
		t.Errorf("replay after a price change = %d %s, want the first answer", r.status, r.body)
	}
	if r := h.do("POST", "/v1/orders", expecting(-1)); r.status != http.StatusBadRequest ||
		!strings.Contains(string(r.body), `"field":"expected_total_cents"`) {
		t.Errorf("negative expected total = %d %s, want 400 naming it", r.status, r.body)
	}
	if o := h.place(orderBody(map[string]any{"sku": "SKU-0001", "quantity": 1})); o["total_cents"] != float64(9900) {
		t.Errorf("without expected_total_cents: total %v, want the catalog's 9900", o["total_cents"])
	}
	if n := h.countOrders(); n != 4 {
		t.Errorf("%d orders, want 4", n)
	}
}

// TestSagaOnTheWire: results on the result topics move orders to
// confirmed or cancelled, and OrderConfirmed/OrderCancelled go out.
func TestSagaOnTheWire(t *testing.T) {
	t.Parallel()
	h := start(t, adminToken)
	h.putProduct("SKU-0001", 1999, "USD")
	ok := h.place(orderBody())["id"].(string)
	bad := h.place(orderBody())["id"].(string)
	h.produce(
		events.ShipmentScheduled{OrderID: ok, ShipmentID: "s1", Carrier: "SF", TrackingNumber: "SF0000000001", PickupAt: time.Now()},
		events.PaymentAuthorized{OrderID: ok, PaymentID: "p1", AmountCents: 3998, Currency: "USD", AuthorizationCode: "A"},
		events.StockReserved{OrderID: ok, ReservationID: "r1", Items: []events.StockLine{{SKU: "SKU-0001", Quantity: 2}}},
		events.PaymentAuthorized{OrderID: ok, PaymentID: "p1", AmountCents: 3998, Currency: "USD", AuthorizationCode: "A"},
		events.StockRejected{OrderID: bad, Short: []events.ShortLine{{SKU: "SKU-0001", Requested: 2, Available: 1}}},
	)
	got := h.waitStatus(ok, "confirmed")
	if got["tracking_number"] != "SF0000000001" || got["confirmed_at"] == nil {
		t.Errorf("confirmed order = %v", got)
	}
	got = h.waitStatus(bad, "cancelled")
	if !strings.Contains(got["reason"].(string), "out of stock: SKU-0001") || got["cancelled_at"] == nil {
		t.Errorf("cancelled order = %v", got)
	}
	if steps := got["steps"].(map[string]any); steps["inventory"] != "rejected" {
		t.Errorf("steps = %v", steps)
	}
	// Compensation results update the steps of the cancelled order.
	h.produce(events.PaymentRefunded{OrderID: bad, PaymentID: "p2", AmountCents: 3998, Currency: "USD", Kind: "void"})
	testenv.Eventually(t, 30*time.Second, "payment step never became voided", func() bool {
		return h.do("GET", "/v1/orders/"+bad, nil).json(t)["steps"].(map[string]any)["payment"] == "voided"
	})

	evs, _ := h.orderEvents(func(evs []events.Event) bool { return len(evs) >= 4 })
	var confirmed, cancelled int
	for _, ev := range evs {
		switch p := ev.Payload.(type) {
		case events.OrderConfirmed:
			confirmed++
			if p.OrderID != ok {
				t.Errorf("OrderConfirmed for %s", p.OrderID)
			}
		case events.OrderCancelled:
			cancelled++
			if p.OrderID != bad || !strings.Contains(p.Reason, "out of stock") {
				t.Errorf("OrderCancelled = %+v", p)
			}
		}
	}
	if confirmed != 1 || cancelled != 1 {
		t.Errorf("OrderConfirmed×%d OrderCancelled×%d, want one each (duplicate PaymentAuthorized must not confirm twice)", confirmed, cancelled)
	}

	// A result for an order that does not exist is dead-lettered with the
	// reason, at once (retrying cannot make the order appear).
	stray := "0190f0f0-0000-7000-8000-00000000dead"
	h.produce(events.PaymentAuthorized{OrderID: stray, PaymentID: "p9", AmountCents: 1, Currency: "USD", AuthorizationCode: "A"})
	dead := testenv.Consume(t, h.prefix+events.DLQTopic("order"), time.Minute, testenv.Count(1))
	hdr := map[string]string{}
	for _, hd := range dead[0].Headers {
		hdr[hd.Key] = string(hd.Value)
	}
	if string(dead[0].Key) != stray || !strings.Contains(hdr[events.HeaderDLQError], "unknown order") ||
		hdr[events.HeaderDLQSourceTopic] != h.prefix+events.TopicPayments || hdr[events.HeaderDLQAttempts] != "1" {
		t.Errorf("dead letter key %q headers %v", dead[0].Key, hdr)
	}
}

// TestSagaInBatches: the results of many orders, arriving together (and
// twice) with a result for an unknown order among them, confirm each order
// once; the stray result alone is dead-lettered.
func TestSagaInBatches(t *testing.T) {
	t.Parallel()
	h := start(t, adminToken)
	h.putProduct("SKU-0001", 1999, "USD")
	const n = 40
	ids := make([]string, n)
	for i := range ids {
		ids[i] = h.place(orderBody())["id"].(string)
	}
	var results []events.Payload
	for round := range 2 {
		for i, id := range ids {
			results = append(results,
				events.PaymentAuthorized{OrderID: id, PaymentID: "p", AmountCents: 3998, Currency: "USD", AuthorizationCode: "A"},
				events.StockReserved{OrderID: id, ReservationID: "r", Items: []events.StockLine{{SKU: "SKU-0001", Quantity: 2}}},
				events.ShipmentScheduled{OrderID: id, ShipmentID: "s", Carrier: "SF", TrackingNumber: fmt.Sprintf("SF%010d", i), PickupAt: time.Now()})
			if round == 0 && i == n/2 {
				results = append(results, events.PaymentAuthorized{OrderID: "0190f0f0-0000-7000-8000-00000000dead",
					PaymentID: "p", AmountCents: 1, Currency: "USD", AuthorizationCode: "A"})
			}
		}
	}
	h.produceAll(results...)
	for i, id := range ids {
		if got := h.waitStatus(id, "confirmed"); got["tracking_number"] != fmt.Sprintf("SF%010d", i) {
			t.Errorf("order %d tracking %v", i, got["tracking_number"])
		}
	}
	dead := testenv.Consume(t, h.prefix+events.DLQTopic("order"), time.Minute, testenv.Count(1))
	if string(dead[0].Key) != "0190f0f0-0000-7000-8000-00000000dead" {
		t.Errorf("dead-lettered %q", dead[0].Key)
	}
	evs, _ := h.orderEvents(func(evs []events.Event) bool { return len(evs) >= 2*n })
	confirmed := map[string]int{}
	for _, ev := range evs {
		if p, ok := ev.Payload.(events.OrderConfirmed); ok {
			confirmed[p.OrderID]++
		}
	}
	for _, id := range ids {
		if confirmed[id] != 1 {
			t.Errorf("order %s confirmed %d times on the wire", id, confirmed[id])
		}
	}
}

// TestAForgedResultIsDeadLettered: a result that is not from the service
// owning its step, or names another amount or other lines than its
// order's, is dead-lettered at once with the reason, and changes nothing:
// the genuine answers decide the order. A forged 1 JPY authorization used
// to confirm an order whose payment was then declined (shipped unpaid).
func TestAForgedResultIsDeadLettered(t *testing.T) {
	t.Parallel()
	h := start(t, adminToken)
	h.putProduct("SKU-0001", 1999, "USD")
	id := h.place(orderBody())["id"].(string) // 2 × SKU-0001: 3998 USD
	authorized := events.PaymentAuthorized{OrderID: id, PaymentID: "p-forged", AmountCents: 3998, Currency: "USD", AuthorizationCode: "FORGED"}
	cheap := authorized
	cheap.AmountCents, cheap.Currency = 1, "JPY"
	scheduled := events.ShipmentScheduled{OrderID: id, ShipmentID: "s1", Carrier: "SF", TrackingNumber: "SF0000000001", PickupAt: time.Now()}
	type forgery struct {
		msg    kafka.Message
		reason string
	}
	forged := []forgery{
		{h.messageFrom("/shopflow/forger", authorized), `comes from "/shopflow/forger": the order service applies it only from "/shopflow/payment"`},
		{h.messageFrom(events.SourcePayment, scheduled), `comes from "/shopflow/payment": the order service applies it only from "/shopflow/shipping"`},
		{h.message(cheap), "it is for 1 JPY (minor units), the order's total is 3998 USD"},
		{h.message(events.StockReserved{OrderID: id, ReservationID: "r-forged", Items: []events.StockLine{{SKU: "SKU-0001", Quantity: 1}}}),
			"it names SKU-0001×1, the order's lines are SKU-0001×2"},
		{h.message(events.PaymentRefunded{OrderID: id, PaymentID: "p-forged", AmountCents: 1999, Currency: "USD", Kind: events.RefundKindRefund}),
			"it is for 1999 USD (minor units), the order's total is 3998 USD"},
		{h.message(events.StockRejected{OrderID: id, Short: []events.ShortLine{{SKU: "SKU-0002", Requested: 2, Available: 0}}}),
			"it names SKU-0002×2, the order's lines are SKU-0001×2"},
	}
	var msgs []kafka.Message
	for _, f := range forged {
		msgs = append(msgs, f.msg)
	}
	// Then the genuine answers: the order is cancelled for the decline.
	msgs = append(msgs, h.message(scheduled),
		h.message(events.StockReserved{OrderID: id, ReservationID: "r1", Items: []events.StockLine{{SKU: "SKU-0001", Quantity: 2}}}),
		h.message(events.PaymentDeclined{OrderID: id, AmountCents: 3998, Currency: "USD", Reason: "card_declined"}))
	h.write(msgs...)

	var got map[string]any
	testenv.Eventually(t, 30*time.Second, "the order never settled", func() bool {
		got = h.do("GET", "/v1/orders/"+id, nil).json(t)
		return got["status"] != "pending"
	})
	if steps, _ := got["steps"].(map[string]any); got["status"] != "cancelled" || got["reason"] != "payment declined: card_declined" ||
		steps["payment"] != "declined" || steps["inventory"] != "reserved" || steps["shipping"] != "scheduled" {
		t.Fatalf("order %s: %v, steps %v, reason %q; want cancelled for the decline, every step the genuine answer's",
			id, got["status"], got["steps"], got["reason"])
	}
	// Each forged result dead-lettered once, with its reason. In any
	// order: they went to three topics, which the consumer reads side by
	// side.
	dead := testenv.Consume(t, h.prefix+events.DLQTopic("order"), time.Minute, testenv.Count(len(forged)))
	matched := make([]bool, len(forged))
	for i, d := range dead {
		hdr := map[string]string{}
		for _, hd := range d.Headers {
			hdr[hd.Key] = string(hd.Value)
		}
		j := slices.IndexFunc(forged, func(f forgery) bool { return strings.Contains(hdr[events.HeaderDLQError], f.reason) })
		if j < 0 || matched[j] || string(d.Key) != id || hdr[events.HeaderDLQAttempts] != "1" ||
			!strings.HasPrefix(hdr[events.HeaderDLQError], "permanent: ") {
			t.Errorf("dead letter %d: key %q, %s attempt(s), error %q; want one per forged result, each with its reason, once",
				i, d.Key, hdr[events.HeaderDLQAttempts], hdr[events.HeaderDLQError])
			continue
		}
		matched[j] = true
	}
	for j, ok := range matched {
		if !ok {
			t.Errorf("no dead letter says %q", forged[j].reason)
		}
	}
	evs, _ := h.orderEvents(func(evs []events.Event) bool { return len(evs) >= 2 })
	for _, ev := range evs {
		if _, ok := ev.Payload.(events.OrderConfirmed); ok {
			t.Errorf("OrderConfirmed sent for %s", id)
		}
	}
}

// Results beyond the event contract's bounds are dead-lettered at their
// first attempt, the reason naming the field and the bound, and the
// genuine results after them settle the order. A decline whose reason
// held U+0000 failed its update five times (PostgreSQL cannot store it
// in text) before it was dead-lettered, and a shipment's tracking number
// of any length was taken and shown.
func TestResultsBeyondTheContractAreDeadLettered(t *testing.T) {
	t.Parallel()
	h := start(t, adminToken)
	h.putProduct("SKU-0001", 1999, "USD")
	id := h.place(orderBody())["id"].(string) // 2 × SKU-0001: 3998 USD
	many := events.StockReserved{OrderID: id, ReservationID: "r1"}
	for range events.MaxLines + 1 {
		many.Items = append(many.Items, events.StockLine{SKU: "SKU-0001", Quantity: 1})
	}
	bad := []struct {
		p    events.Payload
		says string
	}{
		{events.PaymentDeclined{OrderID: id, AmountCents: 3998, Currency: "USD", Reason: "card\x00declined"},
			`invalid field "reason": holds U+0000 (NUL)`},
		{many, `invalid field "items": 101 items, more than the 100 allowed`},
		{events.ShipmentScheduled{OrderID: id, ShipmentID: "s1", Carrier: "SF", TrackingNumber: strings.Repeat("9", 256), PickupAt: time.Now()},
			`invalid field "tracking_number": 256 characters, more than the 255 allowed`},
	}
	want := map[string]string{}
	var msgs []kafka.Message
	for _, b := range bad {
		ev := events.New(b.p.EventType().Source(), b.p)
		msgs = append(msgs, testenv.Forged(t, h.prefix, ev))
		want[ev.ID] = b.says
	}
	h.write(msgs...)
	h.produce(
		events.PaymentAuthorized{OrderID: id, PaymentID: "p1", AmountCents: 3998, Currency: "USD", AuthorizationCode: "A"},
		events.StockReserved{OrderID: id, ReservationID: "r1", Items: []events.StockLine{{SKU: "SKU-0001", Quantity: 2}}},
		events.ShipmentScheduled{OrderID: id, ShipmentID: "s1", Carrier: "SF", TrackingNumber: "SF0000000001", PickupAt: time.Now()},
	)
	testenv.DeadLettered(t, h.prefix+events.DLQTopic("order"), time.Minute, want)
	if got := h.waitStatus(id, "confirmed"); got["tracking_number"] != "SF0000000001" {
		t.Errorf("order %s: tracking number %v, want the genuine SF0000000001", id, got["tracking_number"])
	}
}

// TestCustomerCancel: pending → cancelled (OrderCancelled out); again →
// unchanged; confirmed → 409.
func TestCustomerCancel(t *testing.T) {
	t.Parallel()
	h := start(t, adminToken)
	h.putProduct("SKU-0001", 1999, "USD")
	id := h.place(orderBody())["id"].(string)
	r := h.do("POST", "/v1/orders/"+id+"/cancel", nil)
	if r.status != http.StatusOK || r.json(t)["status"] != "cancelled" || r.json(t)["reason"] != "cancelled by customer" {
		t.Fatalf("cancel = %d %s", r.status, r.body)
	}
	if back := h.do("GET", "/v1/orders/"+id, nil).json(t); back["cancelled_at"] != r.json(t)["cancelled_at"] {
		t.Errorf("cancelled_at: the cancel answered %v, GET answers %v", r.json(t)["cancelled_at"], back["cancelled_at"])
	}
	if r := h.do("POST", "/v1/orders/"+id+"/cancel", nil); r.status != http.StatusOK {
		t.Errorf("second cancel = %d %s, want 200 (no change)", r.status, r.body)
	}
	evs, _ := h.orderEvents(func(evs []events.Event) bool { return len(evs) >= 2 })
	if p, ok := evs[1].Payload.(events.OrderCancelled); !ok || p.OrderID != id || p.Reason != "cancelled by customer" {
		t.Errorf("second record = %+v, want OrderCancelled by customer", evs[1].Payload)
	}

	done := h.place(orderBody())["id"].(string)
	h.produce(
		events.PaymentAuthorized{OrderID: done, PaymentID: "p", AmountCents: 3998, Currency: "USD", AuthorizationCode: "A"},
		events.StockReserved{OrderID: done, ReservationID: "r", Items: []events.StockLine{{SKU: "SKU-0001", Quantity: 2}}},
		events.ShipmentScheduled{OrderID: done, ShipmentID: "s", Carrier: "SF", TrackingNumber: "T", PickupAt: time.Now()},
	)
	h.waitStatus(done, "confirmed")
	r = h.do("POST", "/v1/orders/"+done+"/cancel", nil)
	if r.status != http.StatusConflict || r.header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("cancel confirmed = %d %s, want 409 problem", r.status, r.body)
	}
	if r := h.do("POST", "/v1/orders/0190f0f0-0000-7000-8000-000000000000/cancel", nil); r.status != http.StatusNotFound {
		t.Errorf("cancel unknown = %d, want 404", r.status)
	}
}

// An order no step answers (here: no payment, inventory or shipping
// service at all) is cancelled ORDER_PENDING_TIMEOUT after it was placed,
// and OrderCancelled goes out for the services that did act on it to
// release what they hold. (That an order settled in time is left alone is
// TestExpirePending's, in internal/app, where the clock is the test's.)
func TestPendingOrderExpires(t *testing.T) {
	t.Parallel()
	h := startConfigured(t, adminToken, func(c *order.Config) { c.PendingTimeout = time.Second })
	h.putProduct("SKU-0001", 1999, "USD")
	id := h.place(orderBody())["id"].(string)

	const reason = "no answer from payment, inventory, shipping within 1s"
	if o := h.waitStatus(id, "cancelled"); o["reason"] != reason {
		t.Errorf("reason %q, want %q", o["reason"], reason)
	}
	evs, _ := h.orderEvents(func(evs []events.Event) bool { return len(evs) >= 2 })
	if p, ok := evs[1].Payload.(events.OrderCancelled); !ok || p.OrderID != id || p.Reason != reason {
		t.Errorf("second record = %+v, want OrderCancelled for %s: %q", evs[1].Payload, id, reason)
	}
}

// TestIdempotencyKey follows Stripe's rules.
func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	h := start(t, adminToken)
	h.putProduct("SKU-0001", 1999, "USD")

	first := h.do("POST", "/v1/orders", orderBody(), "Idempotency-Key", "same")
	// The same body with other spacing and key order is the same request.
	reordered := `{"currency":"USD","customer_id":"cust-42","items":[{"quantity":2,"sku":"SKU-0001"}],
	  "shipping_address":{"country":"US","postal_code":"12345","city":"Springfield","line1":"1 Main St","name":"Ada Lovelace"},
	  "payment":{"card_token":"tok_visa"}}`
	replay := h.do("POST", "/v1/orders", reordered, "Idempotency-Key", "same")
	if first.status != 201 || replay.status != 201 || !bytes.Equal(first.body, replay.body) ||
		replay.header.Get("Location") != first.header.Get("Location") {
		t.Fatalf("replay = %d %s, want the first response %d %s", replay.status, replay.body, first.status, first.body)
	}
	// Stripe's mark of a replay: only on the retry's answer.
	if f, r := first.header.Get("Idempotent-Replayed"), replay.header.Get("Idempotent-Replayed"); f != "" || r != "true" {
		t.Errorf("Idempotent-Replayed: first answer %q, replay %q; want none, then true", f, r)
	}
	other := orderBody(map[string]any{"sku": "SKU-0001", "quantity": 3})
	if r := h.do("POST", "/v1/orders", other, "Idempotency-Key", "same"); r.status != http.StatusUnprocessableEntity {
		t.Errorf("same key, other body = %d %s, want 422", r.status, r.body)
	}
	if n := h.countOrders(); n != 1 {
		t.Errorf("%d orders, want 1", n)
	}
	// A refused request saves nothing: the key stays usable.
	bad := orderBody(map[string]any{"sku": "SKU-9999", "quantity": 1})
	if r := h.do("POST", "/v1/orders", bad, "Idempotency-Key", "fresh"); r.status != http.StatusBadRequest {
		t.Fatalf("unknown SKU = %d", r.status)
	}
	if r := h.do("POST", "/v1/orders", orderBody(), "Idempotency-Key", "fresh"); r.status != http.StatusCreated {
		t.Errorf("key after a refused request = %d %s, want 201", r.status, r.body)
	}
	if r := h.do("POST", "/v1/orders", orderBody(), "Idempotency-Key", strings.Repeat("x", 256)); r.status != http.StatusBadRequest {
		t.Errorf("256-character key = %d, want 400", r.status)
	}
}

// TestIdempotencyKeyMadeWhenAbsent: a placement sent without an
// Idempotency-Key is stored under one the service makes and names in its
// answer, so a client left without a definite answer (a 503, a dropped
// connection) can send it again with that key and place the order once.
// The answer named no key: such a client could only send a new order.
// Every answer names it, a refusal of the body's form too.
func TestIdempotencyKeyMadeWhenAbsent(t *testing.T) {
	t.Parallel()
	h := start(t, adminToken)
	h.putProduct("SKU-0001", 1999, "USD")
	first := h.do("POST", "/v1/orders", orderBody())
	key := first.header.Get("Idempotency-Key")
	if first.status != http.StatusCreated || key == "" {
		t.Fatalf("keyless placement = %d, Idempotency-Key %q: want 201 naming a key", first.status, key)
	}
	retry := h.do("POST", "/v1/orders", orderBody(), "Idempotency-Key", key)
	if retry.status != http.StatusCreated || !bytes.Equal(retry.body, first.body) || retry.header.Get("Idempotency-Key") != key {
		t.Errorf("retry with the key made = %d %s (key %q), want the first answer", retry.status, retry.body,
			retry.header.Get("Idempotency-Key"))
	}
	if k := h.do("POST", "/v1/orders", orderBody()).header.Get("Idempotency-Key"); k == "" || k == key {
		t.Errorf("a second keyless placement got key %q, want one of its own (the first was %q)", k, key)
	}
	if n := h.countOrders(); n != 2 {
		t.Errorf("%d orders, want 2", n)
	}
	// Every answer names the key, refusals of the body's form included
	// (a 415 and a malformed body's 400 named none).
	for _, r := range []struct {
		name   string
		res    response
		status int
	}{
		{"not JSON", h.do("POST", "/v1/orders", "customer_id=cust-42", "Content-Type", "text/plain"), http.StatusUnsupportedMediaType},
		{"malformed JSON", h.do("POST", "/v1/orders", `{"customer_id":`), http.StatusBadRequest},
		{"an unknown field", h.do("POST", "/v1/orders", `{"customer":"cust-42"}`), http.StatusBadRequest},
	} {
		if r.res.status != r.status || r.res.header.Get("Idempotency-Key") == "" {
			t.Errorf("keyless placement, %s: %d, Idempotency-Key %q; want %d naming a key", r.name, r.res.status, r.res.header.Get("Idempotency-Key"), r.status)
		}
	}
}

// TestPlacementAnswersWhileTheOrdersAreLocked: with the orders table
// held by another transaction (LOCK TABLE, a long migration; a stalled
// PostgreSQL alike), a placement is answered at the request deadline
// (HTTP_REQUEST_TIMEOUT, 1 s here): 503 with Retry-After and the
// Idempotency-Key, given or made, and a retry with that key once the
// lock is gone places the order once, whether the first attempt's batch
// committed after all or not. So is a read of an order. The placement
// waited for its group, whose timeout (30 s) equalled the server's write
// timeout: the client got no answer at all.
func TestPlacementAnswersWhileTheOrdersAreLocked(t *testing.T) {
	t.Parallel()
	const deadline = time.Second
	h := startWith(t, adminToken, func(c *config.Common) { c.HTTPRequestTimeout = deadline })
	h.putProduct("SKU-0001", 1999, "USD")
	before := h.place(orderBody())
	ctx := context.Background()
	tx, err := h.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // released below
	if _, err := tx.Exec(ctx, `LOCK TABLE orders IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}

	client := &http.Client{Timeout: 20 * time.Second}
	send := func(method, path string, key string) (*http.Response, []byte, time.Duration) {
		t.Helper()
		var body io.Reader
		if method == "POST" {
			b, _ := json.Marshal(orderBody())
			body = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, h.base+path, body)
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		start := time.Now()
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: no answer after %s: %v", method, path, time.Since(start).Round(time.Millisecond), err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, b, time.Since(start)
	}
	keys := map[string]string{"given": "locked-1", "made": ""}
	for _, which := range []string{"given", "made"} {
		res, body, took := send("POST", "/v1/orders", keys[which])
		key := res.Header.Get("Idempotency-Key")
		if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" || key == "" ||
			(keys[which] != "" && key != keys[which]) || !strings.Contains(string(body), "Idempotency-Key") {
			t.Fatalf("placement (key %s) with the orders locked = %d after %s, Retry-After %q, Idempotency-Key %q: %s; "+
				"want 503 with Retry-After and the key", which, res.StatusCode, took.Round(time.Millisecond),
				res.Header.Get("Retry-After"), key, body)
		}
		keys[which] = key
	}
	if res, body, took := send("GET", "/v1/orders/"+before["id"].(string), ""); res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("GET an order with the orders locked = %d after %s: %s, want 503", res.StatusCode, took.Round(time.Millisecond), body)
	}

	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for which, key := range keys {
		// The first attempt's batch may still hold the key (409) until
		// its backend, which waited on the lock, ends.
		var res *http.Response
		var body []byte
		testenv.Eventually(t, 30*time.Second, "the retry with key "+key+" answered", func() bool {
			res, body, _ = send("POST", "/v1/orders", key)
			return res.StatusCode != http.StatusConflict
		})
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("retry with the %s key = %d %s, want 201", which, res.StatusCode, body)
		}
		if again, body2, _ := send("POST", "/v1/orders", key); again.StatusCode != http.StatusCreated || !bytes.Equal(body2, body) {
			t.Errorf("second retry with the %s key = %d %s, want the first answer replayed", which, again.StatusCode, body2)
		}
	}
	if n := h.countOrders(); n != 3 {
		t.Errorf("%d orders, want 3: one before the lock, one per key", n)
	}
}

// TestIdempotencyKeyOutlivesCatalogChanges: a retry gets the first answer
// even when its body would no longer be accepted (the product sold in
// another currency or withdrawn since), and another body under the key is
// 422, not the 400 its content would get. Without a key, the new rules
// apply.
func TestIdempotencyKeyOutlivesCatalogChanges(t *testing.T) {
	t.Parallel()
	h := start(t, adminToken)
	h.putProduct("SKU-0001", 1999, "USD")
	first := h.do("POST", "/v1/orders", orderBody(), "Idempotency-Key", "before")
	if first.status != http.StatusCreated {
		t.Fatalf("first = %d %s", first.status, first.body)
	}
	replays := func(when string) {
		t.Helper()
		r := h.do("POST", "/v1/orders", orderBody(), "Idempotency-Key", "before")
		if r.status != http.StatusCreated || !bytes.Equal(r.body, first.body) || r.header.Get("Location") != first.header.Get("Location") {
			t.Errorf("%s: retry = %d %s, want the first answer", when, r.status, r.body)
		}
	}
	h.putProduct("SKU-0001", 1999, "EUR")
	replays("sold in EUR now")
	r := h.do("PUT", "/v1/products/SKU-0001", map[string]any{"name": "Gone", "price_cents": 1999, "currency": "EUR", "active": false},
		"Authorization", "Bearer "+adminToken)
	if r.status != http.StatusOK {
		t.Fatalf("withdraw = %d %s", r.status, r.body)
	}
	replays("withdrawn")

	unknown := orderBody(map[string]any{"sku": "SKU-9999", "quantity": 1})
	if r := h.do("POST", "/v1/orders", unknown, "Idempotency-Key", "before"); r.status != http.StatusUnprocessableEntity {
		t.Errorf("other body (unknown SKU) under the key = %d %s, want 422", r.status, r.body)
	}
	notSold := orderBody()
	notSold["currency"] = "GBP"
	if r := h.do("POST", "/v1/orders", notSold, "Idempotency-Key", "before"); r.status != http.StatusUnprocessableEntity {
		t.Errorf("other body (currency not sold) under the key = %d %s, want 422", r.status, r.body)
	}
	if r := h.do("POST", "/v1/orders", orderBody()); r.status != http.StatusBadRequest {
		t.Errorf("without a key = %d %s, want 400", r.status, r.body)
	}
	if r := h.do("POST", "/v1/orders", orderBody(), "Idempotency-Key", "after"); r.status != http.StatusBadRequest {
		t.Errorf("a fresh key = %d %s, want 400", r.status, r.body)
	}
	if n := h.countOrders(); n != 1 {
		t.Errorf("%d orders, want 1", n)
	}
}

// TestIdempotencyKeyExpiryAndInFlight: a key older than 24 hours is new
// again (another body makes a second order, not a 422), and a key another
// transaction holds right now answers 409 and stores nothing.
func TestIdempotencyKeyExpiryAndInFlight(t *testing.T) {
	t.Parallel()
	h := start(t, adminToken)
	h.putProduct("SKU-0001", 1999, "USD")
	ctx := context.Background()

	first := h.place(orderBody(), "Idempotency-Key", "old")
	if _, err := h.db.Exec(ctx, `UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'old'`); err != nil {
		t.Fatal(err)
	}
	second := h.place(orderBody(map[string]any{"sku": "SKU-0001", "quantity": 3}), "Idempotency-Key", "old")
	if first["id"] == second["id"] {
		t.Fatalf("an expired key replayed order %v", first["id"])
	}
	if r := h.do("POST", "/v1/orders", orderBody(map[string]any{"sku": "SKU-0001", "quantity": 3}), "Idempotency-Key", "old"); r.status != 201 || !strings.Contains(string(r.body), second["id"].(string)) {
		t.Errorf("replay after reuse = %d %s, want the second order", r.status, r.body)
	}

	// Hold the key the way a request in flight does.
	tx, err := h.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // test cleanup
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('shopflow.idempotency.' || 'held', 0))`); err != nil {
		t.Fatal(err)
	}
	if r := h.do("POST", "/v1/orders", orderBody(), "Idempotency-Key", "held"); r.status != http.StatusConflict ||
		r.header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("key in flight = %d %s %s, want 409 problem+json", r.status, r.header.Get("Content-Type"), r.body)
	}
	if n := h.countOrders(); n != 2 {
		t.Errorf("%d orders, want 2", n)
	}
	_ = tx.Rollback(ctx)
	if r := h.do("POST", "/v1/orders", orderBody(), "Idempotency-Key", "held"); r.status != http.StatusCreated {
		t.Errorf("key after its holder ended = %d %s, want 201", r.status, r.body)
	}
}

// TestIdempotencyKeyPlacementTold: GET /v1/idempotency-keys/{key} tells a
// client that never got its placement's answer whether the key placed an
// order, and which, without placing one: 404 for a key nothing placed (a
// refusal included), 409 while a placement holds it, 200 with the order.
func TestIdempotencyKeyPlacementTold(t *testing.T) {
	t.Parallel()
	h := start(t, adminToken)
	h.putProduct("SKU-0001", 1999, "USD")
	ctx := context.Background()

	if r := h.do("GET", "/v1/idempotency-keys/unused", nil); r.status != http.StatusNotFound ||
		r.header.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(r.body), `"type":"urn:shopflow:problem:key-unused"`) {
		t.Errorf("unused key = %d %s %s, want 404 problem+json", r.status, r.header.Get("Content-Type"), r.body)
	}
	// A placement that reached the service up to the request deadline
	// (25 s) and the placer's grace (1 s) ago may still be waiting for a
	// batch, holding nothing the lookup sees: the 404 says how long a
	// client must wait after its last POST before it trusts it.
	if r := h.do("GET", "/v1/idempotency-keys/unused", nil); !strings.Contains(string(r.body), `"may_still_place_for_seconds":26`) {
		t.Errorf("unused key = %s, want may_still_place_for_seconds 26", r.body)
	}
	bad := orderBody(map[string]any{"sku": "SKU-9999", "quantity": 1})
	if r := h.do("POST", "/v1/orders", bad, "Idempotency-Key", "refused"); r.status != http.StatusBadRequest {
		t.Fatalf("unknown SKU = %d", r.status)
	}
	if r := h.do("GET", "/v1/idempotency-keys/refused", nil); r.status != http.StatusNotFound {
		t.Errorf("key of a refused placement = %d %s, want 404", r.status, r.body)
	}
	placed := h.place(orderBody(), "Idempotency-Key", "a/b?c") // any printable ASCII, escaped in the path
	r := h.do("GET", "/v1/idempotency-keys/a%2Fb%3Fc", nil)
	var got struct {
		Key     string `json:"idempotency_key"`
		OrderID string `json:"order_id"`
	}
	if err := json.Unmarshal(r.body, &got); err != nil || r.status != 200 || got.OrderID != placed["id"] || got.Key != "a/b?c" {
		t.Errorf("placed key = %d %s, want 200 naming order %v", r.status, r.body, placed["id"])
	}

	tx, err := h.db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // test cleanup
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('shopflow.idempotency.' || 'held', 0))`); err != nil {
		t.Fatal(err)
	}
	if r := h.do("GET", "/v1/idempotency-keys/held", nil); r.status != http.StatusConflict || r.header.Get("Retry-After") == "" {
		t.Errorf("key in flight = %d (Retry-After %q) %s, want 409 with Retry-After", r.status, r.header.Get("Retry-After"), r.body)
	}
	_ = tx.Rollback(ctx)
	if n := h.countOrders(); n != 1 {
		t.Errorf("%d orders, want 1: asking placed one", n)
	}
	if r := h.do("GET", "/v1/idempotency-keys/"+strings.Repeat("x", 256), nil); r.status != http.StatusBadRequest {
		t.Errorf("256-character key = %d, want 400", r.status)
	}
}

// TestCatalogChangedElsewhere: the service prices from its copy of the
// catalog, but a change made by another replica (here: straight in the
// table) is what the next order is priced at, and a product deactivated
// there is no longer sold.
func TestCatalogChangedElsewhere(t *testing.T) {
	t.Parallel()
	h := start(t, adminToken)
	h.putProduct("SKU-0001", 1999, "USD")
	if o := h.place(orderBody()); o["total_cents"] != float64(2*1999) {
		t.Fatalf("total = %v, want %d", o["total_cents"], 2*1999)
	}
	ctx := context.Background()
	if _, err := h.db.Exec(ctx, `UPDATE products SET price_cents = 2500, name = 'Renamed' WHERE sku = 'SKU-0001'`); err != nil {
		t.Fatal(err)
	}
	o := h.place(orderBody())
	lines, _ := o["items"].([]any)
	if o["total_cents"] != float64(2*2500) || len(lines) != 1 || lines[0].(map[string]any)["name"] != "Renamed" {
		t.Errorf("after a price change elsewhere: total %v items %v, want 5000 and the new name", o["total_cents"], o["items"])
	}
	var stored int64
	if err := h.db.QueryRow(ctx, `SELECT total_cents FROM orders WHERE id = $1`, o["id"]).Scan(&stored); err != nil || stored != 5000 {
		t.Errorf("stored total = %d (%v), want 5000", stored, err)
	}
	if _, err := h.db.Exec(ctx, `UPDATE products SET active = false WHERE sku = 'SKU-0001'`); err != nil {
		t.Fatal(err)
	}
	r := h.do("POST", "/v1/orders", orderBody())
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), `"field":"items.0.sku","message":"SKU-0001 (Renamed) is not on sale"`) {
		t.Errorf("deactivated elsewhere = %d %s, want 400 naming items.0.sku, not on sale", r.status, r.body)
	}
	if n := h.countOrders(); n != 2 {
		t.Errorf("%d orders, want 2", n)
	}
}

// TestIdempotencyKeyConcurrent: 50 concurrent POSTs with one key create
// exactly one order; every answer is that order (201) or "in flight"
// (409), never a second order.
func TestIdempotencyKeyConcurrent(t *testing.T) {
	t.Parallel()
	h := start(t, adminToken)
	h.putProduct("SKU-0001", 1999, "USD")
	body, _ := json.Marshal(orderBody())
	var wg sync.WaitGroup
	var mu sync.Mutex
	ids := map[string]int{}
	statuses := map[int]int{}
	startGate := make(chan struct{})
	for range 50 {
		wg.Go(func() {
			<-startGate
			req, _ := http.NewRequest("POST", h.base+"/v1/orders", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", "one-key")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			mu.Lock()
			defer mu.Unlock()
			statuses[res.StatusCode]++
			if res.StatusCode == http.StatusCreated {
				var o map[string]any
				_ = json.Unmarshal(b, &o)
				ids[o["id"].(string)]++
			}
		})
	}
	close(startGate)
	wg.Wait()
	if statuses[201]+statuses[409] != 50 || len(ids) != 1 {
		t.Errorf("statuses %v, distinct order ids %d; want only 201/409 and one id", statuses, len(ids))
	}
	if n := h.countOrders(); n != 1 {
		t.Errorf("%d orders in the database, want 1", n)
	}
}

// TestListOrders pages newest first with a cursor, filtered.
func TestListOrders(t *testing.T) {
	t.Parallel()
	h := start(t, adminToken)
	h.putProduct("SKU-0001", 100, "USD")
	var want []string
	for range 5 {
		want = append([]string{h.place(orderBody())["id"].(string)}, want...)
	}
	other := orderBody()
	other["customer_id"] = "cust-7"
	h.place(other)
	cancelled := want[0]
	h.do("POST", "/v1/orders/"+cancelled+"/cancel", nil)

	var got []string
	cursor := ""
	for page := 0; ; page++ {
		path := "/v1/orders?customer_id=cust-42&limit=2"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		r := h.do("GET", path, nil)
		if r.status != 200 {
			t.Fatalf("GET %s = %d %s", path, r.status, r.body)
		}
		var l struct {
			Orders []struct {
				ID string `json:"id"`
			} `json:"orders"`
			NextCursor string `json:"next_cursor"`
		}
		_ = json.Unmarshal(r.body, &l)
		for _, o := range l.Orders {
			got = append(got, o.ID)
		}
		if l.NextCursor == "" {
			break
		}
		if page > 5 {
			t.Fatal("pagination does not end")
		}
		cursor = l.NextCursor
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("pages = %v\nwant %v", got, want)
	}
	r := h.do("GET", "/v1/orders?status=cancelled", nil)
	if l := r.json(t)["orders"].([]any); len(l) != 1 || l[0].(map[string]any)["id"] != cancelled {
		t.Errorf("status=cancelled = %s", r.body)
	}
	for _, q := range []string{"limit=0", "limit=101", "limit=x", "status=done", "cursor=zzz", "customer_id=%20", "colour=red",
		"limit=2&limit=3"} {
		r := h.do("GET", "/v1/orders?"+q, nil)
		field, _, _ := strings.Cut(q, "=")
		if r.status != 400 || !strings.Contains(string(r.body), `"field":"`+field+`"`) {
			t.Errorf("GET ?%s = %d %s, want 400 naming %s", q, r.status, r.body, field)
		}
	}
	for range 10 { // the query is a map: the errors in name order, every time
		r := h.do("GET", "/v1/orders?status=x&limit=0&colour=red", nil)
		var p struct{ Errors []struct{ Field string } }
		_ = json.Unmarshal(r.body, &p)
		var fields []string
		for _, e := range p.Errors {
			fields = append(fields, e.Field)
		}
		if strings.Join(fields, ",") != "colour,limit,status" {
			t.Fatalf("errors for ?status=x&limit=0&colour=red: %q, want colour, limit, status", fields)
		}
	}
	for _, q := range []string{"%zz=1", "limit=5;status=pending"} {
		if r := h.do("GET", "/v1/orders?"+q, nil); r.status != 400 || !strings.Contains(string(r.body), "malformed query string") {
			t.Errorf("GET ?%s = %d %s, want 400: malformed query string", q, r.status, r.body)
		}
	}
}

// TestAdminToken guards PUT /v1/products/{sku} (201 when it creates the
// product, 200 when it replaces it).
func TestAdminToken(t *testing.T) {
	t.Parallel()
	h := start(t, adminToken)
	p := map[string]any{"name": "x", "price_cents": 100, "currency": "USD"}
	for _, tt := range []struct {
		auth string
		want int
	}{{"", 401}, {"Bearer nope", 401}, {"Basic " + adminToken, 401}, {"Bearer " + adminToken, 201}, {"Bearer " + adminToken, 200}} {
		r := h.do("PUT", "/v1/products/SKU-1", p, "Authorization", tt.auth)
		if r.status != tt.want {
			t.Errorf("Authorization %q = %d %s, want %d", tt.auth, r.status, r.body, tt.want)
		}
	}
	if r := h.do("GET", "/metrics", nil); !strings.Contains(string(r.body), `shop_orders{status="pending"} 0`) {
		t.Errorf("GET /metrics lacks shop_orders by status:\n%s", r.body)
	}
	if r := h.do("GET", "/openapi.yaml", nil); r.status != 200 || !bytes.Equal(r.body, order.OpenAPI) {
		t.Errorf("GET /openapi.yaml = %d, %d bytes; want the embedded document", r.status, len(r.body))
	}
	if r := h.do("GET", "/v1/products", nil); r.status != 200 || !strings.Contains(string(r.body), `"sku":"SKU-1"`) {
		t.Errorf("GET /v1/products = %d %s", r.status, r.body)
	}

	off := start(t, "")
	if r := off.do("PUT", "/v1/products/SKU-1", p, "Authorization", "Bearer "); r.status != 403 || !strings.Contains(string(r.body), "ADMIN_TOKEN") {
		t.Errorf("without ADMIN_TOKEN = %d %s, want 403 naming ADMIN_TOKEN", r.status, r.body)
	}
}

// TestCreateOnlyProduct: PUT /v1/products/{sku} with If-None-Match: *
// creates a product only if the catalog has none for the SKU (201), and
// otherwise answers 412 and leaves the product, price and active flag, as
// they are: what shop seed relies on not to undo an admin's changes.
func TestCreateOnlyProduct(t *testing.T) {
	t.Parallel()
	h := start(t, adminToken)
	auth := "Bearer " + adminToken
	kettle := map[string]any{"name": "Kettle", "price_cents": 5900, "currency": "USD"}
	jug := map[string]any{"name": "Jug", "price_cents": 1900, "currency": "USD"}
	for sku, p := range map[string]map[string]any{"SKU-7": kettle, "SKU-8": jug} {
		if r := h.do("PUT", "/v1/products/"+sku, p, "Authorization", auth, "If-None-Match", "*"); r.status != http.StatusCreated {
			t.Fatalf("create-only PUT of new %s = %d %s, want 201", sku, r.status, r.body)
		}
	}
	// An admin raises a price and takes a product off sale.
	if r := h.do("PUT", "/v1/products/SKU-7", map[string]any{"name": "Kettle", "price_cents": 6400, "currency": "USD"},
		"Authorization", auth); r.status != http.StatusOK {
		t.Fatalf("PUT = %d %s", r.status, r.body)
	}
	if r := h.do("PUT", "/v1/products/SKU-8", map[string]any{"name": "Jug", "price_cents": 1900, "currency": "USD", "active": false},
		"Authorization", auth); r.status != http.StatusOK {
		t.Fatalf("PUT = %d %s", r.status, r.body)
	}
	for sku, p := range map[string]map[string]any{"SKU-7": kettle, "SKU-8": jug} {
		r := h.do("PUT", "/v1/products/"+sku, p, "Authorization", auth, "If-None-Match", "*")
		if r.status != http.StatusPreconditionFailed || r.header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("create-only PUT of existing %s = %d %s, want 412 problem+json", sku, r.status, r.body)
		}
	}
	list := string(h.do("GET", "/v1/products", nil).body)
	if !strings.Contains(list, `"sku":"SKU-7","name":"Kettle","price_cents":6400`) || strings.Contains(list, `"sku":"SKU-8"`) {
		t.Errorf("after the refused creates, the catalog is %s; want SKU-7 at the admin's 6400 and SKU-8 still off sale", list)
	}
	// Products have no ETag (RFC 9110 13.1): If-Match: * is "only if it
	// exists", If-Match with tags never holds, If-None-Match with tags
	// always does.
	for _, tc := range []struct {
		sku, header, value string
		want               int
	}{
		{"SKU-7", "If-Match", "*", http.StatusOK},
		{"SKU-9", "If-Match", "*", http.StatusPreconditionFailed},
		{"SKU-7", "If-Match", `"1"`, http.StatusPreconditionFailed},
		{"SKU-7", "If-None-Match", `"1"`, http.StatusOK},
	} {
		if r := h.do("PUT", "/v1/products/"+tc.sku, kettle, "Authorization", auth, tc.header, tc.value); r.status != tc.want {
			t.Errorf("PUT %s with %s: %s = %d %s, want %d", tc.sku, tc.header, tc.value, r.status, r.body, tc.want)
		}
	}
	if r := h.do("PUT", "/v1/products/SKU-9", kettle, "Authorization", auth); r.status != http.StatusCreated {
		t.Errorf("PUT SKU-9 after the refused If-Match: * = %d, want 201 (nothing was created)", r.status)
	}
}
