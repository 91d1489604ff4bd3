package web

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/shopflow/shopflow/services/order/internal/order"
)

func TestFormatMoney(t *testing.T) {
	for _, c := range []struct {
		minor    int64
		currency string
		want     string
	}{
		{2499, "USD", "$24.99"},
		{5, "EUR", "€0.05"},
		{0, "GBP", "£0.00"},
		{-150, "USD", "-$1.50"},
		{1500, "JPY", "¥1,500"},
		{1_000_000, "USD", "$10,000.00"},
		{-123456789, "EUR", "-€1,234,567.89"},
		{1234, "KWD", "KWD 1.234"},
		{100, "CHF", "CHF 1.00"},
	} {
		if got := formatMoney(c.minor, c.currency); got != c.want {
			t.Errorf("formatMoney(%d, %s) = %q, want %q", c.minor, c.currency, got, c.want)
		}
	}
}

func TestMetricSum(t *testing.T) {
	for _, c := range []struct {
		name, text string
		want       int64
		err        error
	}{
		{"labelled", "# TYPE shop_outbox_backlog gauge\nshop_outbox_backlog{service=\"payment\"} 7\n", 7, nil},
		{"several series", "shop_outbox_backlog{a=\"1\"} 2\nshop_outbox_backlog{a=\"}\"} 3 1700000000000\n", 5, nil},
		{"bare", "shop_outbox_backlog 4\n", 4, nil},
		{"longer names ignored", "shop_outbox_backlog_seconds 9\nshop_outbox_backlog 1\n", 1, nil},
		{"absent", "go_goroutines 12\n", 0, errNoMetric},
		{"empty", "", 0, errNoMetric},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := metricSum(strings.NewReader(c.text), "shop_outbox_backlog")
			if got != c.want || !errors.Is(err, c.err) {
				t.Errorf("= %d, %v; want %d, %v", got, err, c.want, c.err)
			}
		})
	}
	if _, err := metricSum(strings.NewReader("shop_outbox_backlog{x=\"1\"} lots\n"), "shop_outbox_backlog"); err == nil {
		t.Error("a malformed value was accepted")
	}
}

func TestStepStates(t *testing.T) {
	for _, c := range []struct {
		step  order.Step
		state string
	}{
		{order.StepPending, "pending"},
		{order.PaymentAuthorized, "done"}, {order.StockReserved, "done"}, {order.ShipmentScheduled, "done"},
		{order.PaymentDeclined, "failed"}, {order.StockRejected, "failed"},
		{order.PaymentVoided, "undone"}, {order.PaymentRefunded, "undone"}, {order.StockReleased, "undone"}, {order.ShipmentCancelled, "undone"},
	} {
		if got := step("k", "K", c.step); got.State != c.state || got.Label == "" {
			t.Errorf("step(%s) = %+v, want state %s", c.step, got, c.state)
		}
	}
}

func TestStatusMix(t *testing.T) {
	got := statusMix(map[string]int64{"pending": 1, "confirmed": 3})
	if len(got) != 3 || got[0].Percent != 25 || got[1].Percent != 75 || got[2].Count != 0 || got[2].Status != "cancelled" {
		t.Errorf("statusMix = %+v", got)
	}
	if got := statusMix(map[string]int64{}); got[0].Percent != 0 {
		t.Errorf("empty statusMix = %+v", got)
	}
}

func TestOrNA(t *testing.T) {
	n, f := int64(42), 0.5
	orNA := funcs["orNA"].(func(any) string)
	for _, c := range []struct {
		v    any
		want string
	}{{&n, "42"}, {&f, "0.50"}, {(*int64)(nil), "n/a"}, {(*float64)(nil), "n/a"}} {
		if got := orNA(c.v); got != c.want {
			t.Errorf("orNA(%v) = %q, want %q", c.v, got, c.want)
		}
	}
}

func TestReasonText(t *testing.T) {
	lines := []order.Line{{SKU: "SKU-0001", Name: "Espresso beans, 1 kg"}, {SKU: "SKU-0002", Name: "Filter papers"}}
	cancelled := func(f func(o *order.Order)) order.Order {
		o := order.Order{Status: order.Cancelled, Currency: "USD", Lines: lines}
		f(&o)
		return o
	}
	for _, c := range []struct {
		name string
		o    order.Order
		want string
	}{
		{"pending", order.Order{Status: order.Pending}, ""},
		{"card declined", cancelled(func(o *order.Order) { o.PaymentFailure = "payment declined: card_declined" }), "Your card was declined."},
		{"over the limit", cancelled(func(o *order.Order) { o.PaymentFailure = "payment declined: amount_exceeds_limit" }),
			"The amount is over the card's limit of $10,000.00."},
		{"over the limit in yen", cancelled(func(o *order.Order) {
			o.Currency = "JPY"
			o.PaymentFailure = "payment declined: amount_exceeds_limit"
		}), "The amount is over the card's limit of ¥10,000."},
		{"unknown code", cancelled(func(o *order.Order) { o.PaymentFailure = "payment declined: insufficient funds" }),
			"payment declined: insufficient funds"},
		{"out of stock", cancelled(func(o *order.Order) {
			o.InventoryFailure = "out of stock: SKU-0001 (wanted 2, 1 available), SKU-0009 (wanted 1, 0 available)"
		}), "Not enough in stock: Espresso beans, 1 kg (you asked for 2, 1 left); SKU-0009 (you asked for 1, 0 left)."},
		{"out of stock, other form", cancelled(func(o *order.Order) { o.InventoryFailure = "out of stock: no reason given" }),
			"out of stock: no reason given"},
		{"both", cancelled(func(o *order.Order) {
			o.PaymentFailure = "payment declined: card_declined"
			o.InventoryFailure = "out of stock: SKU-0002 (wanted 3, 0 available)"
		}), "Your card was declined. Not enough in stock: Filter papers (you asked for 3, 0 left)."},
		{"by the customer", cancelled(func(o *order.Order) { o.CustomerCancel = true }), "You cancelled the order."},
		{"expired", cancelled(func(o *order.Order) { o.Expiry = "no answer from payment, shipping within 1h30m0s" }),
			"Cancelled automatically: the payment and shipping did not answer within 1 hour 30 minutes."},
		{"expired, one step", cancelled(func(o *order.Order) { o.Expiry = "no answer from inventory within 1s" }),
			"Cancelled automatically: the stock check did not answer within 1 second."},
		{"expired, other form", cancelled(func(o *order.Order) { o.Expiry = "no answer from billing within 1s" }),
			"no answer from billing within 1s"},
	} {
		if got := reasonText(c.o); got != c.want {
			t.Errorf("%s: reasonText = %q, want %q", c.name, got, c.want)
		}
	}
}

// The order page writes the city and postal code as the address's
// country does, as the shipping label does; the postal code came first
// for every country ("12345 Springfield", "SW1A 1AA London").
func TestOrderPageWritesTheAddressAsItsCountryDoes(t *testing.T) {
	pages, err := parsePages()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ country, city, postal, want string }{
		{"US", "Springfield", "12345", "Springfield 12345<br>US"},
		{"GB", "London", "SW1A 1AA", "London<br>SW1A 1AA<br>GB"},
		{"DE", "Berlin", "10115", "10115 Berlin<br>DE"},
	} {
		o := order.Order{ID: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", Status: order.Pending, Currency: "USD",
			Address: order.Address{Name: "Ada Lovelace", Line1: "1 Main St", City: c.city, PostalCode: c.postal, Country: c.country}}
		var page bytes.Buffer
		if err := pages["order"].Execute(&page, layoutData{Title: "Order", Nav: "order", Data: (&Web{}).orderView(o)}); err != nil {
			t.Fatal(err)
		}
		if want := "<address>Ada Lovelace<br>1 Main St<br>" + c.want + "</address>"; !strings.Contains(page.String(), want) {
			i := strings.Index(page.String(), "<address>")
			t.Errorf("%s: the order page shows %.80q, want %q", c.country, page.String()[max(i, 0):], want)
		}
	}
}
