package outbox_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopflow/shopflow/pkg/platform/outbox"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// During a database outage the relay retries every LockRetry but says so
// once (then at most every 30 s), not once a retry as before (36
// warnings in 36 s); when the database answers again it says that too.
func TestADatabaseOutageIsLoggedOnce(t *testing.T) {
	t.Parallel()
	base := newPool(t)
	cfg := base.Config().Copy()
	var down atomic.Bool
	down.Store(true)
	cfg.BeforeConnect = func(context.Context, *pgx.ConnConfig) error {
		if down.Load() {
			return errors.New("database down (test)")
		}
		return nil
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)

	logs := &testenv.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	r := outbox.NewRelay(pool, outbox.RelayConfig{Brokers: testenv.Kafka(t), LockRetry: 10 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	}()

	time.Sleep(500 * time.Millisecond) // some 40 retries
	if n := strings.Count(logs.String(), "relay session ended, retrying"); n != 1 {
		t.Fatalf("%d retry warnings in 0.5 s of outage, want 1:\n%s", n, logs)
	}
	down.Store(false)
	testenv.Eventually(t, 10*time.Second, "no line saying the relay resumed", func() bool {
		return strings.Contains(logs.String(), `"msg":"relay resumed"`)
	})
	if !strings.Contains(logs.String(), `"retries_not_logged":`) {
		t.Errorf("the resumed line does not count the retries not logged:\n%s", logs)
	}
}

// With the broker away and the database up, every session reaches the
// database and fails at publishing: that is one warning, and no "relay
// resumed" until it publishes again. It said "resumed" every session,
// which also made every failure a fresh warning.
func TestABrokerOutageIsLoggedOnce(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	writeTx(t, pool, testenv.Topic(t, "away", 1), event("order-1", 1))
	logs := &testenv.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	r := outbox.NewRelay(pool, outbox.RelayConfig{Brokers: []string{"127.0.0.1:1"}, LockRetry: 10 * time.Millisecond,
		FlushTimeout: 100 * time.Millisecond, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	testenv.Eventually(t, 30*time.Second, "the first retry warning", func() bool {
		return strings.Contains(logs.String(), "relay session ended, retrying")
	})
	time.Sleep(time.Second) // more failed sessions
	cancel()
	if err := <-done; err != nil {
		t.Errorf("relay: %v", err)
	}
	if n := strings.Count(logs.String(), "relay session ended, retrying"); n != 1 || strings.Contains(logs.String(), "relay resumed") {
		t.Errorf("%d retry warnings and resumed %v in a second of broker outage, want 1 and no resumed:\n%s",
			n, strings.Contains(logs.String(), "relay resumed"), logs)
	}
}
