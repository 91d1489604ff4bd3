// Package suite runs the whole of shopflow in one process: the embedded
// Kafka-protocol broker (unless brokers are given) and the four services,
// each through its own Run, as `shop dev` and the end-to-end tests need.
//
// Shutdown reverses start-up: when ctx ends every service stops in its own
// fixed order (HTTP intake, consumer, relay flush, pool), and only then
// does the broker close, so the relays' last batches still reach it.
package suite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/shopflow/shopflow/pkg/platform/broker"
	"github.com/shopflow/shopflow/pkg/platform/config"
	"github.com/shopflow/shopflow/pkg/platform/service"
	"github.com/shopflow/shopflow/services/inventory"
	"github.com/shopflow/shopflow/services/order"
	"github.com/shopflow/shopflow/services/payment"
	"github.com/shopflow/shopflow/services/shipping"
)

// Names of the services, in start order.
var Names = []string{"order", "payment", "inventory", "shipping"}

// DefaultHTTPAddrs are the services' own default HTTP addresses, by name.
var DefaultHTTPAddrs = map[string]string{"order": order.DefaultHTTPAddr, "payment": payment.DefaultHTTPAddr,
	"inventory": inventory.DefaultHTTPAddr, "shipping": shipping.DefaultHTTPAddr}

// Options configure a suite. Zero values take the defaults noted. A
// service that listens on loopback only answers only for loopback's names
// (HTTP_ALLOWED_HOSTS from LoopbackHosts), unless Env (or this process's
// environment) sets HTTP_ALLOWED_HOSTS: a page on a name rebound to
// 127.0.0.1 cannot use it.
type Options struct {
	// DatabaseURL is the PostgreSQL every service uses (each its own
	// schema). Required.
	DatabaseURL string
	// KafkaBrokers, if set, are used instead of an embedded broker.
	KafkaBrokers []string
	// KafkaAddr is the embedded broker's address; default 127.0.0.1:9092.
	KafkaAddr string
	// KafkaDataDir persists the embedded broker; empty keeps it in memory.
	KafkaDataDir string
	// HTTPAddrs per service name; default DefaultHTTPAddrs (:8080 order,
	// :8081 payment, :8082 inventory, :8083 shipping). "127.0.0.1:0" picks
	// a free port.
	HTTPAddrs map[string]string
	// AdminToken is ADMIN_TOKEN for order and inventory.
	AdminToken string
	// TopicPrefix is KAFKA_TOPIC_PREFIX for every service.
	TopicPrefix string
	// Env adds variables every service sees (e.g. SHIPPING_TIMEZONE);
	// default: this process's environment.
	Env map[string]string
	// Log receives every service's logs; default discards them.
	Log *slog.Logger
}

// Suite is a running suite.
type Suite struct {
	// URLs of each service's HTTP API by name, e.g. "http://127.0.0.1:8080".
	URLs map[string]string
	// Brokers are the Kafka bootstrap addresses in use.
	Brokers []string

	broker *broker.Broker
	log    *slog.Logger
	done   chan error
	prefix string
}

// TopicPrefix is the KAFKA_TOPIC_PREFIX the services run with.
func (s *Suite) TopicPrefix() string { return s.prefix }

// AddrError says the suite cannot listen on one of its addresses: it is
// taken (another program listens there: errors.Is syscall.EADDRINUSE),
// not this machine's, or its host does not resolve.
type AddrError struct {
	Name string // "broker" or a service name
	Addr string
	Err  error
}

func (e *AddrError) Error() string {
	cause := e.Err
	if op, ok := errors.AsType[*net.OpError](cause); ok {
		cause = op.Err // "bind: address already in use", without the layers saying where again
	}
	return fmt.Sprintf("%s cannot listen on %s: %v", e.Name, e.Addr, cause)
}

func (e *AddrError) Unwrap() error { return e.Err }

// Start starts the broker (if embedded) and the services, and returns once
// every service is serving. The suite runs until ctx ends; then Wait
// returns when everything has stopped.
func Start(ctx context.Context, o Options) (*Suite, error) {
	if o.DatabaseURL == "" {
		return nil, errors.New("suite: no DatabaseURL")
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	addrs := maps.Clone(DefaultHTTPAddrs)
	maps.Copy(addrs, o.HTTPAddrs)
	// The order service links to its peers (availability, labels, the ops
	// dashboard), so every port is bound before anything starts (port 0
	// becomes a free port now) and each service serves the listener bound
	// for it: no port is free between being chosen and being served. A
	// taken port fails here, before the broker and the other services
	// start and have to be stopped again.
	listeners := map[string]net.Listener{}
	closeListeners := func() {
		for _, l := range listeners {
			l.Close()
		}
	}
	for _, name := range Names {
		a := addrs[name]
		l, err := net.Listen("tcp", a)
		if err != nil {
			closeListeners()
			return nil, &AddrError{Name: name, Addr: a, Err: err}
		}
		listeners[name] = l
		if _, port, _ := net.SplitHostPort(a); port == "0" {
			addrs[name] = l.Addr().String()
		}
	}

	s := &Suite{URLs: map[string]string{}, log: log, done: make(chan error, 1), prefix: o.TopicPrefix}
	s.Brokers = o.KafkaBrokers
	if len(s.Brokers) == 0 {
		addr := o.KafkaAddr
		if addr == "" {
			addr = "127.0.0.1:9092"
		}
		b, err := broker.Start(broker.Config{Addr: addr, DataDir: o.KafkaDataDir, Logger: log.With("service", "broker")})
		if err != nil {
			closeListeners()
			if errors.Is(err, syscall.EADDRINUSE) {
				return nil, &AddrError{Name: "broker", Addr: addr, Err: err}
			}
			return nil, fmt.Errorf("embedded broker: %w", err)
		}
		s.broker = b
		s.Brokers = []string{b.Addr()}
	}

	env := o.Env
	if env == nil {
		env = environ()
	}
	peer := func(name string) string { return "http://" + loopback(addrs[name]) }
	envFor := func(name string) map[string]string {
		e := maps.Clone(env)
		e["DATABASE_URL"] = o.DatabaseURL
		e["KAFKA_BROKERS"] = strings.Join(s.Brokers, ",")
		e["HTTP_ADDR"] = addrs[name]
		e["KAFKA_TOPIC_PREFIX"] = o.TopicPrefix
		e["ADMIN_TOKEN"] = o.AdminToken
		if hosts := LoopbackHosts(addrs[name]); hosts != "" && e["HTTP_ALLOWED_HOSTS"] == "" {
			e["HTTP_ALLOWED_HOSTS"] = hosts
		}
		if name == "order" {
			e["INVENTORY_URL"] = peer("inventory")
			e["SHIPPING_URL"] = peer("shipping")
			e["OPS_PEERS"] = "payment=" + peer("payment") + ",inventory=" + peer("inventory") + ",shipping=" + peer("shipping")
		}
		return e
	}
	runs := map[string]func(context.Context, *slog.Logger) error{}
	var cfgErrs []error
	add := func(name string, run func(context.Context, *slog.Logger) error, err error) {
		if err != nil {
			cfgErrs = append(cfgErrs, fmt.Errorf("%s: %w", name, err))
			return
		}
		runs[name] = run
	}
	{
		cfg, err := config.Load[order.Config](config.WithEnvironment(envFor("order")))
		add("order", func(ctx context.Context, l *slog.Logger) error { return order.Run(ctx, cfg, l) }, err)
	}
	{
		cfg, err := config.Load[payment.Config](config.WithEnvironment(envFor("payment")))
		add("payment", func(ctx context.Context, l *slog.Logger) error { return payment.Run(ctx, cfg, l) }, err)
	}
	{
		cfg, err := config.Load[inventory.Config](config.WithEnvironment(envFor("inventory")))
		add("inventory", func(ctx context.Context, l *slog.Logger) error { return inventory.Run(ctx, cfg, l) }, err)
	}
	{
		cfg, err := config.Load[shipping.Config](config.WithEnvironment(envFor("shipping")))
		add("shipping", func(ctx context.Context, l *slog.Logger) error { return shipping.Run(ctx, cfg, l) }, err)
	}
	if err := errors.Join(cfgErrs...); err != nil {
		closeListeners()
		s.closeBroker()
		return nil, err
	}

	svcCtx, stopServices := context.WithCancel(context.WithoutCancel(ctx))
	type started struct {
		name, addr string
	}
	up := make(chan started, len(Names))
	failed := make(chan error, len(Names))
	var wg sync.WaitGroup
	for _, name := range Names {
		run := runs[name]
		wg.Go(func() {
			sctx := service.OnStarted(svcCtx, func(addr string) { up <- started{name, addr} })
			sctx = service.WithListener(sctx, listeners[name])
			// No "service" attribute here: service.Run adds it (the
			// dev log had every line's twice).
			if err := run(sctx, log); err != nil {
				failed <- fmt.Errorf("%s: %w", name, err)
			}
		})
	}
	stopAll := func() error {
		stopServices()
		wg.Wait()
		// service.Run closed each listener; a service whose own Run
		// failed before calling it did not.
		closeListeners()
		close(failed)
		var errs []error
		for err := range failed {
			errs = append(errs, err)
		}
		s.closeBroker()
		return errors.Join(errs...)
	}
	for len(s.URLs) < len(Names) {
		select {
		case st := <-up:
			s.URLs[st.name] = "http://" + loopback(st.addr)
		case err := <-failed:
			failed <- err
			return nil, stopAll()
		case <-ctx.Done():
			return nil, errors.Join(ctx.Err(), stopAll())
		case <-time.After(2 * time.Minute):
			return nil, errors.Join(errors.New("suite: services did not start within 2 minutes"), stopAll())
		}
	}
	go func() {
		select {
		case <-ctx.Done():
		case err := <-failed:
			// One service failed on its own: stop the rest too.
			failed <- err
		}
		s.done <- stopAll()
	}()
	return s, nil
}

// Wait blocks until the suite has stopped (after ctx ended, or a service
// failed) and returns the services' errors.
func (s *Suite) Wait() error { return <-s.done }

func (s *Suite) closeBroker() {
	if s.broker != nil {
		s.broker.Close()
		s.log.Info("embedded broker closed")
	}
}

// loopback turns a listen address into one to dial (":8080" → 127.0.0.1:8080).
func loopback(addr string) string {
	if strings.HasPrefix(addr, ":") {
		return "127.0.0.1" + addr
	}
	if strings.HasPrefix(addr, "[::]:") {
		return "127.0.0.1" + strings.TrimPrefix(addr, "[::]")
	}
	if strings.HasPrefix(addr, "0.0.0.0:") {
		return "127.0.0.1" + strings.TrimPrefix(addr, "0.0.0.0")
	}
	return addr
}

// LoopbackOnly reports whether a listen address (host:port) reaches this
// machine only.
func LoopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// LoopbackHosts is the HTTP_ALLOWED_HOSTS of a service listening on addr
// when that is on loopback only (LoopbackOnly): the names this machine's
// clients reach it by, localhost, 127.0.0.1, ::1, and addr's own
// address; "" (every host) for any other address, whose names the suite
// cannot know.
func LoopbackHosts(addr string) string {
	if !LoopbackOnly(addr) {
		return ""
	}
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	host, _, _ := net.SplitHostPort(addr)
	host, _, _ = strings.Cut(host, "%") // a zone (::1%lo) is no part of a Host header
	if !slices.Contains(hosts, host) {
		hosts = append(hosts, host) // 127.0.0.2, say
	}
	return strings.Join(hosts, ",")
}

func environ() map[string]string {
	m := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}
