package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shopflow/shopflow/cmd/shop/devstate"
	"github.com/shopflow/shopflow/cmd/shop/seed"
	"github.com/shopflow/shopflow/cmd/shop/suite"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// shopIn runs shop with args as a program (see TestMain) in directory
// dir, as a user would from a shell with none of the variables that name
// a suite set, and returns its stdout, stderr and exit error.
func shopIn(t *testing.T, dir string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Dir = dir
	cmd.Env = []string{"SHOP_TEST_RUN_MAIN=1"}
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains([]string{"DATABASE_URL", "KAFKA_BROKERS", "KAFKA_TOPIC_PREFIX", "ADMIN_TOKEN", "SHOP_TEST_RUN_MAIN"}, name) {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

func exitCode(err error) int {
	if exit, ok := errors.AsType[*exec.ExitError](err); ok {
		return exit.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// serviceAddrs are shop dev's flags for every service on a free port.
var serviceAddrs = []string{"--order-addr", "127.0.0.1:0", "--payment-addr", "127.0.0.1:0", "--inventory-addr", "127.0.0.1:0", "--shipping-addr", "127.0.0.1:0"}

// TestCommandsUseThePrivateClusterDev is the trial's case: `make run`
// with no local server runs shop dev on a private cluster under .data;
// an order is placed; then, from the same directory and without a flag,
// as the Quick start gives them, shop check checks that cluster's
// database (it checked the local server's shopflow, a different shop,
// and said OK), shop dlq reads shop dev's broker, shop seed and shop load
// talk to its services, each saying on stderr which suite it took. A
// second shop dev is kept off the data directory; the one running, once
// stopped, leaves no record behind.
func TestCommandsUseThePrivateClusterDev(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	if os.Geteuid() == 0 {
		// The cluster runs as user postgres, which must reach its
		// directory: open up the test's own directories below the
		// system's temporary one.
		tmp := filepath.Clean(os.TempDir())
		for d := base; len(d) > len(tmp) && filepath.Dir(d) != d; d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	dataDir := filepath.Join(base, ".data")
	// Should the test fail before shop dev stops, the cluster it started
	// would outlive it: stop it (registered first, so run last).
	t.Cleanup(func() { stopCluster(t, filepath.Join(dataDir, "postgres")) })
	_, pgPort, _ := net.SplitHostPort(testenv.FreeAddr(t))
	kafkaAddr := testenv.FreeAddr(t)
	d := startDev(t, "", append([]string{"--postgres", "private", "--pg-port", pgPort, "--data-dir", dataDir, "--kafka-addr", kafkaAddr},
		serviceAddrs...)...)
	banner := d.ready()
	pid := d.cmd.Process.Pid
	dbURL := "postgres://postgres@127.0.0.1:" + pgPort + "/shopflow?sslmode=disable"
	for _, want := range []string{
		"\n  postgres:   " + dbURL + " (a private cluster in " + filepath.Join(dataDir, "postgres") + ", stopped with shop dev)\n",
		"\n  state:      " + filepath.Join(dataDir, devstate.StateFile) + " (shop check, dlq, seed and load use this suite)\n",
	} {
		if !strings.Contains(banner, want) {
			t.Errorf("banner lacks %q:\n%s", want, banner)
		}
	}
	orderURL, inventoryURL := bannerURL(t, banner, "order"), bannerURL(t, banner, "inventory")
	placeAndSettle(t, orderURL)
	from := fmt.Sprintf(", from the shop dev (pid %d) running with --data-dir .data\n", pid)

	out, errOut, err := shopIn(t, base, "check", "--wait", "90s")
	if err != nil || !strings.Contains(out, "checked 1 order (1 confirmed)") || !strings.Contains(out, "OK: every invariant holds") {
		t.Errorf("shop check from %s: %v, want the private cluster's one order checked\n%s%s", base, err, out, errOut)
	}
	if want := "shop check: database " + dbURL + from; errOut != want {
		t.Errorf("shop check's stderr:\n%s\nwant the one line:\n%s", errOut, want)
	}

	out, errOut, err = shopIn(t, base, "dlq", "list")
	if err != nil || out != "no dead letters\n" {
		t.Errorf("shop dlq list: %v\n%s%s", err, out, errOut)
	}
	if want := "shop dlq list: broker " + kafkaAddr + from; errOut != want {
		t.Errorf("shop dlq list's stderr:\n%s\nwant the one line:\n%s", errOut, want)
	}

	out, errOut, err = shopIn(t, base, "seed")
	if n := len(seed.Catalog); err != nil ||
		!strings.Contains(out, fmt.Sprintf("seed: 0 products added, %d already in the catalog; stock set for 0 SKUs, %d already stocked", n, n)) {
		t.Errorf("shop seed: %v, want shop dev's services, seeded already\n%s%s", err, out, errOut)
	}
	if want := "shop seed: order " + orderURL + ", inventory " + inventoryURL + from; errOut != want {
		t.Errorf("shop seed's stderr:\n%s\nwant the one line:\n%s", errOut, want)
	}

	out, errOut, err = shopIn(t, base, "load", "--orders", "3", "--concurrency", "1", "--mix", "approve=1")
	if err != nil || !strings.Contains(out, "3 confirmed, 0 cancelled") {
		t.Errorf("shop load: %v, want 3 orders confirmed by shop dev's services\n%s%s", err, out, errOut)
	}
	if want := "shop load: order service " + orderURL + from; !strings.HasPrefix(errOut, want) {
		t.Errorf("shop load's stderr:\n%s\nwant it to start with:\n%s", errOut, want)
	}

	// A second shop dev on the same data is refused before it starts
	// anything (it would have shared the broker's files).
	second := startDev(t, "", append([]string{"--postgres", "private", "--pg-port", pgPort, "--data-dir", dataDir,
		"--kafka-addr", testenv.FreeAddr(t)}, serviceAddrs...)...)
	select {
	case err = <-second.exited:
	case <-time.After(time.Minute):
		t.Fatal("a second shop dev on the same --data-dir still runs after a minute")
	}
	_, errOut = second.output()
	if want := fmt.Sprintf("shop: dev: another shop dev (pid %d) runs with --data-dir %s: stop it first, or give this one a --data-dir of its own", pid, dataDir); exitCode(err) != 2 || strings.TrimSpace(errOut) != want {
		t.Errorf("second shop dev: %v, stderr:\n%s\nwant exit status 2 and the one line:\n%s", err, errOut, want)
	}

	if err := d.interrupt(); err != nil {
		t.Fatalf("shop dev after Ctrl-C: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, devstate.StateFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s after a clean stop: %v, want it removed", devstate.StateFile, err)
	}
	// Without a shop dev the commands are back on their defaults; an
	// explicit --data-dir names one, and is an error without it.
	_, errOut, err = shopIn(t, base, "dlq", "list", "--data-dir", ".data")
	if want := "shop: dlq list: --data-dir .data: no shop dev runs with it (no " + filepath.Join(".data", devstate.StateFile) + "); or say what to use with --brokers or KAFKA_BROKERS"; exitCode(err) != 2 || strings.TrimSpace(errOut) != want {
		t.Errorf("shop dlq list --data-dir .data once shop dev stopped: %v, stderr:\n%s\nwant exit status 2 and:\n%s", err, errOut, want)
	}

	// A shop dev killed outright leaves its record and its cluster
	// running: the commands say how to start it again (make run would
	// take the local server, were one to answer), and the next shop dev
	// restarts the cluster rather than fail in pg_ctl ("another server
	// might be running").
	killed := startDev(t, "", append([]string{"--postgres", "private", "--pg-port", pgPort, "--data-dir", dataDir,
		"--kafka-addr", testenv.FreeAddr(t), "--no-seed"}, serviceAddrs...)...)
	killed.ready()
	if err := killed.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-killed.exited
	_, errOut, err = shopIn(t, base, "check")
	if want := "(it did not stop cleanly; its database: " + dbURL + "): start it again (shop dev --postgres private, for its private cluster)"; exitCode(err) != 2 || !strings.Contains(errOut, want) {
		t.Errorf("shop check after shop dev was killed: %v, stderr:\n%s\nwant exit status 2 and %q", err, errOut, want)
	}
	again := startDev(t, "", append([]string{"--postgres", "private", "--pg-port", pgPort, "--data-dir", dataDir,
		"--kafka-addr", testenv.FreeAddr(t), "--no-seed"}, serviceAddrs...)...)
	banner = again.ready()
	placeAndSettle(t, bannerURL(t, banner, "order"))
	if out, errOut, err := shopIn(t, base, "check", "--wait", "90s"); err != nil || !strings.Contains(out, "checked 4 orders") {
		t.Errorf("shop check once shop dev started again: %v, want the cluster's 4 orders (placeAndSettle's key replays the first)\n%s%s", err, out, errOut)
	}
	if err := again.interrupt(); err != nil {
		t.Fatalf("shop dev after Ctrl-C: %v", err)
	}
}

// stopCluster stops, at once, the PostgreSQL whose data directory is dir
// if it still runs.
func stopCluster(t *testing.T, dir string) {
	b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		return // not running
	}
	line, _, _ := strings.Cut(string(b), "\n")
	if pid, err := strconv.Atoi(strings.TrimSpace(line)); err == nil && pid > 0 {
		t.Logf("stopping the private cluster shop dev left running (pid %d)", pid)
		syscall.Kill(pid, syscall.SIGQUIT) //nolint:errcheck // gone already, maybe
	}
}

// TestCommandsWithADevOnDatabaseURL: a shop dev on DATABASE_URL shows
// that database in its banner (it said only "DATABASE_URL") and keeps its
// URL, which may carry a password, out of its record, so shop check asks
// for the variable rather than guessing. Killed, shop dev leaves its
// record behind: every command then says so and what to do, instead of
// using what it names (a broker, services that are gone) or falling back
// to the defaults, where another suite may answer.
func TestCommandsWithADevOnDatabaseURL(t *testing.T) {
	t.Parallel()
	dbURL := testenv.DatabaseURL(t)
	dataDir := t.TempDir()
	d := startDev(t, dbURL, append([]string{"--data-dir", dataDir, "--kafka-addr", testenv.FreeAddr(t)}, serviceAddrs...)...)
	banner := d.ready()
	pid := d.cmd.Process.Pid
	masked := suite.MaskDatabaseURL(dbURL)
	if want := "\n  postgres:   " + masked + " (DATABASE_URL)\n"; !strings.Contains(banner, want) {
		t.Errorf("banner lacks %q:\n%s", want, banner)
	}
	raw, err := os.ReadFile(filepath.Join(dataDir, devstate.StateFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "database_url") || !strings.Contains(string(raw), `"postgres": "DATABASE_URL"`) {
		t.Errorf("the record holds DATABASE_URL's URL, or does not say it came from DATABASE_URL:\n%s", raw)
	}
	_, errOut, err := shopIn(t, dataDir, "check", "--data-dir", dataDir)
	if want := fmt.Sprintf("shop: check: the shop dev (pid %d) running with --data-dir %s uses the database DATABASE_URL named (%s), "+
		"whose URL it does not record (it may hold a password): set DATABASE_URL as it was set for shop dev, or pass --database-url", pid, dataDir, masked); exitCode(err) != 2 || strings.TrimSpace(errOut) != want {
		t.Errorf("shop check without DATABASE_URL: %v, stderr:\n%s\nwant exit status 2 and:\n%s", err, errOut, want)
	}

	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-d.exited
	for _, c := range []struct {
		name     string
		args     []string
		override string
	}{
		{"check", []string{"check"}, "--database-url or DATABASE_URL"},
		{"dlq list", []string{"dlq", "list"}, "--brokers or KAFKA_BROKERS"},
		{"seed", []string{"seed"}, "--order and --inventory"},
		{"load", []string{"load", "--orders", "1"}, "--order"},
	} {
		_, errOut, err := shopIn(t, dataDir, append(c.args, "--data-dir", dataDir)...)
		stale := fmt.Sprintf("shop: %s: %s was left by a shop dev (pid %d), started ", c.name, filepath.Join(dataDir, devstate.StateFile), pid)
		hint := "that no longer runs (it did not stop cleanly; its database: " + masked + "): start it again (make run), or say what to use with " + c.override +
			"; remove " + filepath.Join(dataDir, devstate.StateFile) + " to use the defaults"
		if exitCode(err) != 2 || !strings.HasPrefix(errOut, stale) || !strings.HasSuffix(strings.TrimSpace(errOut), hint) {
			t.Errorf("shop %s after shop dev was killed: %v, stderr:\n%s\nwant exit status 2 and %q ... %q", c.name, err, errOut, stale, hint)
		}
	}
}

// TestCommandsOnALiveRecord: the record of a shop dev still starting
// (its directory held, nothing published) is an error, not the defaults;
// a shop dev whose services have a token of their own makes shop seed
// ask for it rather than fail on a 401. (The lock belongs to the open
// file, so this process can hold it for a shop dev.)
func TestCommandsOnALiveRecord(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	dir := filepath.Join(base, ".data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := devstate.Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	_, errOut, err := shopIn(t, base, "check")
	if want := fmt.Sprintf("shop: check: the shop dev (pid %d) running with --data-dir .data is starting or stopping: try again once it has printed its banner, or has stopped",
		os.Getpid()); exitCode(err) != 2 || strings.TrimSpace(errOut) != want {
		t.Errorf("check while shop dev starts: %v, stderr:\n%s\nwant exit status 2 and:\n%s", err, errOut, want)
	}
	if err := l.Publish(devstate.State{PID: 4242, StartedAt: time.Now(), Postgres: suite.SourceLocal,
		URLs: map[string]string{"order": "http://127.0.0.1:1", "inventory": "http://127.0.0.1:1"}}); err != nil {
		t.Fatal(err)
	}
	_, errOut, err = shopIn(t, dir, "seed", "--data-dir", dir)
	if want := "shop: seed: the shop dev (pid 4242) running with --data-dir " + dir + " gave the services an admin token of its own " +
		"(its banner shows it): pass --admin-token or set ADMIN_TOKEN"; exitCode(err) != 2 || strings.TrimSpace(errOut) != want {
		t.Errorf("seed of a shop dev with its own token: %v, stderr:\n%s\nwant exit status 2 and:\n%s", err, errOut, want)
	}
}
