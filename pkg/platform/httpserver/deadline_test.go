package httpserver

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
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
