package httpserver

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// running is a Server run on a free loopback port for one test.
type running struct {
	url  string
	logs *testenv.SyncBuffer
}

// serve runs a server with cfg and routes until the test ends.
func serve(t *testing.T, cfg Config, routes func(chi.Router)) running {
	t.Helper()
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Addr = "127.0.0.1:0"
	cfg.ShutdownTimeout = 2 * time.Second
	s := New(cfg, log, prometheus.NewRegistry(), nil, routes)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case <-s.Listening():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	return running{url: "http://" + s.Addr(), logs: logs}
}

// stockDB is a fresh database with a table, stock, that the test can lock
// the way an operator's LOCK TABLE or a long migration does.
type stockDB struct {
	t    *testing.T
	pool *pgxpool.Pool
}

func newStockDB(t *testing.T) stockDB {
	t.Helper()
	pool := testenv.Pool(t, "deadline")
	if _, err := pool.Exec(context.Background(), `CREATE TABLE stock (sku text PRIMARY KEY, on_hand int NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return stockDB{t: t, pool: pool}
}

// lock takes an ACCESS EXCLUSIVE lock on stock in a transaction of its
// own, held until the test ends or release is called.
func (db stockDB) lock() (release func()) {
	db.t.Helper()
	ctx := context.Background()
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		db.t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE stock IN ACCESS EXCLUSIVE MODE`); err != nil {
		db.t.Fatal(err)
	}
	release = func() { _ = tx.Rollback(ctx) }
	db.t.Cleanup(release)
	return release
}

// waiter waits for a backend of db's database, not in seen, to wait on a
// lock (the request's: those of earlier requests may linger until they
// notice their client gone), adds it to seen and returns its pid.
func (db stockDB) waiter(seen map[int]bool) int {
	db.t.Helper()
	var pid int
	testenv.Eventually(db.t, 10*time.Second, "a request's statement waiting on the lock", func() bool {
		const q = `SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`
		rows, err := db.pool.Query(context.Background(), q)
		if err != nil {
			db.t.Fatal(err)
		}
		pids, err := pgx.CollectRows(rows, pgx.RowTo[int])
		if err != nil {
			db.t.Fatal(err)
		}
		for _, p := range pids {
			if !seen[p] {
				seen[p], pid = true, p
				return true
			}
		}
		return false
	})
	return pid
}

// count is a handler reading the stock table.
func (db stockDB) count(w http.ResponseWriter, r *http.Request) {
	var n int
	if err := db.pool.QueryRow(r.Context(), `SELECT count(*) FROM stock`).Scan(&n); err != nil {
		WriteError(w, r, err)
		return
	}
	WriteJSON(w, http.StatusOK, n)
}

// TestDeadlineAnswersARequestHeldByTheDatabase: a handler waiting on a
// table another transaction holds locked is answered once the request's
// deadline passes, before the server's write timeout: 503 with
// Retry-After when the request may be sent again (an idempotent method,
// a RetrySafe route), 500 otherwise, logged at WARN and ERROR. Without a
// deadline the handler waited for the lock, and the client got no answer
// at all: after the write timeout the server only closes the connection
// (a trial's curl got none at 30.0 s, the write timeout).
func TestDeadlineAnswersARequestHeldByTheDatabase(t *testing.T) {
	t.Parallel()
	db := newStockDB(t)
	const write, deadline = 3 * time.Second, 2250 * time.Millisecond // RequestTimeout's default for write
	srv := serve(t, Config{WriteTimeout: write}, func(r chi.Router) {
		r.Get("/v1/stock", db.count)
		r.With(RetrySafe).Post("/v1/stock/count", db.count)
		r.Post("/v1/stock/recount", db.count)
	})
	db.lock()
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/v1/stock", http.StatusServiceUnavailable},
		{"HEAD", "/v1/stock", http.StatusServiceUnavailable},
		{"POST", "/v1/stock/count", http.StatusServiceUnavailable},
		{"POST", "/v1/stock/recount", http.StatusInternalServerError}, // may have been done, not known to be safe to repeat
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			t.Parallel()
			req, _ := http.NewRequest(tc.method, srv.url+tc.path, nil)
			start := time.Now()
			res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				t.Fatalf("no answer after %s: %v", time.Since(start).Round(time.Millisecond), err)
			}
			defer res.Body.Close()
			took := time.Since(start)
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tc.want || res.Header.Get("Content-Type") != ProblemContentType {
				t.Fatalf("= %d %s %s, want %d problem+json", res.StatusCode, res.Header.Get("Content-Type"), body, tc.want)
			}
			if took < deadline || took > write {
				t.Errorf("answered after %s, want between the deadline (%s) and the write timeout (%s)", took, deadline, write)
			}
			if tc.want != http.StatusServiceUnavailable {
				return
			}
			if ra := res.Header.Get("Retry-After"); ra != "5" {
				t.Errorf("Retry-After %q, want 5", ra)
			}
			if tc.method == "HEAD" {
				return
			}
			var p Problem
			if err := json.Unmarshal(body, &p); err != nil || !strings.Contains(p.Detail, "did not finish within 2.25s") ||
				!strings.Contains(p.Detail, "send it again") {
				t.Errorf("problem %s (%v), want it to say the request did not finish within 2.25s and to send it again", body, err)
			}
		})
	}
	t.Cleanup(func() {
		logs := srv.logs.String()
		if n := strings.Count(logs, `"level":"WARN","msg":"request did not finish in time"`); n != 3 {
			t.Errorf("%d warnings that a request did not finish in time, want 3:\n%s", n, logs)
		}
		if n := strings.Count(logs, `"level":"ERROR"`); n != 1 {
			t.Errorf("%d errors logged, want 1 (the request not safe to repeat):\n%s", n, logs)
		}
	})
}

// TestConnectionLostMidStatement: a request whose connection to the
// database is lost while its statement runs (here: waits on a lock) is
// answered 503 with Retry-After when it may be sent again (an idempotent
// method, a RetrySafe route), 500 otherwise, its work being maybe done.
// A trial's pg_ctl -m immediate answered GET /v1/products and POST
// /v1/orders 500 ("connection reset by peer", "unexpected EOF"): the
// connection reset or closed without a word, which the "reset" and "EOF"
// cases do through a proxy. A backend ended by pg_terminate_backend says
// why before it goes (FATAL 57P01: its transaction aborted, nothing
// done), so that one is 503 for every request, as it was already.
func TestConnectionLostMidStatement(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"reset", "EOF", "terminated"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			direct := testenv.DatabaseURL(t)
			u, err := url.Parse(direct)
			if err != nil {
				t.Fatal(err)
			}
			proxy := testenv.StartProxy(t, u.Host)
			u.Host = proxy.Addr().String()
			db := stockDB{t: t, pool: testenv.PoolAt(t, u.String(), "deadline")}
			if _, err := db.pool.Exec(context.Background(), `CREATE TABLE stock (sku text PRIMARY KEY, on_hand int NOT NULL)`); err != nil {
				t.Fatal(err)
			}
			locker := stockDB{t: t, pool: testenv.PoolAt(t, direct, "deadline")}
			srv := serve(t, Config{}, func(r chi.Router) {
				r.Get("/v1/stock", db.count)
				r.Put("/v1/stock", db.count)
				r.With(RetrySafe).Post("/v1/stock/count", db.count)
				r.Post("/v1/stock/recount", db.count)
			})
			locker.lock()
			seen := map[int]bool{}
			lose := func(pid int) {
				switch mode {
				case "reset":
					proxy.Reset()
					return
				case "EOF":
					proxy.Cut()
					return
				}
				if _, err := locker.pool.Exec(context.Background(), `SELECT pg_terminate_backend($1)`, pid); err != nil {
					t.Fatal(err)
				}
			}
			why, warning := "the connection to the database was lost", "request failed: the database connection was lost"
			if mode == "terminated" {
				why, warning = "the database is unavailable", "request failed: the database is unavailable"
			}
			cases := []struct {
				method, path string
				want         int
			}{
				{"GET", "/v1/stock", http.StatusServiceUnavailable},
				{"PUT", "/v1/stock", http.StatusServiceUnavailable},
				{"POST", "/v1/stock/count", http.StatusServiceUnavailable},
				{"POST", "/v1/stock/recount", http.StatusInternalServerError}, // may have been done, not known to be safe to repeat
			}
			if mode == "terminated" {
				cases[3].want = http.StatusServiceUnavailable // its transaction aborted with its session: nothing was done
			}
			for _, tc := range cases {
				type answer struct {
					res  *http.Response
					body []byte
					err  error
				}
				got := make(chan answer, 1)
				go func() {
					req, _ := http.NewRequest(tc.method, srv.url+tc.path, nil)
					res, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
					if err != nil {
						got <- answer{err: err}
						return
					}
					defer res.Body.Close()
					b, _ := io.ReadAll(res.Body)
					got <- answer{res: res, body: b}
				}()
				lose(locker.waiter(seen))
				a := <-got
				db.pool.Reset() // the next case starts from connections that work
				if a.err != nil {
					t.Fatalf("%s %s: %v", tc.method, tc.path, a.err)
				}
				if a.res.StatusCode != tc.want || a.res.Header.Get("Content-Type") != ProblemContentType ||
					(tc.want == http.StatusServiceUnavailable && (a.res.Header.Get("Retry-After") != "5" || !strings.Contains(string(a.body), why))) {
					t.Errorf("%s %s, its connection lost mid-statement = %d (Retry-After %q) %s, want %d problem+json (503: with Retry-After 5, saying %q)",
						tc.method, tc.path, a.res.StatusCode, a.res.Header.Get("Retry-After"), a.body, tc.want, why)
				}
			}
			logs, warnings, errs := srv.logs.String(), 0, 0
			for _, tc := range cases {
				if tc.want == http.StatusServiceUnavailable {
					warnings++
				} else {
					errs++
				}
			}
			if n := strings.Count(logs, `"level":"WARN","msg":"`+warning+`"`); n != warnings {
				t.Errorf("%d warnings %q, want %d:\n%s", n, warning, warnings, logs)
			}
			if n := strings.Count(logs, `"level":"ERROR"`); n != errs {
				t.Errorf("%d errors logged, want %d (the requests not safe to repeat):\n%s", n, errs, logs)
			}
		})
	}
}

// TestClientGoneIsNotAServerError: a request whose client goes away while
// its handler waits on the database is recorded as 499 (nginx's "client
// closed request") in the metrics and the access log, whatever the
// handler then wrote: a 500 (WriteError, logged at INFO) or nothing at
// all (a page nobody reads). It counted as a 500, which pages
// (ShopOrderHTTPErrors) when clients time out on a slow database, or as
// a 200.
func TestClientGoneIsNotAServerError(t *testing.T) {
	t.Parallel()
	db := newStockDB(t)
	srv := serve(t, Config{}, func(r chi.Router) {
		r.Get("/v1/stock", db.count)
		r.Get("/v1/page", func(w http.ResponseWriter, r *http.Request) {
			var n int
			if err := db.pool.QueryRow(r.Context(), `SELECT count(*) FROM stock`).Scan(&n); err != nil {
				if ClientGone(r) {
					return // nobody reads the answer
				}
				WriteError(w, r, err)
				return
			}
			WriteJSON(w, http.StatusOK, n)
		})
	})
	db.lock()
	seen := map[int]bool{}
	for _, path := range []string{"/v1/stock", "/v1/page"} {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			req, _ := http.NewRequestWithContext(ctx, "GET", srv.url+path, nil)
			res, err := http.DefaultClient.Do(req)
			if err == nil {
				res.Body.Close()
			}
			done <- err
		}()
		db.waiter(seen)
		cancel()
		if err := <-done; err == nil {
			t.Fatalf("GET %s: answered, though the client gave up", path)
		}
		testenv.Eventually(t, 10*time.Second, "the access log line of "+path, func() bool {
			return strings.Contains(srv.logs.String(), `"msg":"http request","method":"GET","route":"`+path+`"`)
		})
	}
	res, err := http.Get(srv.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	metrics, logs := string(b), srv.logs.String()
	for _, path := range []string{"/v1/stock", "/v1/page"} {
		want := `shop_http_request_duration_seconds_count{code="499",lifecycle="",method="GET",route="` + path + `"} 1`
		if !strings.Contains(metrics, want) {
			var got []string
			for _, line := range strings.Split(metrics, "\n") {
				if strings.Contains(line, `route="`+path+`"`) && strings.HasPrefix(line, "shop_http_request_duration_seconds_count") {
					got = append(got, line)
				}
			}
			t.Errorf("metrics lack %s; have %v", want, got)
		}
		if !strings.Contains(logs, `"route":"`+path+`","path":"`+path+`","status":499`) {
			t.Errorf("the access log does not record GET %s as 499:\n%s", path, logs)
		}
	}
	if strings.Contains(logs, `"level":"ERROR"`) || strings.Contains(logs, `"level":"WARN"`) {
		t.Errorf("a client gone is logged above INFO:\n%s", logs)
	}
}
