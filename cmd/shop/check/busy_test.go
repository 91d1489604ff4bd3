package check_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopflow/shopflow/cmd/shop/check"
	"github.com/shopflow/shopflow/cmd/shop/seed"
)

// TestWaitOnABusyShop: a check with a wait on a shop that keeps taking
// orders checks the orders placed before it began, settles once those
// have, and does not report the ones still in flight. It used to wait for
// every outbox to be empty and no order pending anywhere, which a busy
// shop never is, and then report the orders in flight as violations.
func TestWaitOnABusyShop(t *testing.T) {
	s := startShop(t)
	s.place(t, "tok_visa", item{"SKU-0001", 1})
	placed, failed := s.busy(t)
	time.Sleep(500 * time.Millisecond) // orders are in flight when the check begins

	began := time.Now()
	rep, err := check.Run(context.Background(), s.pool, check.Options{Wait: 20 * time.Second, Poll: 100 * time.Millisecond})
	took := time.Since(began)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Settled || len(rep.Violations) > 0 {
		t.Fatalf("busy shop after %s: settled %v, violations %v", took.Round(time.Millisecond), rep.Settled, rep.Violations)
	}
	n := 0
	for _, c := range rep.Orders {
		n += c
	}
	if all := 1 + int(placed.Load()); n < 2 || n >= all {
		t.Errorf("checked %d orders of the %d placed so far; want the first one, those placed before the check, and not those placed during it", n, all)
	}
	if f := failed.Load(); f > 0 {
		t.Errorf("%d placements failed", f)
	}
	t.Logf("checked %d orders in %s while %d were placed", n, took.Round(time.Millisecond), 1+placed.Load())
}

// TestCheckOnceOnABusyShop: a check without a wait on a shop taking
// orders sees orders in flight (pending, or confirmed or cancelled with
// their results still on their way). They are counted and listed apart,
// never as violations; the check used to report them as broken (61
// violations during a load: reservations still reserved, charges still
// authorized), then as "pending" violations.
func TestCheckOnceOnABusyShop(t *testing.T) {
	s := startShop(t)
	s.busy(t)
	time.Sleep(500 * time.Millisecond)
	for range 10 {
		rep, err := check.Run(context.Background(), s.pool, check.Options{Baseline: seed.Initial()})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range rep.Violations {
			t.Errorf("in flight reported as a violation: %s", v)
		}
		if n := len(rep.InFlightOrders); rep.InFlight != n || rep.Settled != (n == 0) {
			t.Errorf("in flight %d, settled %v; want the %d listed in flight", rep.InFlight, rep.Settled, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// busy places an order every 20 ms until the test ends, and counts the
// placements that succeeded and failed.
func (s *shop) busy(t *testing.T) (placed, failed *atomic.Int64) {
	placed, failed = new(atomic.Int64), new(atomic.Int64)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		client := &http.Client{Timeout: 10 * time.Second}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			body := `{"customer_id":"cust-busy","currency":"USD","items":[{"sku":"SKU-0002","quantity":1}],
"payment":{"card_token":"tok_visa"},"shipping_address":{"name":"Ada Lovelace","line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}}`
			req, _ := http.NewRequest("POST", s.urls["order"]+"/v1/orders", bytes.NewBufferString(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", fmt.Sprintf("busy-%d-%d", time.Now().UnixNano(), i))
			res, err := client.Do(req)
			if err != nil || res.StatusCode != http.StatusCreated {
				failed.Add(1)
			} else {
				placed.Add(1)
			}
			if res != nil {
				res.Body.Close()
			}
		}
	})
	t.Cleanup(func() { close(stop); wg.Wait() })
	return placed, failed
}
