package consume

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/services/order/internal/order"
)

// maxLength reads the bound the contract's JSON Schema puts on a string
// property of an event type.
func maxLength(t *testing.T, typ events.Type, property string) int {
	t.Helper()
	b, err := fs.ReadFile(events.Schemas(), string(typ)+".json")
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties map[string]struct {
			MaxLength int `json:"maxLength"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	n := schema.Properties[property].MaxLength
	if n == 0 {
		t.Fatalf("%s.%s has no maxLength", typ, property)
	}
	return n
}

// The order service composes an OrderCancelled's reason from its steps'
// failures, which come from results it did not write. The longest the
// contract lets them make it (a decline's reason at its bound, and every
// one of the most lines an order may have rejected, each SKU at its
// bound and the figures at their widest) still makes an OrderCancelled
// the contract takes: one it refused could never be written, and the
// order would never be cancelled.
func TestTheLongestCancellationReasonFits(t *testing.T) {
	const id = "01a247dd-0372-7c3e-9b1a-0123456789ab"
	now := time.Now().UTC()
	var lines []order.Line
	var short []events.ShortLine
	for i := range events.MaxLines {
		sku := fmt.Sprintf("%064d", i) // 64 characters, the most the API (and the contract) lets a SKU have
		lines = append(lines, order.Line{SKU: sku, Name: "n", Quantity: order.MaxQuantity, UnitPriceCents: 1})
		short = append(short, events.ShortLine{SKU: sku, Requested: events.MaxLines * events.MaxQuantity, Available: math.MaxInt})
	}
	o, err := order.New(id, "cust-42", "USD", "tok_visa", lines, order.Address{Name: "A", Line1: "1", City: "C", PostalCode: "1", Country: "US"}, now)
	if err != nil {
		t.Fatal(err)
	}
	declined := events.PaymentDeclined{OrderID: id, AmountCents: o.TotalCents, Currency: "USD",
		Reason: strings.Repeat("x", maxLength(t, events.TypePaymentDeclined, "reason"))}
	for _, p := range []events.Payload{declined, events.StockRejected{OrderID: id, Short: short}} {
		if err := p.Validate(); err != nil {
			t.Fatalf("the longest result is not valid: %v", err)
		}
		_, r, _ := Translate(p)
		o.Apply(r, now)
	}
	reason := o.Reason()
	if !strings.HasPrefix(reason, "payment declined: ") || !strings.Contains(reason, "; out of stock: ") {
		t.Fatalf("reason %.80q..., want both failures", reason)
	}
	if err := (events.OrderCancelled{OrderID: id, Reason: reason, CancelledAt: now}).Validate(); err != nil {
		t.Errorf("the longest reason, %d characters: %v", len(reason), err)
	}
}
