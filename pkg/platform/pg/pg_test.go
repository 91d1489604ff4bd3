package pg_test

import (
	"context"
	"testing"
	"time"

	"github.com/shopflow/shopflow/pkg/platform/pg"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// Settings reach every connection, and cannot move it off its schema.
func TestConnectSettings(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pg.Connect(ctx, pg.Config{URL: testenv.DatabaseURL(t), Schema: "settings_test", MaxConns: 2,
		Settings: map[string]string{"synchronous_commit": "off", "search_path": "public"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var sync, path string
	if err := pool.QueryRow(ctx, `SELECT current_setting('synchronous_commit'), current_setting('search_path')`).Scan(&sync, &path); err != nil {
		t.Fatal(err)
	}
	if sync != "off" || path != "settings_test" {
		t.Errorf("synchronous_commit %q, search_path %q; want off and settings_test", sync, path)
	}
}
