package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shopflow/shopflow/pkg/platform/config"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/outbox"
	"github.com/shopflow/shopflow/pkg/platform/pg"
	"github.com/shopflow/shopflow/pkg/platform/service"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
	"github.com/shopflow/shopflow/services/inventory"
	"github.com/shopflow/shopflow/services/order"
	"github.com/shopflow/shopflow/services/payment"
	"github.com/shopflow/shopflow/services/shipping"
)

// deployedService is one service as deployed: its runtime spec (schema,
// topics), its database role and the variable holding the role's password
// in docker-compose.yml and deploy/postgres/init/02-role-passwords.sh.
type deployedService struct {
	spec        service.Spec
	role        string
	passwordVar string
}

// deployedServices are the four services in the order of the compose file.
// The roles are the contract between deploy/postgres/init and the compose
// file's DATABASE_URLs; the schemas come from the services themselves.
func deployedServices() []deployedService {
	return []deployedService{
		{spec: order.Spec(), role: "order_svc", passwordVar: "ORDER_DB_PASSWORD"},
		{spec: payment.Spec(), role: "payment_svc", passwordVar: "PAYMENT_DB_PASSWORD"},
		{spec: inventory.Spec(), role: "inventory_svc", passwordVar: "INVENTORY_DB_PASSWORD"},
		{spec: shipping.Spec(), role: "shipping_svc", passwordVar: "SHIPPING_DB_PASSWORD"},
	}
}

// initDir is the postgres image's /docker-entrypoint-initdb.d in compose.
func initDir(t *testing.T) string {
	return filepath.Join(repoRoot(t), "deploy", "postgres", "init")
}

// repoRoot is the checkout's root (this package lives in e2e/).
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Dir(wd)
	if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
		t.Fatalf("repository root not found above %s: %v", wd, err)
	}
	return root
}

// TestRoles runs deploy/postgres/init the way the postgres image does (every
// file in name order: .sql through psql, .sh through bash) in a fresh
// database of the test server, twice, and then proves that each service's
// role can run its service and touch nothing but its own schema.
//
// Roles are cluster-wide: the ones this test creates are dropped when it
// ends. The local server trusts local connections, so the passwords that
// 02-role-passwords.sh sets are not checked there; against a server with
// password authentication (TEST_DATABASE_URL) they are, since every
// connection below uses them.
func TestRoles(t *testing.T) {
	services := deployedServices()
	dbURL := testenv.DatabaseURL(t)
	dropCreatedRoles(t, dbURL, services)

	passwords := map[string]string{}
	for _, s := range services {
		passwords[s.passwordVar] = "pw-" + randomHex(t, 8) + "'\"$ x" // quotes, $ and a space must survive
	}
	runInitScripts(t, dbURL, passwords)
	runInitScripts(t, dbURL, passwords) // idempotent: a second run changes nothing and fails on nothing

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	admin, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())

	roleURL := func(s deployedService) string {
		u, err := url.Parse(dbURL)
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword(s.role, passwords[s.passwordVar])
		return u.String()
	}

	t.Run("catalog", func(t *testing.T) {
		for _, s := range services {
			var owner string
			var acl []string
			err := admin.QueryRow(ctx, `SELECT pg_get_userbyid(nspowner), coalesce(nspacl::text[], '{}')
				FROM pg_namespace WHERE nspname = $1`, s.spec.Schema).Scan(&owner, &acl)
			if err != nil {
				t.Fatalf("schema %s of %s: %v", s.spec.Schema, s.spec.Name, err)
			}
			if owner != s.role {
				t.Errorf("schema %s is owned by %s, want %s", s.spec.Schema, owner, s.role)
			}
			for _, a := range acl {
				if !strings.HasPrefix(a, s.role+"=") {
					t.Errorf("schema %s grants %q: only its owner %s may have privileges", s.spec.Schema, a, s.role)
				}
			}
			var super, createDB, createRole, repl, bypass, login bool
			var pwSet bool
			err = admin.QueryRow(ctx, `SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin,
				rolpassword IS NOT NULL FROM pg_authid WHERE rolname = $1`, s.role).
				Scan(&super, &createDB, &createRole, &repl, &bypass, &login, &pwSet)
			if err != nil {
				t.Fatalf("role %s: %v", s.role, err)
			}
			if super || createDB || createRole || repl || bypass || !login {
				t.Errorf("role %s: superuser=%v createdb=%v createrole=%v replication=%v bypassrls=%v login=%v; want only login",
					s.role, super, createDB, createRole, repl, bypass, login)
			}
			if !pwSet {
				t.Errorf("role %s has no password: 02-role-passwords.sh did not set it", s.role)
			}
			var memberships int
			if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member
				WHERE r.rolname = $1`, s.role).Scan(&memberships); err != nil {
				t.Fatal(err)
			}
			if memberships != 0 {
				t.Errorf("role %s is a member of %d roles, want none", s.role, memberships)
			}
		}
	})

	// Start-up as each role: the platform's and the service's migrations,
	// twice (the second start finds everything applied).
	t.Run("migrations", func(t *testing.T) {
		for _, s := range services {
			for range 2 {
				pool, err := pg.Connect(ctx, pg.Config{URL: roleURL(s), Schema: s.spec.Schema, StartupTimeout: 10 * time.Second}, nil)
				if err != nil {
					t.Fatalf("%s as %s: %v", s.spec.Name, s.role, err)
				}
				err = pg.Migrate(ctx, pool, nil, s.spec.Schema,
					pg.Migrations{Name: outbox.MigrationsTable, FS: outbox.Migrations()},
					pg.Migrations{Name: inbox.MigrationsTable, FS: inbox.Migrations()},
					s.spec.Migrations)
				pool.Close()
				if err != nil {
					t.Fatalf("%s as %s: %v", s.spec.Name, s.role, err)
				}
			}
		}
	})

	tables := map[string][]string{} // schema → its tables, as created by the migrations
	for _, s := range services {
		rows, _ := admin.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY 1`, s.spec.Schema)
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(names, "outbox") || !slices.Contains(names, "inbox") {
			t.Fatalf("schema %s has tables %v, want outbox and inbox among them", s.spec.Schema, names)
		}
		tables[s.spec.Schema] = names
	}

	t.Run("isolation", func(t *testing.T) {
		for _, s := range services {
			t.Run(s.role, func(t *testing.T) {
				// No search_path in the URL: the role's own setting applies.
				conn, err := pgx.Connect(ctx, roleURL(s))
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close(context.Background())
				var sp string
				if err := conn.QueryRow(ctx, "SHOW search_path").Scan(&sp); err != nil {
					t.Fatal(err)
				}
				if sp != s.spec.Schema {
					t.Errorf("search_path of %s is %q, want %q", s.role, sp, s.spec.Schema)
				}

				own := pgx.Identifier{s.spec.Schema, "role_probe"}.Sanitize()
				for _, q := range []string{
					"CREATE TABLE " + own + " (id int PRIMARY KEY, v text)",
					"INSERT INTO " + own + " VALUES (1, 'a')",
					"UPDATE " + own + " SET v = 'b' WHERE id = 1",
					"SELECT count(*) FROM " + own,
					"DELETE FROM " + own,
					"DROP TABLE " + own,
					"SELECT count(*) FROM outbox", // its own migrated tables, unqualified
					"SELECT count(*) FROM inbox",
				} {
					if _, err := conn.Exec(ctx, q); err != nil {
						t.Errorf("%s in its own schema: %s: %v", s.role, q, err)
					}
				}

				denied := []string{
					"CREATE TABLE public.role_probe (id int)",
					"CREATE SCHEMA role_probe",
					"CREATE TEMP TABLE role_probe (id int)",
				}
				for _, o := range services {
					if o.spec.Schema == s.spec.Schema {
						continue
					}
					for _, tbl := range tables[o.spec.Schema] {
						denied = append(denied, "SELECT 1 FROM "+pgx.Identifier{o.spec.Schema, tbl}.Sanitize()+" LIMIT 1")
					}
					ob := pgx.Identifier{o.spec.Schema, "outbox"}.Sanitize()
					denied = append(denied,
						"INSERT INTO "+ob+" (topic, key, value) VALUES ('shop.orders', 'k', 'v')",
						"UPDATE "+ob+" SET topic = topic",
						"DELETE FROM "+ob,
						"TRUNCATE "+ob,
						"CREATE TABLE "+pgx.Identifier{o.spec.Schema, "role_probe"}.Sanitize()+" (id int)",
						"DROP TABLE "+ob,
						"ALTER SCHEMA "+pgx.Identifier{o.spec.Schema}.Sanitize()+" RENAME TO role_probe",
					)
				}
				for _, q := range denied {
					_, err := conn.Exec(ctx, q)
					if pgErr := (*pgconn.PgError)(nil); !errors.As(err, &pgErr) || pgErr.Code != "42501" {
						t.Errorf("%s: %s: got %v, want permission denied (SQLSTATE 42501)", s.role, q, err)
					}
				}
			})
		}
	})

	t.Run("services start as their roles", func(t *testing.T) {
		runServicesAsRoles(t, services, roleURL)
	})
}

// serviceRuns loads each service's configuration from env and runs it.
var serviceRuns = map[string]func(ctx context.Context, env config.Option, log *slog.Logger) error{
	"order": func(ctx context.Context, env config.Option, log *slog.Logger) error {
		cfg, err := config.Load[order.Config](env)
		if err != nil {
			return err
		}
		return order.Run(ctx, cfg, log)
	},
	"payment": func(ctx context.Context, env config.Option, log *slog.Logger) error {
		cfg, err := config.Load[payment.Config](env)
		if err != nil {
			return err
		}
		return payment.Run(ctx, cfg, log)
	},
	"inventory": func(ctx context.Context, env config.Option, log *slog.Logger) error {
		cfg, err := config.Load[inventory.Config](env)
		if err != nil {
			return err
		}
		return inventory.Run(ctx, cfg, log)
	},
	"shipping": func(ctx context.Context, env config.Option, log *slog.Logger) error {
		cfg, err := config.Load[shipping.Config](env)
		if err != nil {
			return err
		}
		return shipping.Run(ctx, cfg, log)
	},
}

// runServicesAsRoles runs the four services in-process with the
// configuration docker-compose.yml gives them, except for the addresses
// (this test's database and broker, a free port, a topic prefix), each
// connected as its own role, and checks that each gets ready: migrations,
// outbox relay (advisory lock, LISTEN), inbox consumer and the payment
// gateway's own pool all work with the role's privileges.
func runServicesAsRoles(t *testing.T, services []deployedService, roleURL func(deployedService) string) {
	project := loadCompose(t, nil)
	prefix := testenv.Prefix(t)
	environ := func(s deployedService) config.Option {
		env := environment(t, mustService(t, project, s.spec.Name))
		env["DATABASE_URL"] = roleURL(s)
		env["KAFKA_BROKERS"] = strings.Join(testenv.Kafka(t), ",")
		env["HTTP_ADDR"] = "127.0.0.1:0"
		env["KAFKA_TOPIC_PREFIX"] = prefix
		return config.WithEnvironment(env)
	}

	ctx, cancel := context.WithCancel(context.Background())
	type started struct{ name, addr string }
	up := make(chan started, len(services))
	done := make(chan error, len(services))
	running := 0
	for _, s := range services {
		fn := serviceRuns[s.spec.Name]
		if fn == nil {
			t.Errorf("no runner for service %s", s.spec.Name)
			continue
		}
		log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
		sctx := service.OnStarted(ctx, func(addr string) { up <- started{s.spec.Name, addr} })
		running++
		go func() {
			if err := fn(sctx, environ(s), log); err != nil {
				done <- fmt.Errorf("%s: %w", s.spec.Name, err)
				return
			}
			done <- nil
		}()
	}
	// stop ends every service still running and reports how each ended;
	// it runs before the database and the roles are dropped.
	stop := func() {
		cancel()
		timeout := time.After(40 * time.Second)
		for ; running > 0; running-- {
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("service ended with an error: %v", err)
				}
			case <-timeout:
				t.Errorf("%d services did not stop within 40s", running)
				return
			}
		}
	}
	defer stop()

	addrs := map[string]string{}
	deadline := time.After(2 * time.Minute)
	for len(addrs) < running {
		select {
		case s := <-up:
			addrs[s.name] = s.addr
		case err := <-done:
			running--
			t.Fatalf("a service did not start as its role: %v", err)
		case <-deadline:
			t.Fatalf("services not started within 2m; up: %v", addrs)
		}
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for name, addr := range addrs {
		testenv.Eventually(t, 30*time.Second, name+" /readyz answers 200", func() bool {
			res, err := client.Get("http://" + addr + "/readyz")
			if err != nil {
				return false
			}
			res.Body.Close()
			return res.StatusCode == http.StatusOK
		})
	}

	// The image's probe (deploy/healthcheck), built as the Dockerfile
	// builds it, against the real services: the URL form compose uses, and
	// the HTTP_ADDR form.
	probe := buildHealthcheck(t)
	for name, addr := range addrs {
		_, port, _ := net.SplitHostPort(addr)
		for _, c := range []struct {
			args []string
			env  string
		}{
			{args: []string{"http://127.0.0.1:" + port + "/readyz"}},
			{env: "HTTP_ADDR=:" + port},
		} {
			cmd := exec.Command(probe, c.args...)
			cmd.Env = []string{c.env}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("healthcheck %v %s against %s: %v\n%s", c.args, c.env, name, err, out)
			}
		}
	}

	// The dashboard's order-rate query selects route="/v1/orders": a
	// rejected placement is enough to prove the label is what it expects.
	res, err := client.Post("http://"+addrs["order"]+"/v1/orders", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode < 400 || res.StatusCode > 499 {
		t.Errorf("POST /v1/orders {}: %d, want a 4xx", res.StatusCode)
	}
	body := get(t, client, "http://"+addrs["order"]+"/metrics")
	want := `shop_http_request_duration_seconds_count{code="` + strconv.Itoa(res.StatusCode) + `",lifecycle="",method="POST",route="/v1/orders"}`
	if !strings.Contains(body, want) {
		t.Errorf("order /metrics lacks %s (the dashboard's order rate depends on it)", want)
	}
	// Every series the Grafana dashboard queries exists on some service,
	// with the labels it groups by.
	exported := map[string]map[string]bool{} // metric → label names seen
	series := regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? `)
	labelName := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)
	for _, addr := range addrs {
		for line := range strings.Lines(get(t, client, "http://"+addr+"/metrics")) {
			m := series.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			if exported[m[1]] == nil {
				exported[m[1]] = map[string]bool{}
			}
			for _, l := range labelName.FindAllStringSubmatch(m[2], -1) {
				exported[m[1]][l[1]] = true
			}
		}
	}
	for _, q := range dashboardQueries(t) {
		labels, ok := exported[q.metric]
		if !ok {
			t.Errorf("the dashboard queries %s, which no running service exports", q.metric)
			continue
		}
		for _, l := range q.by {
			if l != "job" && l != "instance" && !labels[l] { // job and instance come from Prometheus
				t.Errorf("the dashboard groups %s by %q; the services export it with labels %v", q.metric, l, slices.Sorted(maps.Keys(labels)))
			}
		}
	}

	stop()

	// A stopped service fails the probe with exit status 1.
	for name, addr := range addrs {
		cmd := exec.Command(probe, "-timeout", "2s", "http://"+addr+"/readyz")
		out, err := cmd.CombinedOutput()
		if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("healthcheck against stopped %s: %v (want exit status 1)\n%s", name, err, out)
		}
	}
}

// buildHealthcheck compiles deploy/healthcheck as the Dockerfile does (its
// own module, outside the workspace, static).
func buildHealthcheck(t *testing.T) string {
	t.Helper()
	// go test puts its own toolchain first on PATH.
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build deploy/healthcheck: %v", err)
	}
	out := filepath.Join(t.TempDir(), "healthcheck")
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", out, ".")
	cmd.Dir = filepath.Join(repoRoot(t), "deploy", "healthcheck")
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build deploy/healthcheck: %v\n%s", err, b)
	}
	return out
}

func get(t *testing.T, c *http.Client, u string) string {
	t.Helper()
	res, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// testWriter sends the services' warnings and errors to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// runInitScripts does what the postgres image's entrypoint does with
// /docker-entrypoint-initdb.d, against the database of dbURL: every file in
// name order, *.sql through `psql -v ON_ERROR_STOP=1 -f`, *.sh through bash,
// with POSTGRES_USER and POSTGRES_DB naming the superuser and the database
// and the role passwords in the environment, as in docker-compose.yml.
func runInitScripts(t *testing.T, dbURL string, passwords map[string]string) {
	t.Helper()
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Fatalf("psql is needed to run deploy/postgres/init as the postgres image does: %v", err)
	}
	cfg, err := pgconn.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(),
		"POSTGRES_USER="+cfg.User, "POSTGRES_DB="+cfg.Database,
		"PGHOST="+cfg.Host, "PGPORT="+strconv.Itoa(int(cfg.Port)), "PGPASSWORD="+cfg.Password,
		"PGSSLMODE="+cmpOr(u.Query().Get("sslmode"), "prefer"))
	for k, v := range passwords {
		env = append(env, k+"="+v)
	}
	dir := initDir(t)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, e := range entries { // ReadDir sorts by name, as the entrypoint's glob does
		path := filepath.Join(dir, e.Name())
		var cmd *exec.Cmd
		switch filepath.Ext(e.Name()) {
		case ".sql":
			cmd = exec.Command(psql, "-v", "ON_ERROR_STOP=1", "--username", cfg.User, "--no-password", "--no-psqlrc",
				"--dbname", cfg.Database, "-f", path)
		case ".sh":
			cmd = exec.Command("bash", path)
		default:
			t.Fatalf("%s: the postgres image ignores this file; remove it or give it a .sql or .sh name", path)
		}
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", e.Name(), err, out)
		}
		ran++
	}
	if ran == 0 {
		t.Fatalf("no init scripts in %s", dir)
	}
}

// dropCreatedRoles drops, when the test ends, the service roles that do not
// exist now. It runs before the test database is dropped: DROP OWNED
// removes the role's objects there and its grants (the database's CONNECT
// included), so DROP ROLE succeeds unless the role holds something in
// another database of the server (another run's), which is only logged.
func dropCreatedRoles(t *testing.T, dbURL string, services []deployedService) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("roles: connect: %v", err)
	}
	defer conn.Close(ctx)
	var missing []string
	for _, s := range services {
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", s.role).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if !exists {
			missing = append(missing, s.role)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			t.Logf("roles: drop: %v", err)
			return
		}
		defer conn.Close(ctx)
		for _, r := range missing {
			id := pgx.Identifier{r}.Sanitize()
			if _, err := conn.Exec(ctx, "DROP OWNED BY "+id); err != nil {
				t.Logf("roles: left %s in place: %v", r, err)
				continue
			}
			if _, err := conn.Exec(ctx, "DROP ROLE "+id); err != nil {
				t.Logf("roles: left %s in place: %v", r, err)
			}
		}
	})
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
