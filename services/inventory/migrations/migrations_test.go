package migrations_test

import (
	"io/fs"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/shopflow/shopflow/pkg/platform/pg"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
	"github.com/shopflow/shopflow/services/inventory/migrations"
)

// upTo returns the migrations up to and including the one named last.
func upTo(t *testing.T, last string) fs.FS {
	t.Helper()
	out := fstest.MapFS{}
	names, err := fs.Glob(migrations.FS(), "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if name > last {
			continue
		}
		b, err := fs.ReadFile(migrations.FS(), name)
		if err != nil {
			t.Fatal(err)
		}
		out[name] = &fstest.MapFile{Data: b}
	}
	return out
}

// TestOpeningBalance: 005 gives every SKU of a database that already has
// stock and sales an opening balance in the new adjustment ledger, so
// that on hand = adjustments − committed holds from the start: the
// balance is on hand plus what the SKU sold (committed lines only: held,
// released and rejected reservations have not left the shelf).
func TestOpeningBalance(t *testing.T) {
	t.Parallel()
	url := testenv.DatabaseURL(t)
	p := testenv.PoolAt(t, url, "inventory", pg.Migrations{Name: migrations.Table, FS: upTo(t, "004_no_line_sku_index.sql")})
	for _, q := range []string{
		`INSERT INTO stock (sku, on_hand, reserved) VALUES ('SKU-A', 90, 5), ('SKU-B', 0, 0), ('SKU-C', 7, 0)`,
		`INSERT INTO reservations (order_id, reservation_id, status) VALUES
            ('o1', gen_random_uuid(), 'committed'), ('o2', gen_random_uuid(), 'committed'),
            ('o3', gen_random_uuid(), 'reserved'), ('o4', gen_random_uuid(), 'released'),
            ('o5', gen_random_uuid(), 'rejected')`,
		`INSERT INTO reservation_lines (order_id, sku, quantity) VALUES
            ('o1', 'SKU-A', 4), ('o1', 'SKU-B', 3), ('o2', 'SKU-A', 6),
            ('o3', 'SKU-A', 5), ('o4', 'SKU-A', 2), ('o5', 'SKU-A', 100), ('o5', 'SKU-C', 100)`,
	} {
		if _, err := p.Exec(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := pg.Migrate(t.Context(), p, nil, "inventory", pg.Migrations{Name: migrations.Table, FS: migrations.FS()}); err != nil {
		t.Fatal(err)
	}

	got := testenv.Rows(t, p, `SELECT format('%s %s %s %s', sku, delta, on_hand_after, source) FROM stock_adjustments ORDER BY id`)
	want := []string{
		"SKU-A 100 90 opening balance", // 90 on hand + 4 + 6 sold
		"SKU-B 3 0 opening balance",    // sold out
		"SKU-C 7 7 opening balance",    // nothing sold
	}
	if !slices.Equal(got, want) {
		t.Fatalf("adjustments after 005:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	got = testenv.Rows(t, p, `
SELECT format('%s %s %s', s.sku, s.on_hand, (SELECT sum(delta) FROM stock_adjustments a WHERE a.sku = s.sku)
    - coalesce((SELECT sum(l.quantity) FROM reservation_lines l JOIN reservations r USING (order_id)
                WHERE r.status = 'committed' AND l.sku = s.sku), 0))
FROM stock s ORDER BY s.sku`)
	if want := []string{"SKU-A 90 90", "SKU-B 0 0", "SKU-C 7 7"}; !slices.Equal(got, want) {
		t.Fatalf("sku, on hand, adjustments − sold: %v, want %v", got, want)
	}
}
