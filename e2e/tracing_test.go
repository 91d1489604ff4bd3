package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/shopflow/shopflow/cmd/shop/seed"
	"github.com/shopflow/shopflow/cmd/shop/suite"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
	"github.com/shopflow/shopflow/pkg/platform/tracing"
)

// TestOneTraceAcrossAnOrder: with tracing on, the request that places an
// order starts a trace that every consumer continues, through the outbox
// and Kafka headers, to the confirmation and its capture.
func TestOneTraceAcrossAnOrder(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const token = "trace-admin-token"
	any := "127.0.0.1:0"
	s, err := suite.Start(tracing.WithProvider(ctx, tp), suite.Options{DatabaseURL: testenv.DatabaseURL(t), KafkaBrokers: testenv.Kafka(t),
		TopicPrefix: testenv.Prefix(t), AdminToken: token,
		HTTPAddrs: map[string]string{"order": any, "payment": any, "inventory": any, "shipping": any}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = s.Wait() }()
	if _, err := seed.Seed(ctx, s.URLs["order"], s.URLs["inventory"], token, nil); err != nil {
		t.Fatal(err)
	}

	body := `{"customer_id":"trace-1","currency":"USD","items":[{"sku":"SKU-0001","quantity":1}],
	  "payment":{"card_token":"tok_visa"},
	  "shipping_address":{"name":"Ada","line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}}`
	res, err := http.Post(s.URLs["order"]+"/v1/orders", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var o struct{ ID string }
	_ = json.NewDecoder(res.Body).Decode(&o)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/orders = %d", res.StatusCode)
	}

	// Wait for the last hops: each service consuming OrderConfirmed.
	consumed := func(group, typ string) bool {
		for _, sp := range exp.GetSpans() {
			if sp.Name == "consume "+typ && attr(sp.Attributes, "messaging.consumer.group.name") == group {
				return true
			}
		}
		return false
	}
	testenv.Eventually(t, time.Minute, "the confirmation never reached payment, inventory and shipping", func() bool {
		return consumed(s.TopicPrefix()+"payment", "shop.order.confirmed.v1") &&
			consumed(s.TopicPrefix()+"inventory", "shop.order.confirmed.v1") &&
			consumed(s.TopicPrefix()+"shipping", "shop.order.confirmed.v1")
	})

	spans := exp.GetSpans()
	var root *tracetest.SpanStub
	for i, sp := range spans {
		if sp.Name == "POST /v1/orders" {
			root = &spans[i]
		}
	}
	if root == nil {
		t.Fatalf("no span for POST /v1/orders among %d spans", len(spans))
	}
	traceID := root.SpanContext.TraceID()
	want := map[string]bool{}
	for _, g := range []string{"payment", "inventory", "shipping"} {
		want[g+" shop.order.placed.v1"] = false
		want[g+" shop.order.confirmed.v1"] = false
	}
	for _, typ := range []string{"shop.payment.authorized.v1", "shop.stock.reserved.v1", "shop.shipment.scheduled.v1"} {
		want["order "+typ] = false
	}
	var ids bytes.Buffer
	for _, sp := range spans {
		if !strings.HasPrefix(sp.Name, "consume ") {
			continue
		}
		group := strings.TrimPrefix(attr(sp.Attributes, "messaging.consumer.group.name"), s.TopicPrefix())
		key := group + " " + strings.TrimPrefix(sp.Name, "consume ")
		if _, ok := want[key]; !ok {
			continue
		}
		if sp.SpanContext.TraceID() != traceID {
			t.Errorf("%s: trace %s, want the request's %s", key, sp.SpanContext.TraceID(), traceID)
			continue
		}
		want[key] = true
		ids.WriteString(key + "; ")
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("no span in the order's trace for %s (seen: %s)", k, ids.String())
		}
	}
}

func attr(kvs []attribute.KeyValue, key string) string {
	for _, kv := range kvs {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}
