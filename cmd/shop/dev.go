package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/shopflow/shopflow/cmd/shop/devstate"
	"github.com/shopflow/shopflow/cmd/shop/seed"
	"github.com/shopflow/shopflow/cmd/shop/suite"
	"github.com/shopflow/shopflow/pkg/platform/logging"
	"github.com/shopflow/shopflow/pkg/platform/service"
)

// cmdDev runs the whole suite on the embedded defaults (make run).
func cmdDev(ctx context.Context, args []string, stdout, stderr io.Writer, _ *slog.Logger) error {
	fs := flag.NewFlagSet("shop dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", ".data", "directory for the suite's persistent state (broker, private PostgreSQL, log)")
	kafkaAddr := fs.String("kafka-addr", "127.0.0.1:9092", "embedded broker address")
	pgMode := fs.String("postgres", "auto", "auto (DATABASE_URL, else the local server, else a private cluster), local, or private")
	pgPort := fs.Int("pg-port", 5433, "port of the private PostgreSQL cluster, when one is started")
	adminToken := fs.String("admin-token", envOr("ADMIN_TOKEN", wellKnownToken),
		"ADMIN_TOKEN of the order and inventory services (a random one instead of "+wellKnownToken+" when a service listens beyond this machine)")
	noSeed := fs.Bool("no-seed", false, "do not load the demo catalog and stock")
	logLevel := fs.String("log-level", "info", "level of the log file (the terminal shows warnings and errors)")
	httpAddrs := map[string]*string{}
	for _, name := range suite.Names {
		// This machine only, by default: the customer API has no
		// authentication (anyone who reaches it reads every order and
		// address) and the admin token has a well-known default. The
		// service's own default (":8080": every interface) is one flag
		// away for a deliberate choice.
		httpAddrs[name] = fs.String(name+"-addr", "127.0.0.1"+suite.DefaultHTTPAddrs[name],
			"HTTP address of the "+name+" service (\""+suite.DefaultHTTPAddrs[name]+"\": every interface)")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("dev: unexpected argument %q", fs.Arg(0))
	}
	// Every flag is checked before anything is created or started.
	flagAddrs := map[string]string{"--kafka-addr": *kafkaAddr}
	for name, a := range httpAddrs {
		flagAddrs["--"+name+"-addr"] = *a
	}
	if err := malformedAddr(flagAddrs); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	if err := sharedAddr(flagAddrs); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	token, exposed := devAdminToken(*adminToken, httpAddrs)
	mode := suite.PostgresMode(*pgMode)
	if mode != suite.PostgresAuto && mode != suite.PostgresLocal && mode != suite.PostgresPrivate {
		return fmt.Errorf("dev: --postgres %q: want auto, local or private", *pgMode)
	}
	// logging.New's error names LOG_LEVEL, which is not what was set.
	if _, err := logging.ParseLevel(*logLevel); err != nil {
		return fmt.Errorf("dev: --log-level: %w", err)
	}
	if err := os.MkdirAll(*dataDir, 0o755); err != nil {
		return fmt.Errorf("dev: --data-dir %s: %w", *dataDir, withoutPath(err, *dataDir))
	}
	// Held until shop dev ends: the other commands tell by it that this
	// suite runs, and a second shop dev keeps off its data.
	lock, err := devstate.Acquire(*dataDir)
	if err != nil {
		if _, ok := errors.AsType[*devstate.RunningError](err); ok {
			return fmt.Errorf("dev: %w: stop it first, or give this one a --data-dir of its own", err)
		}
		return fmt.Errorf("dev: --data-dir %s: %w", *dataDir, err)
	}
	defer lock.Release()
	logPath := filepath.Join(*dataDir, "dev.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("dev: --data-dir %s: %w", *dataDir, err)
	}
	defer logFile.Close()
	fileLog, err := logging.New(logFile, *logLevel)
	if err != nil {
		return fmt.Errorf("dev: --log-level: %w", err)
	}
	log := slog.New(slog.NewMultiHandler(fileLog.Handler(),
		slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))

	pg, err := suite.ResolvePostgres(ctx, mode, filepath.Join(*dataDir, "postgres"), *pgPort, log)
	if err != nil {
		return err
	}
	defer pg.Stop()

	addrs := map[string]string{}
	for name, a := range httpAddrs {
		addrs[name] = *a
	}
	ctx, stopSuite := context.WithCancel(ctx)
	defer stopSuite()
	s, err := suite.Start(ctx, suite.Options{
		DatabaseURL: pg.URL, KafkaAddr: *kafkaAddr, KafkaDataDir: filepath.Join(*dataDir, "kafka"),
		HTTPAddrs: addrs, AdminToken: token, Log: log,
	})
	if err != nil {
		if ae, ok := errors.AsType[*suite.AddrError](err); ok {
			opt := "--" + ae.Name + "-addr"
			if ae.Name == "broker" {
				opt = "--kafka-addr"
			}
			if errors.Is(ae, syscall.EADDRINUSE) {
				return fmt.Errorf("dev: %w; stop the program using it, or choose another address with %s", ae, opt)
			}
			// Not this machine's address, say, or a host that does not resolve.
			return fmt.Errorf("dev: %s: %w", opt, ae)
		}
		return err
	}
	// What shop check, dlq, seed and load use unless told otherwise.
	state := devstate.State{PID: os.Getpid(), StartedAt: time.Now().UTC(), Postgres: pg.Source, Database: suite.MaskDatabaseURL(pg.URL),
		KafkaBrokers: s.Brokers, KafkaTopicPrefix: s.TopicPrefix(), URLs: s.URLs, WellKnownAdminToken: token == wellKnownToken}
	if pg.Source != suite.SourceDatabaseURL {
		// Built by shop dev, without a password (trust authentication):
		// DATABASE_URL's may carry one, and stays out of the file.
		state.DatabaseURL = pg.URL
	}
	if err := lock.Publish(state); err != nil {
		stopSuite()
		return errors.Join(fmt.Errorf("dev: %w", err), ignoreCanceled(s.Wait()))
	}
	statePath := filepath.Join(*dataDir, devstate.StateFile)
	if exposed != "" {
		fmt.Fprintf(stderr, "shop dev: %s listens beyond this machine, so the services have a random admin token "+
			"instead of the well-known %s (shown below; --admin-token or ADMIN_TOKEN sets one of your own)\n", exposed, wellKnownToken)
	}
	fmt.Fprintf(stdout, "shopflow dev\n  postgres:   %s\n  kafka:      %s (data in %s)\n", pg.Desc, s.Brokers[0], filepath.Join(*dataDir, "kafka"))
	for _, name := range suite.Names {
		fmt.Fprintf(stdout, "  %-11s %s\n", name+":", s.URLs[name])
	}
	if !*noSeed {
		res, err := seed.Seed(ctx, s.URLs["order"], s.URLs["inventory"], token, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "shop dev: seeding failed: %v\n", err)
		} else {
			fmt.Fprintf(stdout, "  seeded:     %d products added, %d already in the catalog; stock set for %d SKUs, %d already stocked\n",
				res.Products, res.ProductsPresent, res.StockSet, res.StockPresent)
		}
	}
	fmt.Fprintf(stdout, "  admin token: %s\n  log:        %s\n  state:      %s (shop check, dlq, seed and load use this suite)\n"+
		"Try: curl %s/v1/products\nCtrl-C stops everything.\n", token, logPath, statePath, s.URLs["order"])

	<-ctx.Done()
	// The suite is going: no command is to take it for a running one.
	lock.Withdraw()
	// A second Ctrl-C forces the services' stop (service.Signals): they
	// skip their drain and their shutdown's waits, and the broker and a
	// private PostgreSQL are then closed as after a graceful stop. What
	// the services left undone waits for the next start, as after a
	// crash.
	fmt.Fprintln(stdout, "stopping (Ctrl-C again to force)")
	err = ignoreCanceled(s.Wait())
	if service.Forced(ctx) {
		return &interrupted{"dev: stop forced: the services' shutdown was cut short; data kept in " + *dataDir}
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "stopped; data kept in", *dataDir)
	return nil
}

// ignoreCanceled returns err unless it is the end of the context a
// stop asked for.
func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// wellKnownToken is shop dev's (and compose's, and shop seed's) default
// admin token: anyone who read the README knows it.
const wellKnownToken = "dev-admin-token"

// devAdminToken is the admin token shop dev gives the services: token,
// unless it is the well-known one and a service listens beyond this
// machine (flag → address; a wildcard, another interface, a host name
// other than localhost), where anyone who can reach it could use it. A
// random token replaces it then, and exposed names the first such flag
// and its address ("" when none does).
func devAdminToken(token string, addrs map[string]*string) (_ string, exposed string) {
	if token != wellKnownToken {
		return token, ""
	}
	for _, name := range suite.Names {
		if a := addrs[name]; a != nil && !suite.LoopbackOnly(*a) {
			return rand.Text(), "--" + name + "-addr " + *a
		}
	}
	return token, ""
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// malformedAddr reports the first flag (flag → address, in flag order)
// whose address is not host:port with a port number (0: any free port),
// before anything starts: the suite's listen used to fail with net's
// words ("listen on garbage: ... missing port in address") and no flag,
// and a service's configuration, later, rejected a port name or an
// empty port naming HTTP_ADDR.
func malformedAddr(addrs map[string]string) error {
	for _, f := range slices.Sorted(maps.Keys(addrs)) {
		_, port, err := net.SplitHostPort(addrs[f])
		if n, perr := strconv.Atoi(port); err == nil && (perr != nil || n < 0 || n > 65535) {
			err = errors.New("bad port")
		}
		if err != nil {
			return fmt.Errorf("%s %q: want host:port, such as 127.0.0.1:8080 (port 0: any free port)", f, addrs[f])
		}
	}
	return nil
}

// withoutPath returns err without the path of its *os.PathError when
// that is path itself, which the message names already ("mkdir DIR: not
// a directory" becomes "not a directory").
func withoutPath(err error, path string) error {
	if pe, ok := errors.AsType[*os.PathError](err); ok && filepath.Clean(pe.Path) == filepath.Clean(path) {
		return pe.Err
	}
	return err
}

// sharedAddr reports two flags (flag → address) that name the same port
// on overlapping interfaces, so that one could not listen: otherwise the
// second service's bind failed with "address already in use; stop the
// program using it", though no other program used it. Port 0 (any free
// port) is never shared.
func sharedAddr(addrs map[string]string) error {
	flags := slices.Sorted(maps.Keys(addrs))
	wildcard := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	for i, f := range flags {
		h1, p1, err := net.SplitHostPort(addrs[f])
		if err != nil || p1 == "0" {
			continue // malformedAddr reports a malformed address
		}
		for _, g := range flags[i+1:] {
			h2, p2, err := net.SplitHostPort(addrs[g])
			if err == nil && p1 == p2 && (h1 == h2 || wildcard(h1) || wildcard(h2)) {
				return fmt.Errorf("%s %s and %s %s share a port: give each its own", f, addrs[f], g, addrs[g])
			}
		}
	}
	return nil
}
