package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopflow/shopflow/services/order/internal/app"
	domain "github.com/shopflow/shopflow/services/order/internal/order"
	"github.com/shopflow/shopflow/services/order/internal/store"
)

// A result that contradicts its step's recorded outcome (authorized,
// then declined; reserved, then rejected; declined, then voided) leaves
// the order as the first answer made it, and is not dropped silently: a
// WARN names the order, both outcomes and the event, and
// shop_order_conflicting_results_total{step} counts it.
func TestAContradictingResultIsLoggedAndCounted(t *testing.T) {
	_, pool := newApp(t)
	ctx := context.Background()
	var logs bytes.Buffer
	a := app.New(pool, []string{"USD"}, slog.New(slog.NewJSONHandler(&logs, nil)), nil, 0)
	reg := prometheus.NewRegistry()
	reg.MustRegister(a.Collectors()...)

	paid, declined := queued(t, "paid", "", 1000, 250), queued(t, "declined", "", 1000, 250)
	for _, err := range a.StoreGroup(ctx, paid, declined) {
		if err != nil {
			t.Fatal(err)
		}
	}
	money := &domain.Amount{Cents: 2250, Currency: "USD"} // 2 × 1000 + 250
	lines := map[string]int{"SKU-1": 2, "SKU-2": 1}
	apply := func(q app.Queued, eventID string, r domain.Result) {
		t.Helper()
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if err := a.ApplyAll(ctx, tx, []app.StepResult{{Ctx: ctx, OrderID: q.Order.ID, Result: r, At: q.Order.PlacedAt, EventID: eventID}}); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	apply(paid, "e1", domain.Result{Step: domain.PaymentAuthorized, Amount: money})
	apply(paid, "e2", domain.Result{Step: domain.StockReserved, Stock: lines})
	apply(paid, "e3", domain.Result{Step: domain.PaymentDeclined, Reason: "card_declined", Amount: money})
	apply(paid, "e4", domain.Result{Step: domain.StockRejected, Reason: "SKU-1", Stock: map[string]int{"SKU-1": 2}, Partial: true})
	apply(declined, "e5", domain.Result{Step: domain.PaymentDeclined, Reason: "card_declined", Amount: money})
	apply(declined, "e6", domain.Result{Step: domain.PaymentVoided, Amount: money})

	for q, want := range map[*app.Queued]string{&paid: "pending authorized reserved", &declined: "cancelled declined pending"} {
		o, err := store.GetOrder(ctx, pool, q.Order.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join([]string{string(o.Status), string(o.Steps.Payment), string(o.Steps.Inventory)}, " "); got != want {
			t.Errorf("order %s: %s, want %s (the first answers stand)", q.Order.CustomerID, got, want)
		}
	}

	type line struct {
		Level, Msg, OrderID, Step, Recorded, Result, EventID string
	}
	var warned []line
	for l := range strings.Lines(logs.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["level"] != "WARN" {
			continue
		}
		s := func(k string) string { v, _ := m[k].(string); return v }
		warned = append(warned, line{s("level"), s("msg"), s("order_id"), s("step"), s("recorded"), s("result"), s("event_id")})
	}
	const msg = "a result contradicts its step's recorded outcome; the order is left as it is"
	want := []line{
		{"WARN", msg, paid.Order.ID, "payment", "authorized", "declined", "e3"},
		{"WARN", msg, paid.Order.ID, "inventory", "reserved", "rejected", "e4"},
		{"WARN", msg, declined.Order.ID, "payment", "declined", "voided", "e6"},
	}
	if len(warned) != len(want) {
		t.Fatalf("warnings %+v, want %+v", warned, want)
	}
	for i := range want {
		if warned[i] != want[i] {
			t.Errorf("warning %d: %+v, want %+v", i, warned[i], want[i])
		}
	}

	counts := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "shop_order_conflicting_results_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			counts[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	if counts["payment"] != 2 || counts["inventory"] != 1 || counts["shipping"] != 0 || len(counts) != 3 {
		t.Errorf("shop_order_conflicting_results_total = %v, want payment 2, inventory 1, shipping 0", counts)
	}
}

// A result whose money or lines are not its order's fails ApplyAll with
// a *app.ResultError naming it (the consumer dead-letters it), before
// any result of the call is applied; the order's genuine results apply.
func TestAResultNotMatchingItsOrderIsRefused(t *testing.T) {
	a, pool := newApp(t)
	ctx := context.Background()
	q := queued(t, "c", "", 1000, 250)
	if err := a.StoreGroup(ctx, q)[0]; err != nil {
		t.Fatal(err)
	}
	result := func(r domain.Result) app.StepResult {
		return app.StepResult{Ctx: ctx, OrderID: q.Order.ID, Result: r, At: time.Now()}
	}
	good := result(domain.Result{Step: domain.PaymentAuthorized, Amount: &domain.Amount{Cents: 2250, Currency: "USD"}})
	for _, tc := range []struct {
		r    domain.Result
		want string
	}{
		{domain.Result{Step: domain.PaymentAuthorized, Amount: &domain.Amount{Cents: 2250, Currency: "EUR"}},
			"it is for 2250 EUR (minor units), the order's total is 2250 USD"},
		{domain.Result{Step: domain.PaymentVoided, Amount: &domain.Amount{Cents: 1, Currency: "USD"}},
			"it is for 1 USD (minor units), the order's total is 2250 USD"},
		{domain.Result{Step: domain.StockReserved, Stock: map[string]int{"SKU-1": 2}},
			"it names SKU-1×2, the order's lines are SKU-1×2, SKU-2×1"},
		{domain.Result{Step: domain.StockReleased, Stock: map[string]int{"SKU-1": 2, "SKU-2": 1, "SKU-3": 1}},
			"it names SKU-1×2, SKU-2×1, SKU-3×1, the order's lines are SKU-1×2, SKU-2×1"},
		{domain.Result{Step: domain.StockRejected, Stock: map[string]int{"SKU-2": 3}, Partial: true},
			"it names SKU-2×3, the order's lines are SKU-1×2, SKU-2×1"},
	} {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		err = a.ApplyAll(ctx, tx, []app.StepResult{good, result(tc.r)})
		_ = tx.Rollback(ctx)
		re, ok := err.(*app.ResultError)
		if !ok || re.Index != 1 || !strings.Contains(re.Error(), tc.want) {
			t.Errorf("%s %+v: %v, want a ResultError for result 1: %q", tc.r.Step, tc.r, err, tc.want)
		}
	}
	// The genuine ones: the whole total, the lines summed by SKU, the
	// short lines of a rejection.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := a.ApplyAll(ctx, tx, []app.StepResult{good,
		result(domain.Result{Step: domain.StockRejected, Stock: map[string]int{"SKU-2": 1}, Partial: true}),
		result(domain.Result{Step: domain.PaymentVoided, Amount: &domain.Amount{Cents: 2250, Currency: "USD"}}),
	}); err != nil {
		t.Fatalf("the order's own results: %v", err)
	}
}

// A result dated in the future (the contract allows ce_time up to year
// 9999; a producer's clock can run ahead) is dated by the order
// service's clock instead: else updated_at and confirmed_at stayed there
// for good, as an order's times never move back, and shop check took the
// order for one changed in the future, forever still settling. A result
// dated in the past keeps its time.
func TestAResultFromTheFutureIsDatedNow(t *testing.T) {
	a, pool := newApp(t)
	ctx := context.Background()
	late, ahead := queued(t, "late", "", 1000, 250), queued(t, "ahead", "", 1000, 250)
	for _, err := range a.StoreGroup(ctx, late, ahead) {
		if err != nil {
			t.Fatal(err)
		}
	}
	placed := late.Order.PlacedAt
	now := placed.Add(time.Minute)
	a.SetNow(func() time.Time { return now })
	future := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	results := func(q app.Queued, at time.Time) []app.StepResult {
		var rs []app.StepResult
		for _, r := range []domain.Result{
			{Step: domain.PaymentAuthorized, Amount: &domain.Amount{Cents: 2250, Currency: "USD"}},
			{Step: domain.StockReserved, Stock: map[string]int{"SKU-1": 2, "SKU-2": 1}},
			{Step: domain.ShipmentScheduled, TrackingNumber: "SF1"},
		} {
			rs = append(rs, app.StepResult{Ctx: ctx, OrderID: q.Order.ID, Result: r, At: at})
		}
		return rs
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := a.ApplyAll(ctx, tx, append(results(late, placed.Add(time.Second)), results(ahead, future)...)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for q, want := range map[*app.Queued]time.Time{&late: placed.Add(time.Second), &ahead: now} {
		o, err := store.GetOrder(ctx, pool, q.Order.ID)
		if err != nil {
			t.Fatal(err)
		}
		if o.Status != domain.Confirmed || !o.ConfirmedAt.Equal(want) || !o.UpdatedAt.Equal(want) {
			t.Errorf("order %s: %s, confirmed_at %s, updated_at %s; want confirmed at %s", q.Order.CustomerID, o.Status,
				o.ConfirmedAt, o.UpdatedAt, want)
		}
	}
}
