package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/cmd/shop/dlq"
	"github.com/shopflow/shopflow/cmd/shop/seed"
	"github.com/shopflow/shopflow/cmd/shop/suite"
	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// TestAnOrderIDNotInLowercaseIsDeadLetteredAtOnce: an event naming a real
// order by another form of its UUID (upper case, "urn:uuid:", braces),
// which uuid.Parse takes, is dead-lettered by every consumer at its first
// attempt, the reason saying what is wrong with the id. The order service
// called an upper-case id an unknown order, and the others applied it (a
// second text for the same row) or, for "urn:uuid:", failed in PostgreSQL
// (22P02) and retried five times, holding the partition, before the DLQ.
func TestAnOrderIDNotInLowercaseIsDeadLetteredAtOnce(t *testing.T) {
	t.Parallel()
	const token = "e2e-admin-token"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	any := "127.0.0.1:0"
	prefix := testenv.Prefix(t)
	s, err := suite.Start(ctx, suite.Options{DatabaseURL: testenv.DatabaseURL(t), KafkaBrokers: testenv.Kafka(t), TopicPrefix: prefix,
		AdminToken: token, HTTPAddrs: map[string]string{"order": any, "payment": any, "inventory": any, "shipping": any}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = s.Wait()
	})
	if _, err := seed.Seed(ctx, s.URLs["order"], s.URLs["inventory"], token, nil); err != nil {
		t.Fatal(err)
	}
	body := `{"customer_id":"cust-ids","currency":"USD","items":[{"sku":"SKU-0001","quantity":2}],"payment":{"card_token":"tok_visa"},` +
		`"shipping_address":{"name":"Ada Lovelace","line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}}`
	res, err := http.Post(s.URLs["order"]+"/v1/orders", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var o struct {
		ID         string `json:"id"`
		Status     string `json:"status"`
		TotalCents int64  `json:"total_cents"`
	}
	if err := json.NewDecoder(res.Body).Decode(&o); err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("place: %d %v", res.StatusCode, err)
	}
	res.Body.Close()
	id, total := o.ID, o.TotalCents
	status := func() string {
		t.Helper()
		res, err := http.Get(s.URLs["order"] + "/v1/orders/" + id)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if err := json.NewDecoder(res.Body).Decode(&o); err != nil {
			t.Fatal(err)
		}
		return o.Status
	}
	testenv.Eventually(t, 30*time.Second, "the order never confirmed", func() bool { return status() == "confirmed" })

	forms := []string{strings.ToUpper(id), "urn:uuid:" + id, "{" + id + "}"}
	var msgs []kafka.Message
	for _, form := range forms {
		for _, p := range []events.Payload{
			events.OrderConfirmed{OrderID: form, ConfirmedAt: time.Now().UTC()},                                 // payment, inventory, shipping
			events.PaymentDeclined{OrderID: form, AmountCents: total, Currency: "USD", Reason: "card_declined"}, // order
		} {
			m, err := events.Encode(events.New(p.EventType().Source(), p))
			if err != nil {
				t.Fatal(err)
			}
			km := kafka.Message{Topic: prefix + m.Topic, Key: m.Key, Value: m.Value}
			for _, h := range m.Headers {
				km.Headers = append(km.Headers, kafka.Header(h))
			}
			msgs = append(msgs, km)
		}
	}
	w := &kafka.Writer{Addr: kafka.TCP(s.Brokers...), Balancer: &kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond, Transport: &kafka.Transport{}}
	defer w.Close()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}

	var want []string
	for _, group := range []string{"inventory", "order", "payment", "shipping"} {
		for _, form := range forms {
			want = append(want, fmt.Sprintf("%s %s attempts 1: order id %q is not a lowercase UUID", group, form, form))
		}
	}
	slices.Sort(want)
	var got []string
	deadline := time.Now().Add(20 * time.Second)
	for len(got) < len(want) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		letters, _, err := dlq.List(ctx, dlq.Config{Brokers: s.Brokers, Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		got = got[:0]
		for _, l := range letters {
			reason := l.Error
			if _, after, ok := strings.Cut(l.Error, ": order id"); ok {
				reason = "order id" + after
			}
			got = append(got, fmt.Sprintf("%s %s attempts %d: %s", l.Group, l.Key, l.Attempts, reason))
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("dead letters:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if st := status(); st != "confirmed" {
		t.Errorf("order %s is %s, want still confirmed", id, st)
	}
}
