package e2e

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shopflow/shopflow/cmd/shop/check"
	"github.com/shopflow/shopflow/cmd/shop/seed"
	"github.com/shopflow/shopflow/pkg/platform/config"
	"github.com/shopflow/shopflow/pkg/platform/service"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// TestUnansweredOrderExpires: with the payment service down, an order is
// cancelled ORDER_PENDING_TIMEOUT (1 s here, and the rounds' margin)
// after it was placed, naming the step that never answered; inventory
// releases its stock and shipping cancels its shipment; when payment comes
// back it authorizes and voids, and shop check finds nothing standing.
func TestUnansweredOrderExpires(t *testing.T) {
	t.Parallel()
	dbURL := testenv.DatabaseURL(t)
	brokers, prefix := strings.Join(testenv.Kafka(t), ","), testenv.Prefix(t)
	const token = "e2e-admin-token"
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	start := func(name string, extra map[string]string) string {
		env := map[string]string{"DATABASE_URL": dbURL, "KAFKA_BROKERS": brokers, "KAFKA_TOPIC_PREFIX": prefix,
			"HTTP_ADDR": "127.0.0.1:0", "ADMIN_TOKEN": token}
		for k, v := range extra {
			env[k] = v
		}
		addr, _ := testenv.Serve(t, func(ctx context.Context, started func(string)) error {
			return serviceRuns[name](service.OnStarted(ctx, started), config.WithEnvironment(env), log)
		})
		return "http://" + addr
	}
	inventoryURL := start("inventory", nil)
	shippingURL := start("shipping", nil)
	orderURL := start("order", map[string]string{"ORDER_PENDING_TIMEOUT": "1s", "INVENTORY_URL": inventoryURL, "SHIPPING_URL": shippingURL})
	ctx := context.Background()
	if _, err := seed.Seed(ctx, orderURL, inventoryURL, token, nil); err != nil {
		t.Fatal(err)
	}

	body := `{"customer_id":"cust-expiry","currency":"USD","items":[{"sku":"SKU-0001","quantity":2}],"payment":{"card_token":"tok_visa"},` +
		`"shipping_address":{"name":"Ada Lovelace","line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}}`
	res, err := http.Post(orderURL+"/v1/orders", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var placed struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(res.Body).Decode(&placed); err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("place: %d %v", res.StatusCode, err)
	}
	res.Body.Close()
	getJSON := func(u string) map[string]any {
		res, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		var v map[string]any
		_ = json.Unmarshal(b, &v)
		return v
	}
	waitFor := func(what, u, field, want string) map[string]any {
		t.Helper()
		var last map[string]any
		testenv.Eventually(t, time.Minute, what, func() bool {
			last = getJSON(u)
			return last[field] == want
		})
		return last
	}

	o := waitFor("the order cancelled for want of payment's answer", orderURL+"/v1/orders/"+placed.ID, "status", "cancelled")
	if o["reason"] != "no answer from payment within 1s" {
		t.Errorf("reason %q, want %q", o["reason"], "no answer from payment within 1s")
	}
	waitFor("the shipment cancelled", shippingURL+"/v1/shipments/"+placed.ID, "status", "cancelled")
	testenv.Eventually(t, time.Minute, "the stock released", func() bool {
		return getJSON(inventoryURL + "/v1/stock/SKU-0001")["reserved"] == float64(0)
	})

	paymentURL := start("payment", nil)
	waitFor("payment authorizes, then voids", paymentURL+"/v1/payments/"+placed.ID, "status", "voided")

	pool := testenv.PoolAt(t, dbURL, "orders")
	report, err := check.Run(ctx, pool, check.Options{Wait: time.Minute, Baseline: seed.Initial()})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range report.Violations {
		t.Errorf("violation: %s", v)
	}
	if report.Orders["cancelled"] != 1 || !report.Settled {
		t.Errorf("check: %v orders, settled %v", report.Orders, report.Settled)
	}
}
