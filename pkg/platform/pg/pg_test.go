package pg_test

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"

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

// Timestamps read back in UTC, not in the host's zone (pgx's default is
// time.Local, which a test cannot change; its *Location is not time.UTC
// even on a host whose zone is UTC).
func TestConnectScansTimesInUTC(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pg.Connect(ctx, pg.Config{URL: testenv.DatabaseURL(t), Schema: "utc_test", MaxConns: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var at time.Time
	if err := pool.QueryRow(ctx, `SELECT '2026-12-05 10:00:00-05'::timestamptz`).Scan(&at); err != nil {
		t.Fatal(err)
	}
	if at.Location() != time.UTC || at.Hour() != 15 {
		t.Errorf("scanned %s (%v), want 15:00 UTC", at, at.Location())
	}
}

// A statement prepared while its table was nearly empty keeps finding its
// rows through the index once the table has grown: the pool's
// enable_seqscan=off keeps PostgreSQL's cached generic plan off a
// sequential scan that would read the whole table on every lookup.
func TestConnectCachedPlanUsesIndexOnGrownTable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	schema := "young_table_test"
	pool, err := pg.Connect(ctx, pg.Config{URL: testenv.DatabaseURL(t), Schema: schema, MaxConns: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// A non-unique key, as reservation lines by order id, analysed at 60
	// rows as autovacuum first does a young table; autovacuum off so
	// nothing analyses it again behind the test's back.
	exec(`DROP TABLE IF EXISTS lines`)
	exec(`CREATE TABLE lines (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, order_id uuid NOT NULL, sku text NOT NULL) WITH (autovacuum_enabled = false)`)
	exec(`CREATE INDEX lines_order_id ON lines (order_id)`)
	exec(`INSERT INTO lines (order_id, sku) SELECT gen_random_uuid(), 'SKU-1' FROM generate_series(1, 60)`)
	exec(`ANALYZE lines`) // the plan is made for a table of one page
	const lookup = `SELECT sku FROM lines WHERE order_id = ANY($1)`
	probe := []string{"00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"}
	for range 10 { // past the five custom plans: the generic plan is cached now
		exec(lookup, probe)
	}
	exec(`INSERT INTO lines (order_id, sku) SELECT gen_random_uuid(), 'SKU-2' FROM generate_series(1, 20000)`)

	seqScans := func() int64 {
		t.Helper()
		var n int64
		if _, err := conn.Exec(ctx, `SELECT pg_stat_force_next_flush()`); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(ctx, `SELECT seq_scan FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'lines'`, schema).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := seqScans()
	for range 10 {
		exec(lookup, probe)
	}
	if n := seqScans() - before; n > 0 {
		t.Errorf("10 lookups by an indexed key on a grown table ran %d sequential scans; want index scans", n)
	}
}

// enable_seqscan is off unless DATABASE_URL sets it as a parameter.
func TestConnectSeqScanDefault(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := testenv.DatabaseURL(t)
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	for _, c := range []struct{ name, url, want string }{
		{"default", base, "off off"},
		{"enable_seqscan=on in the URL", base + sep + "enable_seqscan=on", "on off"},
		{"jit=on in the URL", base + sep + "jit=on", "off on"},
	} {
		pool, err := pg.Connect(ctx, pg.Config{URL: c.url, Schema: "seqscan_test", MaxConns: 1}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var got string
		err = pool.QueryRow(ctx, `SELECT current_setting('enable_seqscan') || ' ' || current_setting('jit')`).Scan(&got)
		pool.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("enable_seqscan and jit, %s: %s, want %s", c.name, got, c.want)
		}
	}
}

// A table no index serves is still scanned, at the cost of the planner's
// seq scan penalty; that must not make PostgreSQL compile the statement
// (JIT) on each run, as it does above jit_above_cost.
func TestConnectForcedSeqScanIsNotCompiled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pg.Connect(ctx, pg.Config{URL: testenv.DatabaseURL(t), Schema: "jit_test", MaxConns: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `DROP TABLE IF EXISTS no_index; CREATE TABLE no_index (n int); INSERT INTO no_index SELECT generate_series(1, 10)`); err != nil {
		t.Fatal(err)
	}
	var plan string
	if err := pool.QueryRow(ctx, `EXPLAIN (ANALYZE, FORMAT JSON) SELECT sum(n) FROM no_index`).Scan(&plan); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(plan, `"JIT"`) {
		t.Errorf("a forced seq scan was JIT-compiled: %s", plan)
	}
}

// A database that answers but takes no writes is not Writable (a trial's
// read-only database left every /readyz at 200 while every write failed);
// a writable one is.
func TestWritable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		readOnly string
		want     error
	}{{"off", nil}, {"on", pg.ErrReadOnly}} {
		pool, err := pg.Connect(ctx, pg.Config{URL: testenv.DatabaseURL(t), Schema: "public", MaxConns: 1,
			Settings: map[string]string{"default_transaction_read_only": tc.readOnly}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := pg.Writable(ctx, pool); err != tc.want {
			t.Errorf("default_transaction_read_only=%s: Writable = %v, want %v", tc.readOnly, err, tc.want)
		}
		pool.Close()
	}
}

// Idle connections go back to the server after a minute, unless the URL
// says otherwise: a server's max_connections is shared by every replica.
func TestIdleConnectionsAreReturned(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		query string
		want  time.Duration
	}{{"", pg.IdleConnTimeout}, {"pool_max_conn_idle_time=5m", 5 * time.Minute}} {
		url := testenv.DatabaseURL(t)
		if tc.query != "" {
			sep := "?"
			if strings.Contains(url, "?") {
				sep = "&"
			}
			url += sep + tc.query
		}
		pool, err := pg.Connect(ctx, pg.Config{URL: url, Schema: "public", MaxConns: 1}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := pool.Config().MaxConnIdleTime; got != tc.want {
			t.Errorf("URL query %q: MaxConnIdleTime %s, want %s", tc.query, got, tc.want)
		}
		pool.Close()
	}
}

// A server out of connections stops the start with a message that says
// what to change, not only PostgreSQL's "too many clients".
//
// The role has a password: a server that checks passwords (the
// PostgreSQL container, a TEST_DATABASE_URL with one) authenticates
// before it counts connections, and answered a role without one 28P01.
// Roles are not per database: the role is dropped when the test ends,
// before the pool it is dropped through is closed (a DROP through a
// closed pool left one role behind per run).
func TestConnectOutOfConnectionsSaysWhatToChange(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dbURL := testenv.DatabaseURL(t)
	admin, err := pg.Connect(ctx, pg.Config{URL: dbURL, Schema: "public", MaxConns: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	role, password := testenv.Name(t, "r"), rand.Text()
	if _, err := admin.Exec(ctx, `CREATE ROLE `+pgx.Identifier{role}.Sanitize()+` LOGIN PASSWORD '`+password+`' CONNECTION LIMIT 0`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(context.Background(), `DROP ROLE `+pgx.Identifier{role}.Sanitize()); err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	})
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(role, password)
	_, err = pg.Connect(ctx, pg.Config{URL: u.String(), Schema: "public", MaxConns: 1, StartupTimeout: time.Second}, nil)
	if err == nil || !strings.Contains(err.Error(), "53300") || !strings.Contains(err.Error(), "lower DB_MAX_CONNS or raise the limit") {
		t.Errorf("connect as a role with no connections left: %v; want 53300 and what to change", err)
	}
}

// Migrate says what it migrates, and an older release's binary started on
// a schema a newer one migrated is refused with ErrSchemaNewer, saying
// so: tern's own words were "current version 5 is outside the valid
// versions of 0 to 4", and migrations logged nothing while a long one
// held every service of the database at start.
func TestMigrateSaysWhatItDoes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema := testenv.Name(t, "m")
	pool, err := pg.Connect(ctx, pg.Config{URL: testenv.DatabaseURL(t), Schema: schema, MaxConns: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	})
	older := fstest.MapFS{"001_a.sql": {Data: []byte("CREATE TABLE a (id int)")}}
	newer := fstest.MapFS{"001_a.sql": older["001_a.sql"], "002_b.sql": {Data: []byte("CREATE TABLE b (id int)")}}
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))

	if err := pg.Migrate(ctx, pool, log, schema, pg.Migrations{Name: "v", FS: newer}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"msg=\"migrating the schema", "from_version=0 to_version=2",
		"msg=\"applying migration\"", "version=2 name=002_b.sql", "msg=migrated", "took="} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	before := logs.String()
	if err := pg.Migrate(ctx, pool, log, schema, pg.Migrations{Name: "v", FS: newer}); err != nil {
		t.Fatal(err)
	}
	if logs.String() != before {
		t.Errorf("nothing to migrate, yet it logged:\n%s", strings.TrimPrefix(logs.String(), before))
	}

	err = pg.Migrate(ctx, pool, log, schema, pg.Migrations{Name: "v", FS: older})
	if !errors.Is(err, pg.ErrSchemaNewer) || !strings.Contains(err.Error(), "at version 2 and this release knows versions up to 1") {
		t.Errorf("an older release's migrations on a newer schema: %v, want ErrSchemaNewer naming both versions", err)
	}
}

// A search_path in DATABASE_URL does not move the service off its schema,
// and is not dropped silently either.
func TestConnectSaysItIgnoresTheURLsSearchPath(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u, err := url.Parse(testenv.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", "orders")
	u.RawQuery = q.Encode()
	logs := &testenv.SyncBuffer{}
	pool, err := pg.Connect(ctx, pg.Config{URL: u.String(), Schema: "search_path_test", MaxConns: 1}, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var sp string
	if err := pool.QueryRow(ctx, "SHOW search_path").Scan(&sp); err != nil || sp != "search_path_test" {
		t.Errorf("search_path %q %v, want the service's schema", sp, err)
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"DATABASE_URL sets search_path, which is ignored") ||
		!strings.Contains(logs.String(), "search_path=orders schema=search_path_test") {
		t.Errorf("log:\n%s\nwant a WARN naming the ignored search_path", logs)
	}
}
