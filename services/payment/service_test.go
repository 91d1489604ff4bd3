package payment

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/config"
	"github.com/shopflow/shopflow/pkg/platform/httpserver"
	"github.com/shopflow/shopflow/pkg/platform/service"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
	"github.com/shopflow/shopflow/services/payment/internal/gateway"
)

// started runs the whole service (through run, so wrap can stand between
// it and the gateway) and returns its base URL and the test's Config.
func started(t *testing.T, wrap func(gateway.Gateway) gateway.Gateway) (string, Config) {
	t.Helper()
	cfg := Config{Common: testenv.Common(t)}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	addr, _ := testenv.Serve(t, func(ctx context.Context, up func(string)) error {
		return run(service.OnStarted(ctx, up), cfg, log, wrap)
	})
	return "http://" + addr, cfg
}

func produce(t *testing.T, cfg Config, evs ...events.Event) {
	t.Helper()
	msgs := make([]kafka.Message, len(evs))
	for i, ev := range evs {
		m, err := events.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		msgs[i] = kafka.Message{Key: m.Key, Value: m.Value}
		for _, h := range m.Headers {
			msgs[i].Headers = append(msgs[i].Headers, kafka.Header(h))
		}
	}
	write(t, cfg, msgs...)
}

// write writes msgs to shop.orders, one request each, in order.
func write(t *testing.T, cfg Config, msgs ...kafka.Message) {
	t.Helper()
	w := &kafka.Writer{Transport: &kafka.Transport{}, Addr: kafka.TCP(cfg.KafkaBrokers...), Topic: cfg.KafkaTopicPrefix + events.TopicOrders,
		Balancer: &kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	for _, m := range msgs {
		m.Topic = "" // the writer's
		if err := w.WriteMessages(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
}

func placedEvent(id, token string, total int64) events.Event {
	return events.New("/shopflow/order", events.OrderPlaced{
		OrderID: id, CustomerID: "cust-42", Currency: "USD", TotalCents: total,
		Items:           []events.Line{{SKU: "SKU-0001", Quantity: 2, UnitPriceCents: total / 2}},
		Payment:         events.PaymentMethod{CardToken: token},
		ShippingAddress: events.Address{Name: "Ada Lovelace", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"},
		PlacedAt:        time.Now().UTC(),
	})
}

// get answers GET base+path: status, content type, body.
func get(t *testing.T, url string) (int, string, []byte) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header.Get("Content-Type"), body
}

type paymentJSON struct {
	OrderID           string `json:"order_id"`
	PaymentID         string `json:"payment_id"`
	Status            string `json:"status"`
	AmountCents       int64  `json:"amount_cents"`
	Currency          string `json:"currency"`
	AuthorizationCode string `json:"authorization_code"`
	Reason            string `json:"reason"`
	History           []struct {
		Status string    `json:"status"`
		At     time.Time `json:"at"`
		Detail string    `json:"detail"`
	} `json:"history"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func getPayment(t *testing.T, base, id string) (int, paymentJSON) {
	t.Helper()
	code, ct, body := get(t, base+"/v1/payments/"+id)
	var p paymentJSON
	if code == http.StatusOK {
		if ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatalf("body %s: %v", body, err)
		}
	}
	return code, p
}

// TestService runs the whole payment service on the real broker and
// PostgreSQL: orders in, results out through the relay, the saga's later
// steps, and the HTTP API.
func TestService(t *testing.T) {
	t.Parallel()
	base, cfg := started(t, nil)
	visa, declined, flaky := uuid.NewString(), uuid.NewString(), uuid.NewString()
	produce(t, cfg, placedEvent(visa, "tok_visa", 3998), placedEvent(declined, "tok_declined", 500), placedEvent(flaky, "tok_flaky", 1000))

	got := testenv.Consume(t, cfg.KafkaTopicPrefix+events.TopicPayments, time.Minute, testenv.Count(3))
	byOrder := map[string]events.Event{}
	for _, m := range got {
		hs := make([]events.Header, len(m.Headers))
		for i, h := range m.Headers {
			hs[i] = events.Header(h)
		}
		ev, err := events.Decode(hs, m.Value)
		if err != nil {
			t.Fatalf("published result does not decode: %v", err)
		}
		if string(m.Key) != ev.Subject || ev.Source != "/shopflow/payment" {
			t.Errorf("record key %q subject %q source %q", m.Key, ev.Subject, ev.Source)
		}
		byOrder[ev.Subject] = ev
	}
	if _, ok := byOrder[visa].Payload.(events.PaymentAuthorized); !ok {
		t.Errorf("tok_visa: %v, want PaymentAuthorized", byOrder[visa].Type)
	}
	if d, ok := byOrder[declined].Payload.(events.PaymentDeclined); !ok || d.Reason != gateway.ReasonCardDeclined {
		t.Errorf("tok_declined: %+v, want PaymentDeclined card_declined", byOrder[declined].Payload)
	}
	if _, ok := byOrder[flaky].Payload.(events.PaymentAuthorized); !ok {
		t.Errorf("tok_flaky: %v, want PaymentAuthorized", byOrder[flaky].Type)
	}

	code, p := getPayment(t, base, visa)
	auth := byOrder[visa].Payload.(events.PaymentAuthorized)
	if code != http.StatusOK || p.Status != "authorized" || p.OrderID != visa || p.PaymentID != auth.PaymentID ||
		p.AmountCents != 3998 || p.Currency != "USD" || p.AuthorizationCode != auth.AuthorizationCode ||
		len(p.History) != 1 || p.History[0].Status != "authorized" || p.CreatedAt.IsZero() {
		t.Errorf("GET %s = %d %+v", visa, code, p)
	}

	produce(t, cfg, events.New("/shopflow/order", events.OrderConfirmed{OrderID: visa, ConfirmedAt: time.Now().UTC()}))
	testenv.Eventually(t, time.Minute, "payment not captured", func() bool {
		_, p = getPayment(t, base, visa)
		return p.Status == "captured"
	})
	if len(p.History) != 2 || p.History[1].Status != "captured" || p.History[1].Detail == "" || p.UpdatedAt.Before(p.CreatedAt) {
		t.Errorf("after capture: %+v", p)
	}
	// The order API takes an order id in any form uuid.Parse reads;
	// this one finds the same payment by it.
	if code, up := getPayment(t, base, strings.ToUpper(visa)); code != http.StatusOK || up.OrderID != visa || len(up.History) != 2 {
		t.Errorf("GET by the upper-case id = %d %+v", code, up)
	}
	if code, ep := getPayment(t, base, fmt.Sprintf("%%%02X", visa[0])+visa[1:]); code != http.StatusOK || ep.OrderID != visa {
		t.Errorf("GET with the id's first character escaped = %d %+v", code, ep)
	}
	if code, p := getPayment(t, base, declined); code != http.StatusOK || p.Status != "declined" || p.Reason != gateway.ReasonCardDeclined || p.AuthorizationCode != "" {
		t.Errorf("GET declined = %d %+v", code, p)
	}
}

// TestServiceLostAnswer: the whole service, with the gateway's first
// answer lost: one charge at the gateway, one PaymentAuthorized on the
// topic.
func TestServiceLostAnswer(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	lost := 0
	base, cfg := started(t, func(g gateway.Gateway) gateway.Gateway {
		return losing{Gateway: g, lose: func() bool {
			mu.Lock()
			defer mu.Unlock()
			lost++
			return lost == 1
		}}
	})
	id := uuid.NewString()
	produce(t, cfg, placedEvent(id, "tok_visa", 2000))
	got := testenv.Consume(t, cfg.KafkaTopicPrefix+events.TopicPayments, time.Minute, testenv.Count(1))
	if code, p := getPayment(t, base, id); code != http.StatusOK || p.Status != "authorized" {
		t.Fatalf("GET = %d %+v", code, p)
	}
	pool := testenv.PoolAt(t, cfg.DatabaseURL, Schema)
	var charges, attempts int
	err := pool.QueryRow(context.Background(),
		`SELECT count(*), coalesce(sum(attempts), 0) FROM gateway_charges WHERE idempotency_key = $1 AND operation = 'authorize' AND outcome = 'approved'`, id).
		Scan(&charges, &attempts)
	if err != nil {
		t.Fatal(err)
	}
	if charges != 1 || attempts != 2 {
		t.Errorf("gateway: %d approved charges after %d attempts, want 1 after 2", charges, attempts)
	}
	var published int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM payment_history WHERE order_id = $1`, id).Scan(&published); err != nil {
		t.Fatal(err)
	}
	if published != 1 || len(got) != 1 {
		t.Errorf("history entries %d, results %d; want 1 and 1", published, len(got))
	}
}

// losing drops an Authorize answer whenever lose says so.
type losing struct {
	gateway.Gateway
	lose func() bool
}

func (l losing) Authorize(ctx context.Context, req gateway.AuthorizeRequest) (gateway.Authorization, error) {
	a, err := l.Gateway.Authorize(ctx, req)
	if err == nil && l.lose() {
		return gateway.Authorization{}, gateway.ErrTimeout
	}
	return a, err
}

// A gateway that cannot take calls for a few seconds holds up a capture,
// it does not dead-letter it: five quick attempts (about 1.5 s) sent the
// OrderConfirmed to the dead-letter topic, leaving a confirmed order's
// money authorized and never captured until someone replayed it.
func TestAGatewayOutageIsOutlasted(t *testing.T) {
	t.Parallel()
	const outage = 4 * time.Second
	var mu sync.Mutex
	var downSince time.Time
	calls := 0
	base, cfg := started(t, func(g gateway.Gateway) gateway.Gateway {
		return failingCaptures{Gateway: g, fail: func() bool {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if downSince.IsZero() {
				downSince = time.Now()
			}
			return time.Since(downSince) < outage
		}}
	})
	id := uuid.NewString()
	produce(t, cfg, placedEvent(id, "tok_visa", 2000))
	testenv.Consume(t, cfg.KafkaTopicPrefix+events.TopicPayments, time.Minute, testenv.Count(1))
	produce(t, cfg, events.New("/shopflow/order", events.OrderConfirmed{OrderID: id, ConfirmedAt: time.Now().UTC()}))
	testenv.Eventually(t, 30*time.Second, "the payment captured once the gateway is back", func() bool {
		_, p := getPayment(t, base, id)
		return p.Status == "captured"
	})
	mu.Lock()
	defer mu.Unlock()
	if calls < 6 {
		t.Errorf("%d capture calls, want more than the inbox's 5 attempts through a %s outage", calls, outage)
	}
}

// failingCaptures answers Capture with gateway.ErrUnavailable, before
// calling the gateway, whenever fail says so.
type failingCaptures struct {
	gateway.Gateway
	fail func() bool
}

func (f failingCaptures) Capture(ctx context.Context, req gateway.OperationRequest) (gateway.Receipt, error) {
	if f.fail() {
		return gateway.Receipt{}, fmt.Errorf("%w: connection refused", gateway.ErrUnavailable)
	}
	return f.Gateway.Capture(ctx, req)
}

// An OrderPlaced or OrderCancelled beyond the event contract's bounds is
// dead-lettered at its first attempt, its reason naming the field and the
// bound, and the order's genuine OrderPlaced after it, on the same
// partition, is applied. A U+0000 in the card token failed the fake
// gateway's ledger insert (PostgreSQL cannot store it in text), which the
// service took for the gateway being unavailable: retried for 5 minutes,
// holding up the partition, before it was dead-lettered; an order of
// any number of lines was authorized.
func TestEventsBeyondTheContractAreDeadLettered(t *testing.T) {
	t.Parallel()
	base, cfg := started(t, nil)
	id := uuid.NewString()
	good := placedEvent(id, "tok_visa", 3998)
	nul := good.Payload.(events.OrderPlaced)
	nul.Payment.CardToken = "tok_visa\x00"
	many := good.Payload.(events.OrderPlaced)
	many.Items, many.TotalCents = nil, 0
	for i := range events.MaxLines + 1 {
		many.Items = append(many.Items, events.Line{SKU: fmt.Sprintf("SKU-%04d", i), Quantity: 1, UnitPriceCents: 10})
		many.TotalCents += 10
	}
	cancelled := events.OrderCancelled{OrderID: id, Reason: "cancelled by\x00customer", CancelledAt: time.Now().UTC()}
	bad := []struct {
		ev   events.Event
		says string
	}{
		{events.New(events.SourceOrder, nul), `invalid field "payment.card_token": holds U+0000 (NUL)`},
		{events.New(events.SourceOrder, many), `invalid field "items": 101 items, more than the 100 allowed`},
		{events.New(events.SourceOrder, cancelled), `invalid field "reason": holds U+0000 (NUL)`},
	}
	want := map[string]string{}
	var msgs []kafka.Message
	for _, b := range bad {
		msgs = append(msgs, testenv.Forged(t, cfg.KafkaTopicPrefix, b.ev))
		want[b.ev.ID] = b.says
	}
	write(t, cfg, msgs...)
	produce(t, cfg, good)

	testenv.DeadLettered(t, cfg.KafkaTopicPrefix+events.DLQTopic(Name), time.Minute, want)
	testenv.Eventually(t, 30*time.Second, "the genuine OrderPlaced after them was not applied", func() bool {
		_, p := getPayment(t, base, id)
		return p.Status == "authorized"
	})
	if _, p := getPayment(t, base, id); p.AmountCents != 3998 || len(p.History) != 1 {
		t.Errorf("payment %+v; want the genuine order's 3998, authorized once", p)
	}
}

// TestHTTPErrors: every bad request is problem+json naming what is wrong.
func TestHTTPErrors(t *testing.T) {
	t.Parallel()
	base, _ := started(t, nil)
	tests := []struct {
		name   string
		path   string
		status int
		field  string
	}{
		{"unknown order", "/v1/payments/" + uuid.NewString(), http.StatusNotFound, ""},
		{"blank order id", "/v1/payments/%20", http.StatusBadRequest, "order_id"},
		{"control character", "/v1/payments/a%0Ab", http.StatusBadRequest, "order_id"},
		{"too long", "/v1/payments/" + strings.Repeat("x", 129), http.StatusBadRequest, "order_id"},
		{"no such route", "/v1/payment", http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, ct, body := get(t, base+tt.path)
			if code != tt.status || ct != httpserver.ProblemContentType {
				t.Fatalf("GET %s = %d %q %s", tt.path, code, ct, body)
			}
			var p httpserver.Problem
			if err := json.Unmarshal(body, &p); err != nil {
				t.Fatal(err)
			}
			if p.Status != tt.status || p.Detail == "" && tt.field != "" {
				t.Errorf("problem %+v", p)
			}
			if tt.field != "" && (len(p.Errors) != 1 || p.Errors[0].Field != tt.field) {
				t.Errorf("problem errors %+v, want one naming %s", p.Errors, tt.field)
			}
		})
	}
	res, err := http.Post(base+"/v1/payments/x", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Content-Type") != httpserver.ProblemContentType {
		t.Errorf("POST = %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	env := func(latency string) map[string]string {
		m := map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres"}
		if latency != "" {
			m["PAYMENT_GATEWAY_LATENCY"] = latency
		}
		return m
	}
	tests := []struct {
		latency string
		want    time.Duration
		err     string
	}{
		{"", 0, ""},
		{"250ms", 250 * time.Millisecond, ""},
		{"-1s", 0, "PAYMENT_GATEWAY_LATENCY"},
		{"1h", 0, "PAYMENT_GATEWAY_LATENCY"},
		{"soon", 0, "PAYMENT_GATEWAY_LATENCY"},
	}
	for _, tt := range tests {
		cfg, err := config.Load[Config](config.WithEnvironment(env(tt.latency)), config.WithDefault("HTTP_ADDR", DefaultHTTPAddr))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("latency %q: err %v, want one naming %s", tt.latency, err, tt.err)
			}
			continue
		}
		if err != nil || cfg.GatewayLatency != tt.want || cfg.HTTPAddr != ":8081" {
			t.Errorf("latency %q: %+v, %v", tt.latency, cfg, err)
		}
	}
}
