// Package pg opens a service's PostgreSQL pool and applies its embedded
// migrations.
//
// Every service owns one schema. The pool sets search_path to that schema,
// so the service's SQL (and the shared outbox and inbox tables) use
// unqualified names and a role that may touch only its own schema works
// unchanged.
//
// The pool also sets enable_seqscan=off unless Config.Settings says
// otherwise. Every statement the services run finds its rows through an
// index, but their tables start empty: autovacuum analyses a table first
// when it holds some fifty rows, pgx prepares each statement once per
// connection, and PostgreSQL caches a generic plan for it after five runs.
// Planned for a table of a page or two, that plan is a sequential scan,
// and it stays one while the table grows until the next analyse, so each
// lookup reads the whole table: in `make bench-e2e` (5000 orders on a
// fresh database) that cost 40% of the settled rate. With seq scans off
// the planner uses an index whenever one applies, and still scans a table
// that has none. The cost of such a scan then counts the planner's
// penalty (10^10), far above jit_above_cost, so the pool sets jit=off as
// well: otherwise each run of it is compiled to machine code first, as
// the migration tool's statements on its version tables were (15-100 ms
// each at start-up). A URL parameter (enable_seqscan=on, jit=on) or
// Config.Settings overrides either.
package pg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
)

// sessionDefaults are the settings a pool starts its sessions with unless
// the URL or Config.Settings set them (see the package doc).
var sessionDefaults = map[string]string{"enable_seqscan": "off", "jit": "off"}

// Config describes how to reach a service's schema.
type Config struct {
	// URL is a libpq-style connection URL or keyword/value string.
	URL string
	// Schema is the service's schema; it becomes the search_path and is
	// created when missing (if the role may).
	Schema string
	// MaxConns bounds the pool; 0 keeps pgxpool's default (max(4, CPUs)).
	MaxConns int32
	// StartupTimeout bounds how long Connect keeps retrying an unreachable
	// server; 0 means 30 s.
	StartupTimeout time.Duration
	// Settings are session settings every connection starts with, e.g.
	// {"synchronous_commit": "off"}; they override the URL's options and
	// the pool's own defaults (enable_seqscan=off, jit=off: see the
	// package doc).
	Settings map[string]string
}

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Connect opens a pool for cfg, retrying with capped exponential backoff
// until the server answers or StartupTimeout passes, and ensures the
// schema exists.
func Connect(ctx context.Context, cfg Config, log *slog.Logger) (*pgxpool.Pool, error) {
	if !schemaName.MatchString(cfg.Schema) {
		return nil, fmt.Errorf("pg: schema %q: want a lower-case SQL identifier", cfg.Schema)
	}
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("pg: DATABASE_URL: %w", err)
	}
	if pcfg.ConnConfig.RuntimeParams == nil {
		pcfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	for k, v := range sessionDefaults {
		if _, ok := pcfg.ConnConfig.RuntimeParams[k]; !ok {
			pcfg.ConnConfig.RuntimeParams[k] = v
		}
	}
	maps.Copy(pcfg.ConnConfig.RuntimeParams, cfg.Settings)
	// The schema is the service's own, whatever the URL asks: say so
	// rather than drop a search_path the operator meant silently.
	if sp, ok := pcfg.ConnConfig.RuntimeParams["search_path"]; ok && sp != cfg.Schema && log != nil {
		log.Warn("DATABASE_URL sets search_path, which is ignored: the service keeps its tables in its own schema",
			"search_path", sp, "schema", cfg.Schema)
	}
	pcfg.ConnConfig.RuntimeParams["search_path"] = cfg.Schema
	if _, ok := pcfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		pcfg.ConnConfig.RuntimeParams["application_name"] = "shopflow-" + cfg.Schema
	}
	if cfg.MaxConns > 0 {
		pcfg.MaxConns = cfg.MaxConns
	}
	// Idle connections go back to the server after a minute (pgx keeps
	// them 30): a server's max_connections is shared by every replica of
	// every service, and a trial's inventory replica got none for minutes
	// after a load while the others' pools sat on theirs. A busy pool
	// reuses its connections long before that.
	if !strings.Contains(cfg.URL, "pool_max_conn_idle_time") {
		pcfg.MaxConnIdleTime = IdleConnTimeout
	}
	// Timestamps read back in UTC, whatever the host's zone: pgx returns
	// time.Local by default, so a service on a host with TZ set answered
	// some times with -05:00 and others (converted by hand) with Z.
	pcfg.AfterConnect = func(_ context.Context, c *pgx.Conn) error {
		c.TypeMap().RegisterType(&pgtype.Type{Name: "timestamptz", OID: pgtype.TimestamptzOID,
			Codec: &pgtype.TimestamptzCodec{ScanLocation: time.UTC}})
		return nil
	}
	if pcfg.ConnConfig.ConnectTimeout == 0 {
		pcfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	timeout := cfg.StartupTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("pg: %w", err)
	}
	deadline := time.Now().Add(timeout)
	delay := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err = ensureSchema(ctx, pool, cfg.Schema)
		if err == nil {
			return pool, nil
		}
		if !Transient(err) || time.Now().Add(delay).After(deadline) {
			pool.Close()
			hint := ""
			if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == "53300" {
				hint = " (the server takes no more connections: max_connections, or the role's or database's CONNECTION LIMIT, is used up; every replica of every service may open up to DB_MAX_CONNS, plus one for its outbox relay: lower DB_MAX_CONNS or raise the limit)"
			}
			return nil, fmt.Errorf("pg: connect to %s (schema %s) after %d attempt(s): %w%s", redact(pcfg), cfg.Schema, attempt, err, hint)
		}
		if log != nil {
			log.Warn("postgres not ready, retrying", "schema", cfg.Schema, "attempt", attempt, "in", delay, "err", err)
		}
		select {
		case <-ctx.Done():
			pool.Close()
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
}

func redact(c *pgxpool.Config) string {
	return fmt.Sprintf("%s@%s:%d/%s", c.ConnConfig.User, c.ConnConfig.Host, c.ConnConfig.Port, c.ConnConfig.Database)
}

func ensureSchema(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	var exists bool
	const q = `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`
	if err := pool.QueryRow(ctx, q, schema).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	// The name was checked against schemaName, so quoting is enough.
	_, err := pool.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return nil // created concurrently by another instance
	}
	return err
}

// Migrations is one ordered set of migrations (tern's NNN_name.sql files)
// tracked in its own version table, so shared packages (outbox, inbox) and
// the service can each evolve their tables independently.
type Migrations struct {
	// Name is the version table's name, e.g. "schema_version".
	Name string
	FS   fs.FS
}

// ErrSchemaNewer is returned by Migrate for a schema that a newer release
// migrated past the migrations this one knows: migrations only go
// forward, so the binary is older than its database.
var ErrSchemaNewer = errors.New("the schema is newer than this release")

// Migrate applies every set in order to the schema, holding tern's
// advisory lock so concurrently starting replicas migrate once. The lock
// is one for the whole database (tern's), so services whose schemas share
// a database migrate one at a time, and a long migration holds up the
// others' starts: the INFO lines say which is migrating, and how long it
// took. A schema already past the set's migrations is ErrSchemaNewer.
// A nil log logs nothing.
func Migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger, schema string, sets ...Migrations) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("pg: migrate %s: %w", schema, err)
	}
	defer conn.Release()
	for _, set := range sets {
		table := pgx.Identifier{schema, set.Name}.Sanitize()
		m, err := migrate.NewMigrator(ctx, conn.Conn(), table)
		if err != nil {
			return fmt.Errorf("pg: migrate %s.%s: %w", schema, set.Name, err)
		}
		if err := m.LoadMigrations(set.FS); err != nil {
			return fmt.Errorf("pg: load migrations %s.%s: %w", schema, set.Name, err)
		}
		known := int32(len(m.Migrations))
		// Read before tern's lock: another replica may migrate first,
		// and then this one has nothing left to do.
		current, err := m.GetCurrentVersion(ctx)
		if err != nil {
			return fmt.Errorf("pg: migrate %s.%s: %w", schema, set.Name, err)
		}
		if current > known {
			return fmt.Errorf("pg: migrate %s.%s: %w: it is at version %d and this release knows versions up to %d, "+
				"so a newer release migrated it (migrations do not go back): run that release or a newer one",
				schema, set.Name, ErrSchemaNewer, current, known)
		}
		if current == known {
			continue
		}
		attrs := []any{"schema", schema, "table", set.Name, "from_version", current, "to_version", known}
		log.Info("migrating the schema; services whose schemas share this database wait for it to migrate theirs", attrs...)
		m.OnStart = func(version int32, name, _, _ string) {
			log.Info("applying migration", "schema", schema, "table", set.Name, "version", version, "name", name)
		}
		start := time.Now()
		if err := m.Migrate(ctx); err != nil {
			return fmt.Errorf("pg: migrate %s.%s: %w", schema, set.Name, err)
		}
		log.Info("migrated", append(attrs, "took", time.Since(start).Round(time.Millisecond).String())...)
	}
	return nil
}

// Transient reports whether err is worth retrying: the connection failed or
// was lost, the server is starting or shutting down, or the transaction lost
// a serialization or deadlock race. Constraint violations and bad SQL are
// not transient.
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "40001", "40P01", // serialization failure, deadlock
			"55P03": // lock not available
			return true
		}
	}
	return Unavailable(err)
}

// Down reports whether err says the database could not be reached, or
// refused the session or its writes, before the work was done: the server
// is shutting down or starting, out of connections, a connection
// exception, a connection that could not be made, a request pgx never
// sent, or a database that takes no writes now (read-only: a standby, or
// default_transaction_read_only; out of disk), whose refused
// transaction did nothing and which a retry can outlast. Unlike
// Unavailable it leaves out timeouts and connections lost mid-statement,
// whose work may have been done, and errors that are not the database's:
// what an HTTP answer can call "send it again".
func Down(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57P01", "57P02", "57P03", // admin/crash shutdown, cannot connect now
			"53100", "53300", // disk full, too many connections (not out of memory: that can be one statement's own doing)
			"25006": // read-only SQL transaction
			return true
		}
		return len(pgErr.Code) == 5 && pgErr.Code[:2] == "08" // connection exceptions
	}
	var connErr *pgconn.ConnectError
	return errors.As(err, &connErr) || pgconn.SafeToRetry(err)
}

// Unavailable reports whether err says the database, or the connection to
// it, is gone (failed, lost, refused, shutting down, out of connections)
// rather than anything about the statements sent: other work sent now
// would fail the same way: what Down says, and also timeouts and
// connections lost mid-statement, but not another request's network
// error (a handler's HTTP call refused). Such errors are Transient.
func Unavailable(err error) bool {
	if Down(err) {
		return true
	}
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return false // the server answered, about the statements
	}
	if pgconn.Timeout(err) {
		return true
	}
	// Anything else from the network layer (reset, EOF mid-query) is
	// transient too; pgx reports those as plain errors, never PgError: a
	// reset as a *net.OpError, a connection closed under a statement (a
	// server's immediate shutdown or crash, a network cut) as io's EOF
	// errors, which are no net.Error. But not another request's: a
	// handler's call to another service that failed otherwise than by a
	// timeout says nothing of the database, and counted as its outage it
	// was retried for ever, never dead-lettered. net/http wraps its
	// errors in *url.Error, which pgx never returns, and pgx's own
	// failed dials come as *pgconn.ConnectError (Down), so a bare one is
	// someone else's.
	var netErr interface{ Timeout() bool }
	if errors.As(err, &netErr) {
		if netErr.Timeout() {
			return true
		}
		var urlErr *url.Error
		var opErr *net.OpError
		return !errors.As(err, &urlErr) && !(errors.As(err, &opErr) && opErr.Op == "dial")
	}
	// (An EOF inside a *url.Error, a handler's HTTP call cut short, was
	// answered above.)
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// IdleConnTimeout is how long a pool keeps an idle connection, unless
// the URL sets pool_max_conn_idle_time.
const IdleConnTimeout = time.Minute

// ErrReadOnly is Writable's verdict on a database that answers but takes
// no writes.
var ErrReadOnly = errors.New("read-only: the database takes no writes (a standby, or default_transaction_read_only is on)")

// Writable reports whether pool's database answers and takes writes: a
// transaction begun now would not be read-only (a hot standby after a
// failover, or default_transaction_read_only set for the server, the
// database or the role). A service whose every write is refused is not
// ready, though a ping succeeds.
func Writable(ctx context.Context, pool *pgxpool.Pool) error {
	var ro string
	if err := pool.QueryRow(ctx, `SELECT current_setting('transaction_read_only')`).Scan(&ro); err != nil {
		return err
	}
	if ro == "on" {
		return ErrReadOnly
	}
	return nil
}
