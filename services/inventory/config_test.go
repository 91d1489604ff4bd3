package inventory_test

import (
	"strings"
	"testing"
	"time"

	"github.com/shopflow/shopflow/pkg/platform/config"
	"github.com/shopflow/shopflow/services/inventory"
)

func TestConfig(t *testing.T) {
	t.Parallel()
	base := map[string]string{"DATABASE_URL": "postgres://u:p@127.0.0.1:5432/shop"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		wantErr string // a variable the error must name; empty: no error
		check   func(inventory.Config) bool
	}{
		{"defaults", base, "", func(c inventory.Config) bool {
			return c.HTTPAddr == ":8082" && c.LockTimeout == 5*time.Second && c.AdminToken == ""
		}},
		{"admin token and lock timeout", with("ADMIN_TOKEN", "inventory-admin-token", "INVENTORY_LOCK_TIMEOUT", "250ms"), "", func(c inventory.Config) bool {
			return c.AdminToken == "inventory-admin-token" && c.LockTimeout == 250*time.Millisecond
		}},
		{"zero lock timeout", with("INVENTORY_LOCK_TIMEOUT", "0s"), "INVENTORY_LOCK_TIMEOUT", nil},
		{"malformed lock timeout", with("INVENTORY_LOCK_TIMEOUT", "soon"), "INVENTORY_LOCK_TIMEOUT", nil},
		{"missing database", map[string]string{}, "DATABASE_URL", nil},
		// A secret file's trailing newline would make every admin request 401.
		{"admin token with a newline", with("ADMIN_TOKEN", "tok\n"), "ADMIN_TOKEN", nil},
		{"admin token with a space", with("ADMIN_TOKEN", "to k"), "ADMIN_TOKEN", nil},
		// A token too short to resist guessing (ADMIN_TOKEN=a started it).
		{"admin token too short", with("ADMIN_TOKEN", "changeme"), "ADMIN_TOKEN", nil},
		// Both bad settings at once, not only the first.
		{"admin token and lock timeout both bad", with("ADMIN_TOKEN", "to k", "INVENTORY_LOCK_TIMEOUT", "0s"), "INVENTORY_LOCK_TIMEOUT", nil},
	} {
		cfg, err := config.Load[inventory.Config](config.WithEnvironment(tc.env), config.WithDefault("HTTP_ADDR", inventory.DefaultHTTPAddr))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want one naming %s", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !tc.check(cfg) {
			t.Errorf("%s: %+v, %v", tc.name, cfg, err)
		}
	}
	// The token never reaches the logs.
	if got := config.Redacted(inventory.Config{AdminToken: "s3cret"})["ADMIN_TOKEN"]; got != "***" {
		t.Errorf("Redacted ADMIN_TOKEN = %v, want ***", got)
	}
}
