package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/outbox"
	"github.com/shopflow/shopflow/pkg/platform/pg"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
	"github.com/shopflow/shopflow/pkg/platform/tracing"
	order "github.com/shopflow/shopflow/services/order"
	"github.com/shopflow/shopflow/services/order/internal/app"
	domain "github.com/shopflow/shopflow/services/order/internal/order"
	"github.com/shopflow/shopflow/services/order/internal/store"
)

func newApp(t *testing.T) (*app.App, *pgxpool.Pool) {
	t.Helper()
	pool := testenv.Pool(t, "orders",
		pg.Migrations{Name: outbox.MigrationsTable, FS: outbox.Migrations()},
		pg.Migrations{Name: inbox.MigrationsTable, FS: inbox.Migrations()},
		order.Spec().Migrations)
	ctx := context.Background()
	for _, p := range []domain.Product{
		{SKU: "SKU-1", Name: "One", PriceCents: 1000, Currency: "USD", Active: true},
		{SKU: "SKU-2", Name: "Two", PriceCents: 250, Currency: "USD", Active: true},
	} {
		if _, _, err := store.PutProduct(ctx, pool, p, store.Upsert); err != nil {
			t.Fatal(err)
		}
	}
	return app.New(pool, []string{"USD"}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil, 0), pool
}

func render(o domain.Order) store.Response {
	body, _ := json.Marshal(map[string]any{"id": o.ID, "customer_id": o.CustomerID, "total_cents": o.TotalCents})
	return store.Response{Status: 201, Body: body, Location: "/v1/orders/" + o.ID}
}

var addr = domain.Address{Name: "Ada", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"}

// Replicas share the catalog table but each keeps its own copy: a product
// another replica moved to a new currency must sell in it here too, not
// be refused from the copy (check_prices re-checks only what is stored).
func TestCatalogCopyNeverRefusesWhatTheTableSells(t *testing.T) {
	_, pool := newApp(t)
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a := app.New(pool, []string{"USD", "EUR"}, log, nil, 0)
	b := app.New(pool, []string{"USD", "EUR"}, log, nil, 0)
	req := func(cur string) app.PlaceRequest {
		return app.PlaceRequest{CustomerID: "c1", Currency: cur, Items: []app.Item{{SKU: "SKU-1", Quantity: 1}},
			CardToken: "tok_visa", Address: addr}
	}
	if _, err := a.Place(ctx, nil, req("USD"), render); err != nil { // a now holds SKU-1 in USD
		t.Fatalf("USD order: %v", err)
	}
	if _, _, err := b.PutProduct(ctx, domain.Product{SKU: "SKU-1", Name: "One", PriceCents: 900, Currency: "EUR", Active: true}, store.Upsert); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Place(ctx, nil, req("EUR"), render); err != nil {
		t.Errorf("EUR order after another replica moved SKU-1 to EUR: %v", err)
	}
	var ve *app.ValidationError
	if _, err := a.Place(ctx, nil, req("USD"), render); !errors.As(err, &ve) || !strings.Contains(err.Error(), "sold in EUR, not USD") {
		t.Errorf("USD order after the move: %v, want refused as sold in EUR", err)
	}
}

// A retry whose key is still in flight (the first request not committed
// yet) hears ErrKeyInFlight, not "the prices changed, nothing was
// placed", even when the price changed meanwhile: the first request may
// yet place the order, and a refusal invited a new attempt under a new
// key, so a second charge (found by a review).
func TestTotalChangedNotSaidWhileTheKeyIsInFlight(t *testing.T) {
	a, pool := newApp(t)
	ctx := context.Background()
	expected := int64(1000)
	req := app.PlaceRequest{CustomerID: "c1", Currency: "USD", Items: []app.Item{{SKU: "SKU-1", Quantity: 1}},
		CardToken: "tok_visa", Address: addr, ExpectedTotalCents: &expected}
	key := &app.Key{Value: "k-in-flight", Fingerprint: []byte("fp")}
	// The first request holds its key while its insert is slow.
	if _, err := pool.Exec(ctx, `CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(2); RETURN NEW; END $$;
CREATE TRIGGER slow BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION slow()`); err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() { _, err := a.Place(ctx, key, req, render); first <- err }()
	// It has taken its key and passed check_prices once its insert sleeps;
	// a price changed before that would (rightly) refuse it too.
	testenv.Eventually(t, 10*time.Second, "the first request's insert never started", func() bool {
		var sleeping bool
		err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
WHERE datname = current_database() AND wait_event = 'PgSleep')`).Scan(&sleeping)
		return err == nil && sleeping
	})
	if _, _, err := a.PutProduct(ctx, domain.Product{SKU: "SKU-1", Name: "One", PriceCents: 1100, Currency: "USD", Active: true}, store.Upsert); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Place(ctx, key, req, render); !errors.Is(err, app.ErrKeyInFlight) {
		t.Errorf("retry while the key is in flight, after a price change: %v, want ErrKeyInFlight", err)
	}
	if err := <-first; err != nil {
		t.Fatalf("first request: %v", err)
	}
	// Once it is placed, the retry replays its answer (the refusal path
	// asks StoredAnswer); a request with a free key is refused as before.
	other := &app.Key{Value: "k-free", Fingerprint: []byte("fp")}
	var changed *app.TotalChangedError
	if _, err := a.Place(ctx, other, req, render); !errors.As(err, &changed) || changed.Total != 1100 {
		t.Errorf("a free key at the old total: %v, want TotalChangedError at 1100", err)
	}
}

// queued prices an order for customer at the given prices of SKU-1 and
// SKU-2, with key ("" for none) and its own trace.
func queued(t *testing.T, customer, key string, price1, price2 int64) app.Queued {
	t.Helper()
	o, err := domain.New(uuid.Must(uuid.NewV7()).String(), customer, "USD", "tok_visa", []domain.Line{
		{SKU: "SKU-1", Name: "One", Quantity: 2, UnitPriceCents: price1},
		{SKU: "SKU-2", Name: "Two", Quantity: 1, UnitPriceCents: price2},
	}, addr, time.Now().UTC().Truncate(time.Microsecond))
	if err != nil {
		t.Fatal(err)
	}
	tid := uuid.New()
	ctx := tracing.FromTraceParent(context.Background(), fmt.Sprintf("00-%x-%016x-01", tid[:], 1))
	q := app.Queued{Ctx: ctx, Order: o, Res: render(o)}
	if key != "" {
		q.Key = &app.Key{Value: key, Fingerprint: []byte("fp-" + key)}
	}
	return q
}

// A group whose batch fails is stored member by member: the member that
// failed it gets its own error (a used key, a price the catalog no longer
// has), and every other member is stored exactly as a group of one would
// store it: the order, its lines, its key's response and its event with
// its own trace.
func TestGroupIsolatesAFailingPlacement(t *testing.T) {
	a, pool := newApp(t)
	ctx := context.Background()
	used := queued(t, "cust-used", "used-key", 1000, 250)
	if errs := a.StoreGroup(ctx, used); errs[0] != nil {
		t.Fatal(errs[0])
	}

	for _, tc := range []struct {
		name string
		bad  app.Queued
		why  func(error) bool
	}{
		{"a used key", queued(t, "cust-bad", "used-key", 1000, 250), func(err error) bool { _, u := store.KeyTaken(err); return u }},
		{"a stale price", queued(t, "cust-bad", "stale-key", 900, 250), store.PricesChanged},
		{"none", app.Queued{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := []app.Queued{
				queued(t, "cust-a", "key-a-"+tc.name, 1000, 250),
				queued(t, "cust-b", "", 1000, 250),
			}
			if tc.why != nil {
				g = append(g, tc.bad)
			}
			g = append(g, queued(t, "cust-c", "key-c-"+tc.name, 1000, 250))
			errs := a.StoreGroup(ctx, g...)
			for i, q := range g {
				bad := tc.why != nil && i == 2
				switch {
				case bad && (errs[i] == nil || !tc.why(errs[i])):
					t.Errorf("the bad member: err = %v", errs[i])
				case !bad && errs[i] != nil:
					t.Errorf("member %d (%s): %v", i, q.Order.CustomerID, errs[i])
				case bad:
					var n int
					if err := pool.QueryRow(ctx, `SELECT count(*) FROM orders WHERE id = $1`, q.Order.ID).Scan(&n); err != nil || n != 0 {
						t.Errorf("the bad member's order was stored (%d, %v)", n, err)
					}
				default:
					checkStored(t, pool, q)
				}
			}
		})
	}
}

// TestAFailingGroupTakesOneConnection: a group whose batch fails is
// stored again on one connection at a time. Its members were stored all
// at once, a connection each, which took the whole pool (the saga, the
// relay and reads waited) however ORDER_PLACEMENT_BATCHES was set.
func TestAFailingGroupTakesOneConnection(t *testing.T) {
	a, pool := newApp(t)
	if max := pool.Config().MaxConns; max < 2 {
		t.Fatalf("the pool has %d connections; the test needs more than one to tell", max)
	}
	g := make([]app.Queued, 32)
	for i := range g {
		g[i] = queued(t, fmt.Sprintf("cust-%d", i), "", 1000, 250)
	}
	g[20] = queued(t, "cust-stale", "", 900, 250) // a price the catalog does not have

	var peak int32
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			default:
			}
			peak = max(peak, pool.Stat().AcquiredConns())
			time.Sleep(50 * time.Microsecond)
		}
	}()
	errs := a.StoreGroup(context.Background(), g...)
	close(stop)
	<-sampled
	for i, err := range errs {
		if (i == 20) != (err != nil) {
			t.Errorf("member %d: %v", i, err)
		}
	}
	if peak > 1 {
		t.Errorf("%d connections in use at once while the group was stored, want 1", peak)
	}
}

// checkStored asserts q's order, lines, key and event are stored once.
func checkStored(t *testing.T, pool *pgxpool.Pool, q app.Queued) {
	t.Helper()
	ctx := context.Background()
	var (
		customer, status string
		total            int64
		lines            int
		address          domain.Address
	)
	err := pool.QueryRow(ctx, `SELECT customer_id, status, total_cents, shipping_address,
	    (SELECT count(*) FROM order_lines WHERE order_id = o.id AND unit_price_cents IN (1000, 250))
	    FROM orders o WHERE id = $1`, q.Order.ID).Scan(&customer, &status, &total, &address, &lines)
	if err != nil {
		t.Errorf("order %s: %v", q.Order.CustomerID, err)
		return
	}
	if customer != q.Order.CustomerID || status != "pending" || total != 2250 || lines != 2 || address != addr {
		t.Errorf("order %s stored as %s %s %d %d lines %+v", q.Order.CustomerID, customer, status, total, lines, address)
	}
	if q.Key != nil {
		var body []byte
		var st int
		err := pool.QueryRow(ctx, `SELECT response_status, response_body FROM idempotency_keys WHERE key = $1`, q.Key.Value).Scan(&st, &body)
		if err != nil || st != 201 || string(body) != string(q.Res.Body) {
			t.Errorf("key of %s: %d %s %v", q.Order.CustomerID, st, body, err)
		}
	}
	var n int
	var headers string
	err = pool.QueryRow(ctx, `SELECT count(*), min(headers::text) FROM outbox WHERE key = convert_to($1, 'UTF8')`, q.Order.ID).Scan(&n, &headers)
	if err != nil || n != 1 {
		t.Errorf("%d events for %s (%v)", n, q.Order.CustomerID, err)
		return
	}
	if tp := tracing.TraceParent(q.Ctx); tp == "" || !strings.Contains(headers, tp) {
		t.Errorf("event of %s lost its trace %q: %s", q.Order.CustomerID, tp, headers)
	}
}
