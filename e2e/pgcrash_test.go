package e2e

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shopflow/shopflow/cmd/shop/load"
	"github.com/shopflow/shopflow/cmd/shop/seed"
	"github.com/shopflow/shopflow/cmd/shop/suite"
	"github.com/shopflow/shopflow/cmd/shop/suite/suitetest"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// TestPostgresCrash: PostgreSQL is a process that can die too. The suite
// runs on a private PostgreSQL cluster of its own (the one `make run`
// starts when no server answers) and, while a load places and settles
// orders, the cluster's postmaster is SIGKILLed and restarted, so every
// connection breaks and the server recovers from its WAL. Placements
// during the outage are refused and retried with the same
// Idempotency-Key; consumers, relays and the order service reconnect.
// Afterwards every order has settled with the outcome its kind calls
// for, and shop check finds no double charge, reservation or shipment
// and stock conserved.
//
// It needs PostgreSQL's server programs (initdb, pg_ctl), as make run's
// private cluster does; without them it fails saying so.
func TestPostgresCrash(t *testing.T) {
	t.Parallel()
	dir := clusterDir(t)
	port := clusterPort(t)
	var logBuf testenv.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	pg, err := suite.ResolvePostgres(ctx, suite.PostgresPrivate, dir, port, log)
	if err != nil {
		t.Fatalf("this test runs its own PostgreSQL cluster (it kills it): %v", err)
	}
	t.Cleanup(func() { pg.Stop() })

	// Registered before the suite starts, so it runs after the suite has
	// stopped (cleanups run last-in first-out).
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- suite warnings and errors (last lines):\n%s", lastLines(logBuf.String(), 40))
			t.Logf("--- PostgreSQL log (last lines):\n%s", tail(filepath.Join(dir, "server.log"), 30))
		}
	})
	const token = "pg-crash-admin-token"
	s := suitetest.Start(t, ctx, suite.Options{DatabaseURL: pg.URL, AdminToken: token, Log: log})
	if _, err := seed.Seed(ctx, s.URLs["order"], s.URLs["inventory"], token, nil); err != nil {
		t.Fatal(err)
	}

	// 400 orders at 50/s: the kill lands while orders are being placed,
	// with others in every stage of their saga.
	type loadResult struct {
		rep *load.Report
		err error
	}
	loaded := make(chan loadResult, 1)
	go func() {
		rep, err := load.Run(ctx, load.Options{OrderURL: s.URLs["order"], Orders: 400, Concurrency: 8, Rate: 50,
			RetryFor: 90 * time.Second, SettleTimeout: 100 * time.Second})
		loaded <- loadResult{rep, err}
	}()

	if !sleepCtx(ctx, 3*time.Second) {
		t.Fatal("timed out before the kill")
	}
	pid := postmasterPID(t, dir)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL the postmaster (pid %d): %v", pid, err)
	}
	killedAt := time.Now()
	// Down for two seconds, then started again on the same directory and
	// port once the old server's processes have let go of it.
	sleepCtx(ctx, 2*time.Second)
	for {
		pg2, err := suite.ResolvePostgres(ctx, suite.PostgresPrivate, dir, port, log)
		if err == nil {
			pg = pg2
			break
		}
		if time.Since(killedAt) > 30*time.Second || ctx.Err() != nil {
			t.Fatalf("restart PostgreSQL after the kill: %v", err)
		}
		sleepCtx(ctx, 500*time.Millisecond)
	}
	t.Logf("postmaster %d SIGKILLed; PostgreSQL answering again after %.1fs", pid, time.Since(killedAt).Seconds())

	res := <-loaded
	if res.err != nil {
		t.Fatalf("load: %v", res.err)
	}
	if res.rep.Retries == 0 {
		t.Errorf("no placement was retried: the kill missed the load")
	}
	wantSettledAndChecked(ctx, t, res.rep, pg.URL)
}

// clusterDir is a fresh directory for a private cluster, reachable by
// the user the cluster runs as (postgres, when the test runs as root):
// Go creates test directories private, so open up the test's own ones.
func clusterDir(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	tmp := filepath.Clean(os.TempDir())
	for d := base; len(d) > len(tmp) && filepath.Dir(d) != d; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(base, "postgres")
}

// clusterPort is a free port for the cluster below the range the kernel
// picks local ports of outgoing connections from: while PostgreSQL is
// down, this process's reconnects (and other tests') could otherwise take
// its port as theirs, and the restart could not listen on it.
func clusterPort(t *testing.T) int {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	for range 100 {
		port := 10000 + rand.IntN(max(low-10000, 1))
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no free port below the ephemeral range")
	return 0
}

// postmasterPID reads the running cluster's postmaster.pid.
func postmasterPID(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		t.Fatalf("postmaster.pid: %q", first)
	}
	return pid
}

func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}
