package check_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/shopflow/shopflow/cmd/shop/check"
	"github.com/shopflow/shopflow/cmd/shop/seed"
	"github.com/shopflow/shopflow/pkg/platform/pg"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
	"github.com/shopflow/shopflow/services/inventory/migrations"
)

// restock sets the on hand of sku to its current level plus delta as an
// admin does: PUT /v1/stock/{sku} with If-Match the ETag just read, or
// If-None-Match: * for a SKU not stocked yet. It returns the new level.
func (s *shop) restock(t *testing.T, sku string, delta int64) int64 {
	t.Helper()
	var level struct {
		OnHand int64 `json:"on_hand"`
	}
	res, err := http.Get(s.urls["inventory"] + "/v1/stock/" + sku)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	etag, cond := res.Header.Get("ETag"), "If-Match"
	switch res.StatusCode {
	case http.StatusOK:
		if err := json.Unmarshal(b, &level); err != nil {
			t.Fatal(err)
		}
	case http.StatusNotFound:
		etag, cond = "*", "If-None-Match"
	default:
		t.Fatalf("GET /v1/stock/%s: %d %s", sku, res.StatusCode, b)
	}
	body, _ := json.Marshal(map[string]int64{"on_hand": level.OnHand + delta})
	req, _ := http.NewRequest("PUT", s.urls["inventory"]+"/v1/stock/"+sku, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set(cond, etag)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusCreated {
		t.Fatalf("PUT /v1/stock/%s (%s %s): %d %s", sku, cond, etag, res.StatusCode, b)
	}
	return level.OnHand + delta
}

// clean fails t unless a check (against the demo seed) finds nothing.
func (s *shop) clean(t *testing.T, what string) check.Report {
	t.Helper()
	rep, err := check.Run(context.Background(), s.pool, check.Options{Baseline: seed.Initial()})
	if err != nil || len(rep.Violations) > 0 {
		t.Fatalf("%s: violations %v, %v; want none", what, rep.Violations, err)
	}
	return rep
}

// TestOpeningBalance: a shop that sold and was restocked before the
// inventory kept its adjustment ledger checks clean once the migration
// that makes the ledger has run: its opening balance per SKU accounts
// for the stock there and what was sold. The database is put back as it
// was before that migration (its table dropped, the inventory's version
// at 004) and migrated again, as a running inventory migrates at start.
func TestOpeningBalance(t *testing.T) {
	s := startShop(t)
	ctx := context.Background()
	s.place(t, "tok_visa", item{"SKU-0001", 2}, item{"SKU-0002", 1})
	s.place(t, "tok_visa", item{"SKU-0002", 3})
	s.place(t, "tok_declined", item{"SKU-0003", 1})
	rep, err := check.Run(ctx, s.pool, check.Options{Wait: time.Minute, Baseline: seed.Initial()})
	if err != nil || len(rep.Violations) > 0 || rep.Orders["confirmed"] != 2 || rep.Orders["cancelled"] != 1 {
		t.Fatalf("settled shop: %+v %v", rep, err)
	}
	s.restock(t, "SKU-0002", 500)
	s.restock(t, "SKU-EXTRA", 9)

	for _, q := range []string{
		`DROP TABLE inventory.stock_adjustments`,
		`UPDATE inventory.inventory_version SET version = 4`,
	} {
		if _, err := s.pool.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	testenv.PoolAt(t, s.dbURL, "inventory", pg.Migrations{Name: migrations.Table, FS: migrations.FS()})

	got := testenv.Rows(t, s.pool, `SELECT DISTINCT source FROM inventory.stock_adjustments`)
	if !slices.Equal(got, []string{"opening balance"}) {
		t.Fatalf("adjustment sources after the migration: %v, want only the opening balances", got)
	}
	s.clean(t, "after the migration")
	// The ledger goes on from there.
	s.restock(t, "SKU-0001", 50)
	s.clean(t, "after a restock that followed the migration")
	s.exec(t, `UPDATE inventory.stock SET on_hand = on_hand + 5 WHERE sku = 'SKU-0002'`)
	if rep, err := check.Run(ctx, s.pool, check.Options{Baseline: seed.Initial()}); err != nil ||
		!slices.Equal(findings(rep.Violations), []finding{{check.RuleStock, "SKU-0002"}}) {
		t.Fatalf("a direct UPDATE after the migration: %v, %v; want a stock violation", rep.Violations, err)
	}
}
