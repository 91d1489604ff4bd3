package suite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shopflow/shopflow/pkg/platform/config"
)

// LocalServerURL is the local PostgreSQL server tried when DATABASE_URL is
// not set.
const LocalServerURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable&connect_timeout=3"

// DatabaseName is the database the suite creates on a local server.
const DatabaseName = "shopflow"

// Postgres is a PostgreSQL the suite can use, and how to let go of it.
type Postgres struct {
	// URL of the suite's database.
	URL string
	// Source says where it came from: SourceDatabaseURL, SourceLocal or
	// SourcePrivate.
	Source string
	// Desc says which database it is and where it came from, for people:
	// the URL, any password masked, then the source in parentheses.
	Desc string
	// Stop stops a private cluster started for the suite; a no-op otherwise.
	Stop func()
}

// PostgresMode chooses how ResolvePostgres finds a server.
type PostgresMode string

// Modes: auto tries DATABASE_URL, then the local server, then a private
// cluster; the others force one step.
const (
	PostgresAuto    PostgresMode = "auto"
	PostgresLocal   PostgresMode = "local"
	PostgresPrivate PostgresMode = "private"
)

// Sources of a Postgres.
const (
	SourceDatabaseURL = "DATABASE_URL" // the DATABASE_URL variable
	SourceLocal       = "local"        // the local server on 127.0.0.1:5432
	SourcePrivate     = "private"      // a private cluster under the data directory
)

// MaskDatabaseURL returns a PostgreSQL URL or keyword/value connection
// string fit to show: a URL with its password masked (config.MaskURL);
// a keyword/value string as the URL of the database it names, without
// the password, so that the banner names every database the same way.
func MaskDatabaseURL(s string) string {
	if strings.Contains(s, "://") {
		return config.MaskURL(s)
	}
	cfg, err := pgconn.ParseConfig(s)
	if err != nil {
		return "(not a PostgreSQL URL or connection string)"
	}
	return (&url.URL{Scheme: "postgres", User: url.User(cfg.User), Host: net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))),
		Path: "/" + cfg.Database}).String()
}

// ResolvePostgres finds the suite's PostgreSQL (issue 5, `make run`):
// DATABASE_URL if set; else the local server on 127.0.0.1:5432, creating
// database "shopflow" if missing; else, when PostgreSQL's programs are
// installed but no server answers, a private cluster under dataDir
// (initialized once, started now, stopped by Stop), run as a non-root
// user when this process is root.
func ResolvePostgres(ctx context.Context, mode PostgresMode, dataDir string, port int, log *slog.Logger) (Postgres, error) {
	noop := func() {}
	if mode == PostgresAuto {
		if u := os.Getenv("DATABASE_URL"); u != "" {
			if err := reachable(ctx, u, databaseURLWait); err != nil {
				return Postgres{}, fmt.Errorf("DATABASE_URL: %w", err)
			}
			return Postgres{URL: u, Source: SourceDatabaseURL, Desc: MaskDatabaseURL(u) + " (DATABASE_URL)", Stop: noop}, nil
		}
	}
	var localErr error
	if mode == PostgresAuto || mode == PostgresLocal {
		u, err := ensureDatabase(ctx, LocalServerURL)
		if err == nil {
			return Postgres{URL: u, Source: SourceLocal, Desc: u + " (the local server)", Stop: noop}, nil
		}
		localErr = err
		if mode == PostgresLocal {
			return Postgres{}, fmt.Errorf("local PostgreSQL on 127.0.0.1:5432: %w", err)
		}
	}
	bin, err := findPostgresBin()
	if err != nil {
		return Postgres{}, fmt.Errorf("no PostgreSQL: DATABASE_URL is not set, the local server does not answer (%v), "+
			"and %w; install PostgreSQL (Debian: apt-get install postgresql) or set DATABASE_URL", localErr, err)
	}
	return startPrivate(ctx, bin, dataDir, port, log)
}

// databaseURLWait is how long ResolvePostgres waits for DATABASE_URL's
// server to answer (one that is starting up, say) before it gives up.
var databaseURLWait = 10 * time.Second

// reachable connects to url, retrying for up to wait: the suite's
// services would retry a server that does not answer for good, each
// saying so, so the dev tool finds out once, up front.
func reachable(ctx context.Context, url string, wait time.Duration) error {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(wait)
	var last error
	for {
		cctx, cancel := context.WithDeadline(ctx, deadline)
		conn, err := pgx.ConnectConfig(cctx, cfg)
		cut := cctx.Err() != nil && ctx.Err() == nil
		cancel()
		if err == nil {
			return conn.Close(ctx)
		}
		if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code != "57P03" {
			return err // the server answered, and refused (no such database, a role or password wrong)
		}
		// An attempt the deadline cut short says only "deadline exceeded";
		// the attempt before it says why there was no answer (connection
		// refused, no route to the host).
		if !cut || last == nil {
			last = err
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("no answer after %s: %w", wait, last)
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// ensureDatabase connects to a server's maintenance database, creates
// DatabaseName if missing and returns the URL of it.
func ensureDatabase(ctx context.Context, adminURL string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, adminURL)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(cctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, DatabaseName).Scan(&exists); err != nil {
		return "", err
	}
	if !exists {
		if _, err := conn.Exec(cctx, "CREATE DATABASE "+DatabaseName); err != nil {
			var pgErr interface{ SQLState() string }
			if !errors.As(err, &pgErr) || pgErr.SQLState() != "42P04" { // created meanwhile
				return "", fmt.Errorf("create database %s: %w", DatabaseName, err)
			}
		}
	}
	cfg := conn.Config()
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, DatabaseName), nil
}

// findPostgresBin returns the directory of initdb, pg_ctl and postgres.
func findPostgresBin() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	// Debian keeps the server programs out of PATH, one directory per
	// major version: take the newest.
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return versionOf(b) - versionOf(a) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("PostgreSQL's server programs (initdb, pg_ctl) are not installed")
}

func versionOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// startPrivate initializes (once) and starts a cluster under dataDir.
func startPrivate(ctx context.Context, bin, dataDir string, port int, log *slog.Logger) (Postgres, error) {
	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return Postgres{}, err
	}
	cred, owner, err := runAs()
	if err != nil {
		return Postgres{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Postgres{}, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return Postgres{}, fmt.Errorf("hand %s to user %s: %w", dir, owner, err)
		}
	}
	run := func(name string, args ...string) error {
		cmd := exec.CommandContext(ctx, filepath.Join(bin, name), args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w\n%s", name, err, out)
		}
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		log.Info("initializing a private PostgreSQL cluster", "dir", dir, "user", owner)
		if err := run("initdb", "-D", dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"); err != nil {
			return Postgres{}, fmt.Errorf("initialize a PostgreSQL cluster in %s as %s: %w", dir, owner, err)
		}
	}
	// A shop dev that was killed (SIGKILL, a crash) left its cluster
	// running, and pg_ctl start would fail ("another server might be
	// running"). Nothing else uses it (shop dev holds the data
	// directory's lock before it comes here), and it may listen on
	// another port: stop it, then start it as asked.
	if run("pg_ctl", "-D", dir, "status") == nil {
		log.Warn("a private PostgreSQL left running by an earlier shop dev that did not stop (killed?): restarting it", "dir", dir)
		if err := run("pg_ctl", "-D", dir, "-m", "fast", "-w", "-t", "60", "stop"); err != nil {
			return Postgres{}, fmt.Errorf("stop the private PostgreSQL an earlier shop dev left running in %s: %w", dir, err)
		}
	}
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1", port, dir)
	if err := run("pg_ctl", "-D", dir, "-l", filepath.Join(dir, "server.log"), "-w", "-t", "60", "-o", opts, "start"); err != nil {
		return Postgres{}, fmt.Errorf("start the private PostgreSQL in %s (log: %s): %w", dir, filepath.Join(dir, "server.log"), err)
	}
	stop := func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(sctx, filepath.Join(bin, "pg_ctl"), "-D", dir, "-m", "fast", "-w", "stop")
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			log.Error("stop the private PostgreSQL", "err", err, "output", string(out))
		}
	}
	u, err := ensureDatabase(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port))
	if err != nil {
		stop()
		return Postgres{}, fmt.Errorf("private PostgreSQL on port %d: %w", port, err)
	}
	return Postgres{URL: u, Source: SourcePrivate, Desc: fmt.Sprintf("%s (a private cluster in %s, stopped with shop dev)", u, dir), Stop: stop}, nil
}

// runAs says which user runs the cluster: this one, unless it is root
// (PostgreSQL refuses to run as root); then "postgres" if it exists, else
// "nobody".
func runAs() (*syscall.Credential, string, error) {
	if os.Geteuid() != 0 {
		u, _ := user.Current()
		name := "this user"
		if u != nil {
			name = u.Username
		}
		return nil, name, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, name, nil
	}
	return nil, "", errors.New("running as root, and neither user postgres nor nobody exists to run PostgreSQL as")
}
