package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shopflow/shopflow/cmd/shop/devstate"
	"github.com/shopflow/shopflow/cmd/shop/seed"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// TestMain lets a test run this package's main as a program of its own:
// the test binary, started with SHOP_TEST_RUN_MAIN=1, is shop.
func TestMain(m *testing.M) {
	if os.Getenv("SHOP_TEST_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// devProc is a `shop dev` the test started as a program.
type devProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	out    testenv.SyncBuffer // stdout so far
	errOut testenv.SyncBuffer // stderr so far
	lines  chan string
	exited chan error
}

func startDev(t *testing.T, dbURL string, args ...string) *devProc {
	t.Helper()
	return startDevEnv(t, nil, dbURL, args...)
}

// startDevEnv is startDev with env added to the program's environment.
func startDevEnv(t *testing.T, env []string, dbURL string, args ...string) *devProc {
	t.Helper()
	d := &devProc{t: t, lines: make(chan string, 100), exited: make(chan error, 1)}
	d.cmd = exec.Command(os.Args[0], append([]string{"dev"}, args...)...)
	d.cmd.Env = append(append(os.Environ(), "SHOP_TEST_RUN_MAIN=1", "DATABASE_URL="+dbURL), env...)
	d.cmd.Stderr = &d.errOut
	stdout, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.cmd.Process.Kill() }) //nolint:errcheck // gone already, usually
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			d.out.Write([]byte(sc.Text() + "\n")) //nolint:errcheck // a buffer's Write does not fail
			select {
			case d.lines <- sc.Text():
			default:
			}
		}
		d.exited <- d.cmd.Wait()
	}()
	return d
}

func (d *devProc) output() (stdout, stderr string) {
	return d.out.String(), d.errOut.String()
}

// ready waits for the banner's last line and returns the banner.
func (d *devProc) ready() string {
	d.t.Helper()
	deadline := time.After(2 * time.Minute)
	for {
		select {
		case l := <-d.lines:
			if l == "Ctrl-C stops everything." {
				out, _ := d.output()
				return out
			}
		case err := <-d.exited:
			out, errOut := d.output()
			d.t.Fatalf("shop dev exited before it was ready: %v\n%s%s", err, out, errOut)
		case <-deadline:
			out, errOut := d.output()
			d.t.Fatalf("shop dev not ready after 2 minutes\n%s%s", out, errOut)
		}
	}
}

// interrupt sends one SIGINT (Ctrl-C) and waits for the program to end.
func (d *devProc) interrupt() error {
	d.t.Helper()
	return d.signal(os.Interrupt)
}

// signal sends sig and waits for the program to end.
func (d *devProc) signal(sig os.Signal) error {
	d.t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.t.Fatal(err)
	}
	select {
	case err := <-d.exited:
		return err
	case <-time.After(time.Minute):
		out, errOut := d.output()
		d.t.Fatalf("shop dev still running a minute after %v\n%s%s", sig, out, errOut)
		return nil
	}
}

// bannerURL reads a service's URL off the banner ("  order:      http://...").
func bannerURL(t *testing.T, banner, name string) string {
	t.Helper()
	for l := range strings.Lines(banner) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), name+":"); ok {
			return strings.TrimSpace(rest)
		}
	}
	t.Fatalf("banner has no %s URL:\n%s", name, banner)
	return ""
}

// TestDevStopsAndResumes runs `shop dev` (what make run runs) as a
// program: it starts the broker and the services, seeds, prints the URLs;
// an order placed through it is confirmed; one Ctrl-C stops everything
// and exits 0; a second start resumes with the data kept (the order, the
// broker's topics and offsets, the stock, which the seed leaves alone).
func TestDevStopsAndResumes(t *testing.T) {
	t.Parallel()
	dbURL := testenv.DatabaseURL(t)
	dataDir := t.TempDir()
	args := []string{"--data-dir", dataDir, "--kafka-addr", testenv.FreeAddr(t), "--order-addr", "127.0.0.1:0",
		"--payment-addr", "127.0.0.1:0", "--inventory-addr", "127.0.0.1:0", "--shipping-addr", "127.0.0.1:0"}

	first := startDev(t, dbURL, args...)
	banner := first.ready()
	n := len(seed.Catalog)
	if !strings.Contains(banner, fmt.Sprintf("seeded:     %d products added, 0 already in the catalog; stock set for %d SKUs, 0 already stocked", n, n)) {
		t.Errorf("first start's banner does not report the seed:\n%s", banner)
	}
	orderURL := bannerURL(t, banner, "order")
	// Its services answer for this machine's names only: a page whose
	// name its DNS rebinds to 127.0.0.1 gets nothing from them, a probe
	// of /healthz by address does.
	for _, c := range []struct {
		service, path, host string
		want                int
	}{
		{"order", "/v1/products", "rebound.example", http.StatusMisdirectedRequest},
		{"inventory", "/v1/stock/SKU-0001", "rebound.example", http.StatusMisdirectedRequest},
		{"order", "/v1/products", "localhost", http.StatusOK},
		{"order", "/healthz", "rebound.example", http.StatusOK},
	} {
		if got := statusFor(t, bannerURL(t, banner, c.service)+c.path, c.host); got != c.want {
			t.Errorf("GET %s %s with Host %s: %d; want %d", c.service, c.path, c.host, got, c.want)
		}
	}
	id := placeAndSettle(t, orderURL)
	// An admin's price change outlives a restart (whose seed used to
	// put the demo price back).
	p := seed.Catalog[4]
	req, _ := http.NewRequest("PUT", orderURL+"/v1/products/"+p.SKU,
		strings.NewReader(fmt.Sprintf(`{"name":%q,"price_cents":%d,"currency":%q}`, p.Name, p.PriceCents+200, p.Currency)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer dev-admin-token")
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("PUT %s: %v %v", p.SKU, res, err)
	} else {
		res.Body.Close()
	}

	if err := first.interrupt(); err != nil {
		out, errOut := first.output()
		t.Fatalf("shop dev after one Ctrl-C: %v, want exit status 0\n%s%s", err, out, errOut)
	}
	out, errOut := first.output()
	for _, want := range []string{"stopping (Ctrl-C again to force)", "stopped; data kept in " + dataDir} {
		if !strings.Contains(out, want) {
			t.Errorf("output after Ctrl-C lacks %q:\n%s", want, out)
		}
	}
	// The terminal shows warnings too (kafka-go's, during a group join on
	// a slow machine, say); errors have no place in a clean run.
	if strings.Contains(errOut, "level=ERROR") {
		t.Errorf("errors on the terminal during a clean run:\n%s", errOut)
	}

	// Each line of the log names its service once (it had every
	// service's "service" twice), and each service said it was starting.
	logText, err := os.ReadFile(filepath.Join(dataDir, "dev.log"))
	if err != nil {
		t.Fatal(err)
	}
	starting := 0
	for line := range strings.Lines(string(logText)) {
		if n := strings.Count(line, `"service":`); n > 1 {
			t.Errorf("a dev.log line names its service %d times: %s", n, line)
			break
		}
		if strings.Contains(line, `"msg":"starting","service":`) {
			starting++
		}
	}
	if starting != 4 {
		t.Errorf("%d services logged \"starting\" with their name, want 4", starting)
	}

	second := startDev(t, dbURL, args...)
	banner = second.ready()
	if !strings.Contains(banner, fmt.Sprintf("0 products added, %d already in the catalog; stock set for 0 SKUs, %d already stocked", n, n)) {
		t.Errorf("second start's banner: want the catalog and the stock left as they were:\n%s", banner)
	}
	res, err := http.Get(bannerURL(t, banner, "order") + "/v1/products")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if want := fmt.Sprintf(`"sku":%q,"name":%q,"price_cents":%d`, p.SKU, p.Name, p.PriceCents+200); !strings.Contains(string(body), want) {
		t.Errorf("after the restart the catalog lacks the admin's price (%s):\n%s", want, body)
	}
	if status := orderStatus(t, bannerURL(t, banner, "order"), id); status != "confirmed" {
		t.Errorf("order %s after the restart: %q, want confirmed", id, status)
	}
	if err := second.interrupt(); err != nil {
		t.Fatalf("second shop dev after Ctrl-C: %v", err)
	}
}

// TestDevHangupStops: a closed terminal's SIGHUP stops shop dev as
// Ctrl-C does: the services and the broker closed, its record of the
// suite removed, exit status 0. It used to kill the process outright
// (SIGHUP's default action), leaving dev.json behind (every shop command
// then refused to run until the next shop dev) and a private PostgreSQL
// running.
func TestDevHangupStops(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	d := startDev(t, testenv.DatabaseURL(t), "--data-dir", dataDir, "--no-seed",
		"--kafka-addr", testenv.FreeAddr(t), "--order-addr", "127.0.0.1:0", "--payment-addr", "127.0.0.1:0",
		"--inventory-addr", "127.0.0.1:0", "--shipping-addr", "127.0.0.1:0")
	d.ready()
	if _, err := os.Stat(filepath.Join(dataDir, devstate.StateFile)); err != nil {
		t.Fatalf("shop dev running: %v", err)
	}
	// A closing terminal sends two (the shell passes one on, the kernel
	// sends another): the second must not force the stop.
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	err := d.signal(syscall.SIGHUP)
	out, errOut := d.output()
	if err != nil {
		t.Fatalf("shop dev after SIGHUP: %v; want exit status 0\n%s%s", err, out, errOut)
	}
	if !strings.Contains(out, "stopped; data kept in "+dataDir) {
		t.Errorf("stdout lacks the graceful stop's last line:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dataDir, devstate.StateFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s after SIGHUP: %v; want it removed", devstate.StateFile, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dataDir, "dev.log")); !strings.Contains(string(b), `"msg":"embedded broker closed`) {
		t.Errorf("dev.log does not say the broker was closed")
	}
}

// TestDevSecondCtrlCForces: a second Ctrl-C forces shop dev's stop. With
// SHUTDOWN_DRAIN_DELAY set, the first leaves the services draining; the
// second cuts that short: each service says its stop was forced, the
// broker is closed, and shop dev exits within seconds with status 130,
// saying so. It used to die of the signal there, saying nothing and
// closing nothing (a private PostgreSQL was left running), and a
// supervisor's second SIGTERM did the same.
func TestDevSecondCtrlCForces(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	d := startDevEnv(t, []string{"SHUTDOWN_DRAIN_DELAY=5m"}, testenv.DatabaseURL(t), "--data-dir", dataDir, "--no-seed",
		"--kafka-addr", testenv.FreeAddr(t), "--order-addr", "127.0.0.1:0", "--payment-addr", "127.0.0.1:0",
		"--inventory-addr", "127.0.0.1:0", "--shipping-addr", "127.0.0.1:0")
	d.ready()
	logged := func(msg string) int {
		b, _ := os.ReadFile(filepath.Join(dataDir, "dev.log"))
		return strings.Count(string(b), `"msg":"`+msg)
	}
	if err := d.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the four services draining after the first Ctrl-C", func() bool {
		return logged("draining: ") == 4
	})
	if err := d.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	select {
	case err := <-d.exited:
		took := time.Since(began)
		out, errOut := d.output()
		exit, _ := errors.AsType[*exec.ExitError](err)
		if exit == nil || exit.ExitCode() != 130 || took > 15*time.Second {
			t.Errorf("shop dev ended %s after the second Ctrl-C: %v; want exit status 130 within 15 s\n%s%s",
				took.Round(time.Millisecond), err, out, errOut)
		}
		if want := "shop: dev: stop forced: the services' shutdown was cut short; data kept in " + dataDir; !strings.Contains(errOut, want) {
			t.Errorf("the terminal lacks %q:\n%s", want, errOut)
		}
		if n := logged("stop forced by a second signal"); n != 4 {
			t.Errorf("%d services logged that their stop was forced, want 4", n)
		}
		if logged("embedded broker closed") != 1 {
			t.Errorf("dev.log does not say the broker was closed")
		}
	case <-time.After(time.Minute):
		out, errOut := d.output()
		t.Fatalf("shop dev still running a minute after the second Ctrl-C, with SHUTDOWN_DRAIN_DELAY 5m\n%s%s", out, errOut)
	}
}

// TestDevTakenPort: an address in use stops `shop dev` at once with one
// line naming the service, the address and the flag that moves it, and
// exit status 2; nothing is left running.
func TestDevTakenPort(t *testing.T) {
	t.Parallel()
	dbURL := testenv.DatabaseURL(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	kafkaAddr := testenv.FreeAddr(t)
	d := startDev(t, dbURL, "--data-dir", t.TempDir(), "--kafka-addr", kafkaAddr, "--order-addr", "127.0.0.1:0",
		"--payment-addr", taken.Addr().String(), "--inventory-addr", "127.0.0.1:0", "--shipping-addr", "127.0.0.1:0")
	var err2 error
	select {
	case err2 = <-d.exited:
	case <-time.After(time.Minute):
		t.Fatal("shop dev still running a minute after failing to listen")
	}
	_, errOut := d.output()
	var exit *exec.ExitError
	if !errors.As(err2, &exit) || exit.ExitCode() != 2 {
		t.Errorf("exit: %v, want status 2", err2)
	}
	want := "shop: dev: payment cannot listen on " + taken.Addr().String() + ": bind: address already in use; " +
		"stop the program using it, or choose another address with --payment-addr"
	if strings.TrimSpace(errOut) != want {
		t.Errorf("stderr:\n%s\nwant the one line:\n%s", errOut, want)
	}
	// Nothing was started: the broker's address is free.
	l, err := net.Listen("tcp", kafkaAddr)
	if err != nil {
		t.Errorf("the broker's address after the failed start: %v", err)
	} else {
		l.Close()
	}
}

// TestDevSharedPort: two flags naming one port stop `shop dev` before
// anything starts, naming both (it said the second service's port was in
// use by another program).
func TestDevSharedPort(t *testing.T) {
	var stdout, stderr strings.Builder
	for _, args := range [][]string{
		{"--order-addr", "127.0.0.1:18190", "--payment-addr", "127.0.0.1:18190"},
		{"--order-addr", ":18190", "--payment-addr", "127.0.0.1:18190"},
		{"--kafka-addr", "[::]:18190", "--shipping-addr", "127.0.0.1:18190"},
	} {
		err := cmdDev(context.Background(), append(args, "--data-dir", t.TempDir()), &stdout, &stderr, nil)
		if err == nil || !strings.Contains(err.Error(), "share a port: give each its own") ||
			!strings.Contains(err.Error(), args[0]+" "+args[1]) || !strings.Contains(err.Error(), args[2]+" "+args[3]) {
			t.Errorf("shop dev %q: %v, want an error naming both flags", args, err)
		}
	}
	for _, ok := range [][2]string{{"127.0.0.1:0", "127.0.0.1:0"}, {"127.0.0.1:18190", "127.0.0.2:18190"}} {
		if err := sharedAddr(map[string]string{"--order-addr": ok[0], "--payment-addr": ok[1]}); err != nil {
			t.Errorf("%q: %v, want none", ok, err)
		}
	}
}

// TestDevBadFlags: a malformed address, an unknown log level or a data
// directory that cannot be one stops shop dev before it creates or starts
// anything, with an error (exit status 2) naming the flag. They said
// "suite: order: listen on garbage: ... missing port in address" (once
// PostgreSQL was resolved), "--log-level: logging: LOG_LEVEL: ..." (a
// variable nobody set) and "mkdir DIR: not a directory".
func TestDevBadFlags(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "afile")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--order-addr", "garbage"}, `dev: --order-addr "garbage": want host:port, such as 127.0.0.1:8080 (port 0: any free port)`},
		{[]string{"--kafka-addr", "127.0.0.1:99999"}, `dev: --kafka-addr "127.0.0.1:99999": want host:port`},
		{[]string{"--shipping-addr", "127.0.0.1:"}, `dev: --shipping-addr "127.0.0.1:": want host:port`},
		{[]string{"--payment-addr", "127.0.0.1:http"}, `dev: --payment-addr "127.0.0.1:http": want host:port`},
		{[]string{"--log-level", "bogus"}, `dev: --log-level: "bogus" is not one of debug, info, warn, error`},
		{[]string{"--data-dir", file}, "dev: --data-dir " + file + ": not a directory"},
		{[]string{"--data-dir", filepath.Join(file, "sub")}, "dev: --data-dir " + filepath.Join(file, "sub") + ": mkdir " + file + ": not a directory"},
	} {
		args := tc.args
		dataDir := filepath.Join(t.TempDir(), "data")
		if args[0] != "--data-dir" {
			args = append(args, "--data-dir", dataDir)
		}
		var out, errOut bytes.Buffer
		err := cmdDev(context.Background(), args, &out, &errOut, nil)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("shop dev %q: %v, want %s", args, err, tc.want)
		}
		if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("shop dev %q: the data directory was created (%v), want nothing done", args, err)
		}
	}
}

// TestDevAddrNotListenable: an address the suite cannot listen on for
// another reason than its being taken (not this machine's) stops shop dev
// naming the flag (it said "suite: order: listen on ...").
func TestDevAddrNotListenable(t *testing.T) {
	t.Parallel()
	dbURL := testenv.DatabaseURL(t)
	d := startDev(t, dbURL, "--data-dir", t.TempDir(), "--kafka-addr", testenv.FreeAddr(t), "--order-addr", "192.0.2.1:0",
		"--payment-addr", "127.0.0.1:0", "--inventory-addr", "127.0.0.1:0", "--shipping-addr", "127.0.0.1:0")
	var err error
	select {
	case err = <-d.exited:
	case <-time.After(time.Minute):
		t.Fatal("shop dev still running a minute after failing to listen")
	}
	_, errOut := d.output()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Errorf("exit: %v, want status 2", err)
	}
	if want := "shop: dev: --order-addr: order cannot listen on 192.0.2.1:0: bind: "; !strings.HasPrefix(strings.TrimSpace(errOut), want) {
		t.Errorf("stderr:\n%s\nwant a line starting %q", errOut, want)
	}
}

func placeAndSettle(t *testing.T, orderURL string) string {
	t.Helper()
	body := `{"customer_id":"cust-dev","currency":"USD","items":[{"sku":"SKU-0001","quantity":2}],"payment":{"card_token":"tok_visa"},` +
		`"shipping_address":{"name":"Ada Lovelace","line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}}`
	req, _ := http.NewRequest("POST", orderURL+"/v1/orders", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "dev-test-1")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var o struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(res.Body).Decode(&o); err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("place order: %d, %v", res.StatusCode, err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		status := orderStatus(t, orderURL, o.ID)
		if status == "confirmed" {
			return o.ID
		}
		if status != "pending" || time.Now().After(deadline) {
			t.Fatalf("order %s: %q, want confirmed within a minute", o.ID, status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func orderStatus(t *testing.T, orderURL, id string) string {
	t.Helper()
	res, err := http.Get(fmt.Sprintf("%s/v1/orders/%s", orderURL, id))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var o struct {
		Status string `json:"status"`
	}
	if err := json.NewDecoder(res.Body).Decode(&o); err != nil {
		t.Fatalf("GET order %s: %d, %v", id, res.StatusCode, err)
	}
	return o.Status
}

// statusFor is the status of GET url sent with Host host.
func statusFor(t *testing.T, url, host string) int {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s (Host %s): %v", url, host, err)
	}
	res.Body.Close()
	return res.StatusCode
}

// TestDevListensOnLoopback: shop dev's services listen on this machine
// only unless told otherwise (the customer API has no authentication and
// the admin token a well-known default), as compose binds its ports.
func TestDevListensOnLoopback(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"dev", "-h"}, &out, &errOut); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("shop dev -h = %v", err)
	}
	for name, port := range map[string]string{"order": "8080", "payment": "8081", "inventory": "8082", "shipping": "8083"} {
		if want := fmt.Sprintf("-%s-addr string\n    \tHTTP address of the %s service (\":%s\": every interface) (default \"127.0.0.1:%s\")", name, name, port, port); !strings.Contains(errOut.String(), want) {
			t.Errorf("shop dev -h does not show %q:\n%s", want, errOut.String())
		}
	}
}
