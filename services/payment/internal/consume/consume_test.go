package consume_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
	"github.com/shopflow/shopflow/services/payment/internal/gateway"
)

// describe renders result events compactly: "authorized",
// "declined:card_declined", "refunded:void".
func describe(evs []events.Event) []string {
	out := []string{}
	for _, ev := range evs {
		switch p := ev.Payload.(type) {
		case events.PaymentAuthorized:
			out = append(out, "authorized")
		case events.PaymentDeclined:
			out = append(out, "declined:"+p.Reason)
		case events.PaymentRefunded:
			out = append(out, "refunded:"+p.Kind)
		default:
			out = append(out, string(ev.Type))
		}
	}
	return out
}

// TestSaga drives each scenario's order events through the real broker,
// inbox and handler, and checks the status history, the result events, the
// final status and the gateway's ledger. Each scenario ends in an event
// that records a history entry, so once the history is complete every
// earlier record (duplicates included) has been handled. It runs the
// scenarios through the batch handler the service runs, and through the
// per-event handler.
func TestSaga(t *testing.T) {
	t.Parallel()
	for _, mode := range []struct {
		name     string
		perEvent bool
	}{{"batch", false}, {"one by one", true}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			testSaga(t, startHarness(t, nil, mode.perEvent))
		})
	}
}

func testSaga(t *testing.T, h *harness) {
	tests := []struct {
		name    string
		events  func(id string) []events.Event
		history []string // statuses, in order
		results []string // see describe
		status  string   // final payment status; "" for no payment
		ledger  map[string]int
	}{
		{
			name:    "authorize then capture",
			events:  func(id string) []events.Event { return []events.Event{placed(id, "tok_visa", 3998), confirmed(id)} },
			history: []string{"authorized", "captured"},
			results: []string{"authorized"},
			status:  "captured",
			ledger:  map[string]int{"authorize/approved": 1, "capture/approved": 1},
		},
		{
			name: "authorize then cancel voids",
			events: func(id string) []events.Event {
				return []events.Event{placed(id, "tok_visa", 3998), cancelled(id, "stock rejected")}
			},
			history: []string{"authorized", "voided"},
			results: []string{"authorized", "refunded:void"},
			status:  "voided",
			ledger:  map[string]int{"authorize/approved": 1, "void/approved": 1},
		},
		{
			name: "capture then cancel refunds",
			events: func(id string) []events.Event {
				return []events.Event{placed(id, "tok_visa", 3998), confirmed(id), cancelled(id, "customer")}
			},
			history: []string{"authorized", "captured", "refunded"},
			results: []string{"authorized", "refunded:refund"},
			status:  "refunded",
			ledger:  map[string]int{"authorize/approved": 1, "capture/approved": 1, "refund/approved": 1},
		},
		{
			name:    "declined card",
			events:  func(id string) []events.Event { return []events.Event{placed(id, "tok_declined", 3998)} },
			history: []string{"declined"},
			results: []string{"declined:card_declined"},
			status:  "declined",
			ledger:  map[string]int{"authorize/declined": 1},
		},
		{
			name:    "amount over the limit declines",
			events:  func(id string) []events.Event { return []events.Event{placed(id, "tok_visa", 1_000_001)} },
			history: []string{"declined"},
			results: []string{"declined:amount_exceeds_limit"},
			status:  "declined",
			ledger:  map[string]int{"authorize/declined": 1},
		},
		{
			name:    "flaky card: two timeouts retried, then authorized once",
			events:  func(id string) []events.Event { return []events.Event{placed(id, "tok_flaky", 3998)} },
			history: []string{"authorized"},
			results: []string{"authorized"},
			status:  "authorized",
			ledger:  map[string]int{"authorize/approved": 1},
		},
		{
			name: "cancel after decline is a recorded no-op",
			events: func(id string) []events.Event {
				return []events.Event{placed(id, "tok_declined", 3998), cancelled(id, "payment declined")}
			},
			history: []string{"declined", "declined"},
			results: []string{"declined:card_declined"},
			status:  "declined",
			ledger:  map[string]int{"authorize/declined": 1},
		},
		{
			name:    "confirm after decline is a recorded no-op",
			events:  func(id string) []events.Event { return []events.Event{placed(id, "tok_declined", 3998), confirmed(id)} },
			history: []string{"declined", "declined"},
			results: []string{"declined:card_declined"},
			status:  "declined",
			ledger:  map[string]int{"authorize/declined": 1},
		},
		{
			name:    "cancel of an order never seen is recorded, emits nothing",
			events:  func(id string) []events.Event { return []events.Event{cancelled(id, "customer")} },
			history: []string{"cancelled"},
			results: []string{},
			status:  "cancelled",
			ledger:  map[string]int{},
		},
		{
			name: "an order placed after its cancellation is not charged",
			events: func(id string) []events.Event {
				return []events.Event{cancelled(id, "customer"), placed(id, "tok_visa", 3998)}
			},
			history: []string{"cancelled", "cancelled"},
			results: []string{},
			status:  "cancelled",
			ledger:  map[string]int{},
		},
		{
			name:    "confirm of an order never seen is recorded, emits nothing",
			events:  func(id string) []events.Event { return []events.Event{confirmed(id)} },
			history: []string{"none"},
			results: []string{},
			status:  "",
			ledger:  map[string]int{},
		},
		{
			name: "a second cancellation compensates nothing more",
			events: func(id string) []events.Event {
				return []events.Event{placed(id, "tok_visa", 3998), cancelled(id, "a"), cancelled(id, "b")}
			},
			history: []string{"authorized", "voided", "voided"},
			results: []string{"authorized", "refunded:void"},
			status:  "voided",
			ledger:  map[string]int{"authorize/approved": 1, "void/approved": 1},
		},
		{
			name: "redelivered records (same event id) have one effect",
			events: func(id string) []events.Event {
				p, c := placed(id, "tok_visa", 3998), cancelled(id, "customer")
				return []events.Event{p, p, c, p, c, confirmed(id)}
			},
			history: []string{"authorized", "voided", "voided"},
			results: []string{"authorized", "refunded:void"},
			status:  "voided",
			ledger:  map[string]int{"authorize/approved": 1, "void/approved": 1},
		},
		{
			name: "the same order placed again under a new event id is a recorded no-op",
			events: func(id string) []events.Event {
				return []events.Event{placed(id, "tok_visa", 3998), placed(id, "tok_visa", 3998)}
			},
			history: []string{"authorized", "authorized"},
			results: []string{"authorized"},
			status:  "authorized",
			ledger:  map[string]int{"authorize/approved": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := newOrderID()
			h.produce(tt.events(id)...)
			hist := h.history(id, len(tt.history))
			var got []string
			for _, e := range hist {
				got = append(got, string(e.Status))
				if e.Detail == "" || e.EventID == "" || e.EventType == "" {
					t.Errorf("history entry %+v lacks detail or its event", e)
				}
			}
			if !slices.Equal(got, tt.history) {
				t.Errorf("history %v, want %v", got, tt.history)
			}
			if res := describe(h.results(id)); !slices.Equal(res, tt.results) {
				t.Errorf("results %v, want %v", res, tt.results)
			}
			p := h.payment(id)
			switch {
			case tt.status == "" && p != nil:
				t.Errorf("payment %+v, want none", p)
			case tt.status != "" && (p == nil || p.Status != tt.status):
				t.Errorf("payment %+v, want status %s", p, tt.status)
			}
			if l, _ := h.charges(id); !maps.Equal(l, tt.ledger) {
				t.Errorf("gateway ledger %v, want %v", l, tt.ledger)
			}
		})
	}
	t.Run("result events carry the payment", func(t *testing.T) {
		t.Parallel()
		id := newOrderID()
		h.produce(placed(id, "tok_visa", 12345), cancelled(id, "customer"))
		h.history(id, 2)
		res := h.results(id)
		p := h.payment(id)
		if len(res) != 2 || p == nil {
			t.Fatalf("results %v, payment %+v", describe(res), p)
		}
		a := res[0].Payload.(events.PaymentAuthorized)
		r := res[1].Payload.(events.PaymentRefunded)
		if a.AmountCents != 12345 || a.Currency != "USD" || a.PaymentID != p.PaymentID || a.AuthorizationCode != p.Code || a.AuthorizationCode == "" {
			t.Errorf("PaymentAuthorized %+v, payment %+v", a, p)
		}
		if r.AmountCents != 12345 || r.PaymentID != p.PaymentID || r.Kind != events.RefundKindVoid {
			t.Errorf("PaymentRefunded %+v", r)
		}
		if res[0].Subject != id || res[1].Subject != id {
			t.Errorf("subjects %q %q, want %q", res[0].Subject, res[1].Subject, id)
		}
	})
}

// loseFirstAnswer is a gateway whose first Authorize answer is lost on the
// way back: the gateway did the work, the caller sees a network error.
type loseFirstAnswer struct {
	gateway.Gateway
	mu      sync.Mutex
	calls   int
	dropped gateway.Authorization
}

func (l *loseFirstAnswer) Authorize(ctx context.Context, req gateway.AuthorizeRequest) (gateway.Authorization, error) {
	a, err := l.Gateway.Authorize(ctx, req)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	if l.calls == 1 && err == nil {
		l.dropped = a
		return gateway.Authorization{}, fmt.Errorf("%w: connection reset after the request was sent", gateway.ErrTimeout)
	}
	return a, err
}

// TestLostGatewayAnswerDoesNotChargeTwice: the gateway authorizes, its
// answer is lost, the handler's transaction rolls back and the inbox
// retries. The retry must get the same authorization back: one charge in
// the gateway's ledger, one PaymentAuthorized, carrying that charge's code.
func TestLostGatewayAnswerDoesNotChargeTwice(t *testing.T) {
	t.Parallel()
	lossy := &loseFirstAnswer{}
	h := newHarness(t, func(g gateway.Gateway) gateway.Gateway { lossy.Gateway = g; return lossy })
	id := newOrderID()
	h.produce(placed(id, "tok_visa", 3998))
	h.history(id, 1)

	lossy.mu.Lock()
	calls, dropped := lossy.calls, lossy.dropped
	lossy.mu.Unlock()
	if calls != 2 || !dropped.Approved {
		t.Fatalf("gateway called %d times (first answer %+v), want 2 with the first approved and lost", calls, dropped)
	}
	ledger, attempts := h.charges(id)
	if !maps.Equal(ledger, map[string]int{"authorize/approved": 1}) || attempts != 2 {
		t.Errorf("gateway ledger %v with %d attempts, want one approved authorization asked twice", ledger, attempts)
	}
	res := h.results(id)
	if len(res) != 1 {
		t.Fatalf("results %v, want one PaymentAuthorized", describe(res))
	}
	if a, ok := res[0].Payload.(events.PaymentAuthorized); !ok || a.AuthorizationCode != dropped.Code {
		t.Errorf("result %+v, want PaymentAuthorized with the lost answer's code %s", res[0].Payload, dropped.Code)
	}
	if s := h.consumer.Stats(); s.Retries < 1 || s.DeadLettered != 0 {
		t.Errorf("consumer stats %+v, want a retry and nothing dead-lettered", s)
	}
}

// unavailable is a gateway that is down.
type unavailable struct{ gateway.Gateway }

func (unavailable) Authorize(context.Context, gateway.AuthorizeRequest) (gateway.Authorization, error) {
	return gateway.Authorization{}, fmt.Errorf("%w: connection refused", gateway.ErrUnavailable)
}

// TestErrorClassification: a gateway that stays down is an outage,
// retried with backoff past the consumer's attempts for its OutageFor (1 s
// in the harness), then dead-lettered with the reason, and the partition
// moves on. (Content no retry can fix, a gateway
// rejection, is permanent: TestHandleBatchFailsAsAWhole.)
func TestErrorClassification(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		wrap   func(gateway.Gateway) gateway.Gateway
		placed func(id string) events.Event
		reason string
	}{
		{
			name:   "gateway unavailable is an outage, retried until OutageFor runs out",
			wrap:   func(g gateway.Gateway) gateway.Gateway { return unavailable{g} },
			placed: func(id string) events.Event { return placed(id, "tok_visa", 500) },
			reason: "(OutageFor 1s): ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, tt.wrap)
			id := newOrderID()
			h.produce(tt.placed(id), cancelled(id, "customer"))
			dl := testenv.Consume(t, h.dlq, time.Minute, testenv.Count(1))
			hdr := headers(dl[0].Headers)
			if n, _ := strconv.Atoi(hdr[events.HeaderDLQAttempts]); !strings.Contains(hdr[events.HeaderDLQError], tt.reason) ||
				!strings.Contains(hdr[events.HeaderDLQError], "gateway: unavailable") || n <= 5 {
				t.Errorf("DLQ headers error %q attempts %s, want %q and the gateway's error after more than 5", hdr[events.HeaderDLQError],
					hdr[events.HeaderDLQAttempts], tt.reason)
			}
			if hdr[events.HeaderType] != string(events.TypeOrderPlaced) || string(dl[0].Key) != id {
				t.Errorf("dead-lettered %s for %s, want the OrderPlaced of %s", hdr[events.HeaderType], dl[0].Key, id)
			}
			// The partition moved on: the cancellation after it applied.
			hist := h.history(id, 1)
			if hist[0].Status != "cancelled" || len(h.results(id)) != 0 {
				t.Errorf("after the DLQ: history %+v, results %v", hist, describe(h.results(id)))
			}
			if l, _ := h.charges(id); len(l) != 0 {
				t.Errorf("gateway ledger %v, want nothing charged", l)
			}
		})
	}
}

func headers(hs []kafka.Header) map[string]string {
	m := map[string]string{}
	for _, h := range hs {
		m[h.Key] = string(h.Value)
	}
	return m
}

// TestUnsupportedCurrencyDeclines: an order in a currency the service
// takes no payments in is declined (the order service then cancels it and
// releases its stock and shipment), not dead-lettered, which left the order
// pending for good; the gateway is not asked.
func TestUnsupportedCurrencyDeclines(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	id := newOrderID()
	ev := placed(id, "tok_visa", 500)
	p := ev.Payload.(events.OrderPlaced)
	p.Currency = "XTS"
	ev.Payload = p
	h.produce(ev, cancelled(id, "payment declined: unsupported_currency"))
	hist := h.history(id, 2)
	if hist[0].Status != "declined" || !strings.Contains(hist[0].Detail, `unsupported currency "XTS"`) {
		t.Errorf("history %+v, want declined for the unsupported currency first", hist)
	}
	if got := describe(h.results(id)); !slices.Equal(got, []string{"declined:unsupported_currency"}) {
		t.Errorf("results %v, want one PaymentDeclined (unsupported_currency)", got)
	}
	if pay := h.payment(id); pay == nil || pay.Status != "declined" || pay.Reason != "unsupported_currency" || pay.AmountCents != 500 {
		t.Errorf("payment %+v, want declined (unsupported_currency) for 500", pay)
	}
	if l, _ := h.charges(id); len(l) != 0 {
		t.Errorf("gateway ledger %v, want the gateway not asked", l)
	}
	if s := h.consumer.Stats(); s.DeadLettered != 0 {
		t.Errorf("consumer stats %+v, want nothing dead-lettered", s)
	}
}

// TestTombstoneVoidsAHoldLeftAtTheGateway: an OrderCancelled for an order
// with no payment here (its OrderPlaced was dead-lettered) releases an
// authorization an attempt at that OrderPlaced left at the gateway before
// failing for good; before, the card stayed held for a cancelled order.
func TestTombstoneVoidsAHoldLeftAtTheGateway(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	id := newOrderID()
	gw := gateway.NewFake(h.gwPool, gateway.FakeConfig{})
	auth, err := gw.Authorize(context.Background(), gateway.AuthorizeRequest{IdempotencyKey: id,
		CardToken: gateway.TokenVisa, AmountCents: 500, Currency: "USD"})
	if err != nil || !auth.Approved {
		t.Fatalf("authorize: %+v %v", auth, err)
	}
	h.produce(cancelled(id, "out of stock: SKU-0099"))
	hist := h.history(id, 1)
	if hist[0].Status != "cancelled" || !strings.Contains(hist[0].Detail, "voided authorization "+auth.ChargeID) {
		t.Errorf("history %+v, want cancelled with the hold %s voided", hist, auth.ChargeID)
	}
	if ledger, _ := h.charges(id); !maps.Equal(ledger, map[string]int{"authorize/approved": 1, "void/approved": 1}) {
		t.Errorf("gateway ledger %v, want the authorization voided", ledger)
	}
	if res := h.results(id); len(res) != 0 {
		t.Errorf("results %v, want none (the order service never saw a payment)", describe(res))
	}

	// Without a hold, a tombstone asks the gateway and leaves nothing.
	other := newOrderID()
	h.produce(cancelled(other, "cancelled by customer"))
	if hist := h.history(other, 1); hist[0].Status != "cancelled" || strings.Contains(hist[0].Detail, "voided") {
		t.Errorf("history %+v, want cancelled with nothing voided", hist)
	}
	if ledger, _ := h.charges(other); len(ledger) != 0 {
		t.Errorf("gateway ledger %v, want nothing", ledger)
	}
}
