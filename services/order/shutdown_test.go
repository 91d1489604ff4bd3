package order_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shopflow/shopflow/pkg/platform/service"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
	"github.com/shopflow/shopflow/services/order"
)

// TestShutdownWhileAPlacementWaitsOnTheDatabase: SIGTERM while a
// placement waits on the database (the orders table locked by another
// session, as a migration or an operator's LOCK TABLE does) stops the
// service within SHUTDOWN_TIMEOUT: the shutdown ends the placement's
// request and its batch, the client gets 503 with Retry-After and its
// Idempotency-Key, and the batch is rolled back (its statement
// cancelled: nothing waits on the lock after, and no order is stored).
// The batch used to run on to its group's deadline (the request's 25 s
// and 1 s), holding its connection, and the pool's close waited for it:
// the replicas trial's order replica exited 24.7 s after SIGTERM with
// SHUTDOWN_TIMEOUT=4s, and its client got no answer.
func TestShutdownWhileAPlacementWaitsOnTheDatabase(t *testing.T) {
	t.Parallel()
	const timeout = 4 * time.Second
	cfg := order.Config{Common: testenv.Common(t), AdminToken: adminToken, Currencies: []string{"USD"}}
	cfg.ShutdownTimeout = timeout
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, done := make(chan string, 1), make(chan error, 1)
	go func() {
		done <- order.Run(service.OnStarted(ctx, func(a string) { addr <- a }), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	h := &harness{t: t, dbURL: cfg.DatabaseURL}
	select {
	case a := <-addr:
		h.base = "http://" + a
	case err := <-done:
		t.Fatalf("Run returned before starting: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("the service did not start within a minute")
	}
	h.db = testenv.PoolAt(t, cfg.DatabaseURL, "orders")
	h.putProduct("SKU-0001", 1999, "USD")

	bg := context.Background()
	lock, err := h.db.Begin(bg)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback(bg) //nolint:errcheck // released below
	if _, err := lock.Exec(bg, `LOCK TABLE orders IN SHARE MODE`); err != nil {
		t.Fatal(err)
	}
	const key = "shutdown-1"
	type answer struct {
		res  *http.Response
		body string
		err  error
	}
	placed := make(chan answer, 1)
	go func() {
		b, _ := json.Marshal(orderBody())
		req, _ := http.NewRequest("POST", h.base+"/v1/orders", bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		res, err := (&http.Client{Timeout: time.Minute}).Do(req)
		if err != nil {
			placed <- answer{err: err}
			return
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		placed <- answer{res: res, body: string(body), err: err}
	}()
	waiting := func() int {
		var n int
		const q = `SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND application_name = 'shopflow-orders' AND wait_event_type = 'Lock'`
		if err := h.db.QueryRow(bg, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	testenv.Eventually(t, 30*time.Second, "the placement waiting on the lock", func() bool { return waiting() > 0 })

	start := time.Now()
	cancel() // SIGTERM
	select {
	case err := <-done:
		took := time.Since(start)
		t.Logf("Run returned %s after the stop, SHUTDOWN_TIMEOUT %s: %v", took.Round(time.Millisecond), timeout, err)
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
		if took > timeout+5*time.Second {
			t.Errorf("Run returned %s after the stop, want within SHUTDOWN_TIMEOUT %s (and a margin)", took.Round(time.Millisecond), timeout)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run still running a minute after the stop")
	}

	a := <-placed
	if a.err != nil {
		t.Fatalf("the placement got no answer: %v; want 503 naming its key", a.err)
	}
	if a.res.StatusCode != http.StatusServiceUnavailable || a.res.Header.Get("Retry-After") == "" ||
		a.res.Header.Get("Idempotency-Key") != key || !strings.Contains(a.body, "shutting down") {
		t.Errorf("the placement = %d, Retry-After %q, Idempotency-Key %q: %s; want 503 with Retry-After and the key, saying the service is shutting down",
			a.res.StatusCode, a.res.Header.Get("Retry-After"), a.res.Header.Get("Idempotency-Key"), a.body)
	}
	// Rolled back: its statement cancelled while the lock is still held,
	// so nothing is stored once it is gone.
	testenv.Eventually(t, 10*time.Second, "the placement's statement cancelled (no backend left waiting on the lock)",
		func() bool { return waiting() == 0 })
	if err := lock.Rollback(bg); err != nil {
		t.Fatal(err)
	}
	if n := h.countOrders(); n != 0 {
		t.Errorf("%d orders stored after the shutdown ended the placement, want 0", n)
	}
}
