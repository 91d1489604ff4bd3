package suite

import (
	"context"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// TestPrivateCluster: with PostgreSQL's programs installed but no server
// to use, ResolvePostgres initializes a cluster under the data directory
// (as a non-root user when run as root), starts it, creates the suite's
// database, and Stop stops it; a second start reuses the cluster and its
// data.
func TestPrivateCluster(t *testing.T) {
	t.Parallel()
	if _, err := findPostgresBin(); err != nil {
		t.Fatalf("this test needs PostgreSQL's server programs (initdb, pg_ctl): %v", err)
	}
	// The cluster's user must reach the directory: open up the temporary
	// directories Go creates private.
	base := t.TempDir()
	// (Only the test's own directories, below the system's temporary
	// directory, never that one itself.)
	tmp := filepath.Clean(os.TempDir())
	for d := base; len(d) > len(tmp) && filepath.Dir(d) != d; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(base, "postgres")
	port := freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := slog.New(slog.DiscardHandler)

	pg, err := ResolvePostgres(ctx, PostgresPrivate, dir, port, log)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			pg.Stop()
		}
	}()
	conn, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		t.Fatalf("connect %s: %v", pg.URL, err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)`); err != nil {
		t.Fatal(err)
	}
	var db, user string
	_ = conn.QueryRow(ctx, `SELECT current_database(), (SELECT usename FROM pg_user WHERE usesysid = (SELECT datdba FROM pg_database WHERE datname = 'postgres'))`).Scan(&db, &user)
	conn.Close(ctx)
	if db != DatabaseName {
		t.Errorf("database %q, want %q", db, DatabaseName)
	}
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); err != nil {
		t.Errorf("no cluster under %s: %v", dir, err)
	}
	if os.Geteuid() == 0 {
		st, _ := os.Stat(dir)
		if st != nil && st.Sys() != nil {
			if uid := fileOwner(st); uid == 0 {
				t.Errorf("run as root, the cluster directory is still owned by root")
			}
		}
	}
	pg.Stop()
	stopped = true
	if c, err := pgx.Connect(ctx, pg.URL); err == nil {
		c.Close(ctx)
		t.Fatal("the private server still answers after Stop")
	}

	again, err := ResolvePostgres(ctx, PostgresPrivate, dir, port, log)
	if err != nil {
		t.Fatalf("second start: %v", err)
	}
	defer again.Stop()
	conn, err = pgx.Connect(ctx, again.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v int
	if err := conn.QueryRow(ctx, `SELECT v FROM kept`).Scan(&v); err != nil || v != 42 {
		t.Errorf("after a restart: %d, %v; want the data kept", v, err)
	}

	// A shop dev killed (SIGKILL) leaves its cluster running: the next
	// start, with another port even, stops it and starts it as asked. It
	// used to fail in pg_ctl ("another server might be running").
	third, err := ResolvePostgres(ctx, PostgresPrivate, dir, freePort(t), log)
	if err != nil {
		t.Fatalf("start with the cluster left running: %v", err)
	}
	defer third.Stop()
	conn3, err := pgx.Connect(ctx, third.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn3.Close(ctx)
	if err := conn3.QueryRow(ctx, `SELECT v FROM kept`).Scan(&v); err != nil || v != 42 {
		t.Errorf("after the start that found the cluster running: %d, %v; want the data kept", v, err)
	}
}

// TestResolvePostgresDatabaseURL: DATABASE_URL is checked once, up front:
// a server that does not answer is waited for databaseURLWait and then
// reported with the last real error (connection refused, not the
// deadline that cut the last attempt short: that read "dial error:
// timeout: context deadline exceeded"); one that answers with a refusal
// (no such database) is reported at once; a malformed URL is reported
// without its password. Every error names DATABASE_URL.
func TestResolvePostgresDatabaseURL(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	defer func(w time.Duration) { databaseURLWait = w }(databaseURLWait)
	databaseURLWait = time.Second

	good := testenv.DatabaseURL(t)
	t.Setenv("DATABASE_URL", good)
	pg, err := ResolvePostgres(ctx, PostgresAuto, t.TempDir(), 0, log)
	if err != nil || pg.URL != good || pg.Source != SourceDatabaseURL || pg.Desc != MaskDatabaseURL(good)+" (DATABASE_URL)" {
		t.Fatalf("ResolvePostgres with a good DATABASE_URL: %+v, %v", pg, err)
	}

	closed := testenv.FreeAddr(t)
	noDB, err := url.Parse(good) // the same server and credentials, another database
	if err != nil {
		t.Fatal(err)
	}
	noDB.Path = "/no_such_database_here"
	for _, c := range []struct {
		url        string
		want       []string
		atOnce     bool
		notInError string
	}{
		{url: "postgres://postgres@" + closed + "/x?sslmode=disable", want: []string{"no answer after 1s", "connection refused"}, notInError: "deadline exceeded"},
		{url: noDB.String(), want: []string{"3D000"}, atOnce: true},
		{url: "postgres://bob:s3cret@127.0.0.1:5432/x?sslmode=bogus", want: []string{"sslmode"}, atOnce: true, notInError: "s3cret"},
	} {
		t.Setenv("DATABASE_URL", c.url)
		began := time.Now()
		_, err := ResolvePostgres(ctx, PostgresAuto, t.TempDir(), 0, log)
		took := time.Since(began)
		if err == nil || !strings.HasPrefix(err.Error(), "DATABASE_URL: ") || slices.ContainsFunc(c.want, func(w string) bool { return !strings.Contains(err.Error(), w) }) {
			t.Errorf("DATABASE_URL=%s: %v, want an error naming DATABASE_URL and saying %q", c.url, err, c.want)
			continue
		}
		if c.notInError != "" && strings.Contains(err.Error(), c.notInError) {
			t.Errorf("DATABASE_URL=%s: the error says %q: %v", c.url, c.notInError, err)
		}
		if c.atOnce && took > databaseURLWait/2 {
			t.Errorf("DATABASE_URL=%s: took %s, want at once (the server answered)", c.url, took)
		}
		if !c.atOnce && took < databaseURLWait {
			t.Errorf("DATABASE_URL=%s: gave up after %s, want %s of retries", c.url, took, databaseURLWait)
		}
	}
}

// TestMaskDatabaseURL: what shop dev's banner and the other commands show
// of a database URL names its host and database and never its password,
// in URL form (config.MaskURL) or keyword/value form (which MaskURL
// returned whole, password and all).
func TestMaskDatabaseURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://app:S3CRET@db.example:5432/shopflow?sslmode=disable": "postgres://app:***@db.example:5432/shopflow?sslmode=disable",
		"postgres://postgres@127.0.0.1:5433/shopflow?sslmode=disable":    "postgres://postgres@127.0.0.1:5433/shopflow?sslmode=disable",
		"postgresql://app@db/shopflow?password=S3CRET":                   "postgresql://app@db/shopflow?password=***",
		"host=db.example port=6432 user=app password=S3CRET dbname=shop": "postgres://app@db.example:6432/shop",
		"host=db user=app password='S3 CRET' dbname=shop":                "postgres://app@db:5432/shop",
		"host='unterminated": "(not a PostgreSQL URL or connection string)",
	} {
		if got := MaskDatabaseURL(in); got != want {
			t.Errorf("MaskDatabaseURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// freePort is a free TCP port on 127.0.0.1 (testenv.FreeAddr's).
func freePort(t *testing.T) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(testenv.FreeAddr(t))
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return port
}
