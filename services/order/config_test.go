package order_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopflow/shopflow/pkg/platform/config"
	"github.com/shopflow/shopflow/services/order"
)

// ORDER_PLACEMENT_BATCHES defaults to 2 and fails start-up, naming the
// variable, out of range or when it would take the whole pool.
func TestConfigPlacementBatches(t *testing.T) {
	base := map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres", "HTTP_ADDR": ":0"}
	load := func(extra map[string]string) (order.Config, error) {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for k, v := range extra {
			env[k] = v
		}
		return config.Load[order.Config](config.WithEnvironment(env))
	}
	cfg, err := load(nil)
	if err != nil || cfg.PlacementBatches != 2 {
		t.Fatalf("default: %d, %v", cfg.PlacementBatches, err)
	}
	if cfg, err := load(map[string]string{"ORDER_PLACEMENT_BATCHES": "4"}); err != nil || cfg.PlacementBatches != 4 {
		t.Errorf("4: %d, %v", cfg.PlacementBatches, err)
	}
	for _, bad := range []map[string]string{
		{"ORDER_PLACEMENT_BATCHES": "-1"},
		{"ORDER_PLACEMENT_BATCHES": "65"},
		{"ORDER_PLACEMENT_BATCHES": "two"},
		{"ORDER_PLACEMENT_BATCHES": "10", "DB_MAX_CONNS": "10"},
		{"ORDER_PLACEMENT_BATCHES": "0", "DB_MAX_CONNS": "2"}, // 0 is the default, 2
		// 0 is pgx's default pool, max(4, CPUs): 64 batches would take it all.
		{"ORDER_PLACEMENT_BATCHES": "64", "DB_MAX_CONNS": "0"},
	} {
		if _, err := load(bad); err == nil || !strings.Contains(err.Error(), "ORDER_PLACEMENT_BATCHES") {
			t.Errorf("%v: err = %v, want one naming ORDER_PLACEMENT_BATCHES", bad, err)
		}
	}
}

// ORDER_PENDING_TIMEOUT defaults to 30 minutes, 0 turns expiry off, and
// a value that is no duration or below a second fails start-up naming it.
func TestConfigPendingTimeout(t *testing.T) {
	load := func(v string) (order.Config, error) {
		env := map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres", "HTTP_ADDR": ":0"}
		if v != "" {
			env["ORDER_PENDING_TIMEOUT"] = v
		}
		return config.Load[order.Config](config.WithEnvironment(env))
	}
	for v, want := range map[string]time.Duration{"": 30 * time.Minute, "0": 0, "2h": 2 * time.Hour, "1s": time.Second} {
		if cfg, err := load(v); err != nil || cfg.PendingTimeout != want {
			t.Errorf("%q: %s, %v; want %s", v, cfg.PendingTimeout, err, want)
		}
	}
	for _, bad := range []string{"-1m", "500ms", "30", "half an hour"} {
		if _, err := load(bad); err == nil || !strings.Contains(err.Error(), "ORDER_PENDING_TIMEOUT") {
			t.Errorf("%q: err = %v, want one naming ORDER_PENDING_TIMEOUT", bad, err)
		}
	}
}

// ORDER_MAX_STREAMS and ORDER_MAX_STREAMS_PER_CLIENT default to 1000
// and 20; a negative, huge or non-numeric value fails start-up naming
// the variable.
func TestConfigMaxStreams(t *testing.T) {
	t.Parallel()
	load := func(extra map[string]string) (order.Config, error) {
		env := map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres", "HTTP_ADDR": ":0"}
		for k, v := range extra {
			env[k] = v
		}
		return config.Load[order.Config](config.WithEnvironment(env))
	}
	if cfg, err := load(nil); err != nil || cfg.MaxStreams != 1000 || cfg.MaxStreamsPerClient != 20 {
		t.Errorf("defaults: %d, %d, %v; want 1000, 20", cfg.MaxStreams, cfg.MaxStreamsPerClient, err)
	}
	for _, name := range []string{"ORDER_MAX_STREAMS", "ORDER_MAX_STREAMS_PER_CLIENT"} {
		for _, bad := range []string{"-1", "100001", "many"} {
			if _, err := load(map[string]string{name: bad}); err == nil || !strings.Contains(err.Error(), name+":") {
				t.Errorf("%s=%s: err = %v, want one naming it", name, bad, err)
			}
		}
	}
}

// ADMIN_TOKEN must be sendable as a Bearer token: a secret file's trailing
// newline fails start-up naming the variable instead of refusing every
// admin request with 401.
func TestConfigAdminToken(t *testing.T) {
	env := map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres", "HTTP_ADDR": ":0"}
	env["ADMIN_TOKEN"] = "s3cret-admin-token"
	if _, err := config.Load[order.Config](config.WithEnvironment(env)); err != nil {
		t.Fatalf("a good token: %v", err)
	}
	env["ADMIN_TOKEN"] = "s3cret-admin-token\n"
	_, err := config.Load[order.Config](config.WithEnvironment(env))
	if err == nil || !strings.Contains(err.Error(), "ADMIN_TOKEN") || !strings.Contains(err.Error(), "newline") {
		t.Errorf("err = %v, want one naming ADMIN_TOKEN and the newline", err)
	}
	if err != nil && strings.Contains(err.Error(), "s3cret") {
		t.Errorf("the error shows the token: %v", err)
	}
	// Too short to resist guessing: ADMIN_TOKEN=a started the service.
	env["ADMIN_TOKEN"] = "s3cret"
	_, err = config.Load[order.Config](config.WithEnvironment(env))
	if err == nil || !strings.Contains(err.Error(), "ADMIN_TOKEN: is too short") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("err = %v, want one naming ADMIN_TOKEN as too short, without the token", err)
	}
}

// TestConfigURLErrorsHidePasswords: INVENTORY_URL, SHIPPING_URL and
// OPS_PEERS errors name the variable and the value with its password
// masked; they quoted it whole.
func TestConfigURLErrorsHidePasswords(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres", "HTTP_ADDR": ":0",
		"INVENTORY_URL": "http://u:SECRETPW@inv:8082?x=1", "SHIPPING_URL": "http://u:SECRETPW@ship:8083/#f",
		"OPS_PEERS": "payment=http://u:SECRETPW@pay:8081?q=1,=http://u:SECRETPW@x:1"}
	_, err := config.Load[order.Config](config.WithEnvironment(env))
	if err == nil {
		t.Fatal("Load succeeded")
	}
	for _, want := range []string{`INVENTORY_URL: "http://u:***@inv:8082?x=1" is not a base URL`,
		`SHIPPING_URL: "http://u:***@ship:8083/#f" is not a base URL`,
		`OPS_PEERS: "http://u:***@x:1" has no name before its =; payment: "http://u:***@pay:8081?q=1" is not a base URL`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "SECRETPW") {
		t.Errorf("the error shows a password:\n%v", err)
	}
}

// Every bad order setting is reported at once, each naming its variable,
// so a misconfigured deployment is fixed in one round (as Common's and
// the other services' settings are).
func TestConfigReportsEveryBadSetting(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres", "HTTP_ADDR": ":0",
		"ADMIN_TOKEN": "to ken", "ORDER_CURRENCIES": "usd,EUR,gbp,XYZ,U2D", "INVENTORY_URL": "nota", "SHIPPING_URL": "x",
		"ORDER_PLACEMENT_BATCHES": "99", "ORDER_PENDING_TIMEOUT": "10ms",
		"OPS_PEERS": "shipping=ftp://s,payment=http://127.0.0.1:8081,inventory=inv,=http://127.0.0.1:9",
	}
	_, err := config.Load[order.Config](config.WithEnvironment(env))
	if err == nil {
		t.Fatal("Load succeeded")
	}
	want := []string{
		"config: ADMIN_TOKEN: ",
		`config: ORDER_CURRENCIES: "XYZ" is not an ISO 4217 code like USD; "U2D" is not an ISO 4217 code like USD`,
		`config: INVENTORY_URL: "nota" is not a base URL: want http:// or https://, a host, and no query or fragment`,
		`config: SHIPPING_URL: "x" is not a base URL: want http:// or https://, a host, and no query or fragment`,
		`config: OPS_PEERS: "http://127.0.0.1:9" has no name before its =; inventory: "inv" is not a base URL: want http:// or https://, a host, and no query or fragment; shipping: "ftp://s" is not a base URL: want http:// or https://, a host, and no query or fragment`,
		"config: ORDER_PLACEMENT_BATCHES: 99 is not in 0..64 (0: the default, 2)",
		"config: ORDER_PENDING_TIMEOUT: 10ms is below 1s (0 turns expiry off)",
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Fatalf("%d problems reported, want %d:\n%v", len(lines), len(want), err)
	}
	for i, line := range lines {
		if !strings.HasPrefix(line, want[i]) {
			t.Errorf("line %d: %q, want %q", i+1, line, want[i])
		}
	}
}

// ORDER_CURRENCIES is read in any case and kept in upper case, the form
// orders name currencies in: "usd" was refused ("is not an ISO 4217 code
// like USD"), though the storefront takes a lower-case country.
func TestConfigCurrenciesAnyCase(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres", "HTTP_ADDR": ":0", "ORDER_CURRENCIES": "usd,Eur,GBP"}
	cfg, err := config.Load[order.Config](config.WithEnvironment(env))
	if err != nil {
		t.Fatalf("ORDER_CURRENCIES=usd,Eur,GBP: %v", err)
	}
	if want := []string{"USD", "EUR", "GBP"}; !slices.Equal(cfg.Currencies, want) {
		t.Errorf("Currencies %q, want %q", cfg.Currencies, want)
	}
}

// ORDER_CURRENCIES with stray commas says so once, not once per empty
// entry ("\"\" is not an ISO 4217 code like USD" twice for ",").
func TestConfigCurrenciesStrayCommas(t *testing.T) {
	t.Parallel()
	for _, v := range []string{",", "USD,,EUR,"} {
		env := map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres", "HTTP_ADDR": ":0", "ORDER_CURRENCIES": v}
		_, err := config.Load[order.Config](config.WithEnvironment(env))
		if want := "config: ORDER_CURRENCIES: an empty entry (a stray comma?): want ISO 4217 codes like USD, comma-separated"; err == nil || err.Error() != want {
			t.Errorf("ORDER_CURRENCIES=%q: %v, want %q", v, err, want)
		}
	}
}

// OPS_PEERS that is no list of name=URL pairs says what it should be,
// not which Go type it failed to parse into.
func TestConfigOpsPeersFormat(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres", "HTTP_ADDR": ":0", "OPS_PEERS": "garbage"}
	_, err := config.Load[order.Config](config.WithEnvironment(env))
	want := `config: OPS_PEERS: "garbage" is not a valid comma-separated list of name=URL pairs (like payment=http://127.0.0.1:8081,shipping=http://127.0.0.1:8083)`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
}

// A pool size out of range is reported once, by config.Common: the
// placement batches' check against a pool of -1 only confused it.
func TestConfigBadPoolOnce(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres", "HTTP_ADDR": ":0", "DB_MAX_CONNS": "-1"}
	_, err := config.Load[order.Config](config.WithEnvironment(env))
	want := `config: DB_MAX_CONNS: -1 is not in 0..1000 (0: pgx's default, max(4, CPUs))`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
}
