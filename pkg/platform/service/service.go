// Package service assembles a shopflow service from the platform's parts
// and runs it: one place that fixes the start-up order and its reverse for
// shutdown, so every service gets them right.
//
// Start-up: listen on HTTP_ADDR and answer probes and scrapes → connect to
// PostgreSQL (retrying while it starts) → migrate the schema (outbox,
// inbox, then the service's own) → create the topics → start the outbox
// relay → start the consumer → serve the service's routes and ready
// checks. Until that last step, /healthz answers 200, /readyz 503 saying
// which step start-up is at and the last error it met there ("starting:
// waiting for PostgreSQL (last error: connection refused)"), /metrics
// serves the Go and process metrics and shop_service_starting{stage}, and
// every other request 503 with Retry-After: an orchestrator sees a live
// service that is not ready yet, not a dead one. While it runs,
// a topic watch (kafkatopics.Watch, a background stage) creates again any
// of its topics the broker has lost, and /readyz says "kafka" is not ready
// meanwhile, naming them. Shutdown, when ctx ends (SIGINT/SIGTERM in
// main): first SHUTDOWN_DRAIN_DELAY, if set, with /readyz answering 503
// and everything else served (for a load balancer to notice), then,
// within SHUTDOWN_TIMEOUT: stop HTTP intake (in-flight requests finish,
// within half of SHUTDOWN_TIMEOUT; those still running then are ended) →
// drain the consumer (the record in hand completes, its offset is
// committed) → flush the relay (what is committed gets published) → close
// the pool (ClosePool: it waits for the connections still in use until
// the deadline, saying so); a stage the deadline cuts off, or a
// connection still in use then, makes Run return an error. A second
// signal (Signals, WithForce) forces the stop: what is left of the drain
// and of the shutdown's waits is skipped, and Run returns ErrForced.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/config"
	"github.com/shopflow/shopflow/pkg/platform/httpserver"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/kafkatopics"
	"github.com/shopflow/shopflow/pkg/platform/outbox"
	"github.com/shopflow/shopflow/pkg/platform/pg"
	"github.com/shopflow/shopflow/pkg/platform/tracing"
)

// Spec is what a service declares about itself.
type Spec struct {
	// Name is the service's name; also its consumer group.
	Name string
	// Schema is the PostgreSQL schema the service owns.
	Schema string
	// Migrations are the service's own (tern format), applied after the
	// outbox's and the inbox's.
	Migrations pg.Migrations
	// Topics are created at start if missing (the service's result topic
	// and the topics it consumes).
	Topics []kafkatopics.Spec
	// ConsumeTopics, if any, are consumed as group Name through the inbox.
	ConsumeTopics []string
	// BatchSize for the consumer; see inbox.Config.
	BatchSize int
	// Parallelism, if set, caps the consumer's workers below
	// CONSUMER_PARALLELISM: a service whose every event touches the same
	// few rows (inventory's stock) gains nothing from parallel
	// transactions but lock waits and deadlocks.
	Parallelism int
}

// Parts is what Setup builds once the pool exists.
type Parts struct {
	// Routes mounts the service's endpoints.
	Routes func(r chi.Router)
	// Handler applies consumed events one at a time; BatchHandler, the
	// events of a transaction in one call. One of them is required if
	// Spec.ConsumeTopics.
	Handler      inbox.Handler
	BatchHandler inbox.BatchHandler
	// Background, if set, runs beside the others until ctx ends (e.g. a
	// pruning job) or returns early (a start-up task done off the request
	// path); it stops before the consumer drains.
	Background []func(ctx context.Context) error
}

type startedKey struct{}

// OnStarted returns a context that makes Run call fn once the service is
// up (its routes served, its consumer and relay running), with the
// address HTTP listens on (the real port when HTTP_ADDR asked for port
// 0); HTTP answers before that, but only with start-up's answers. It is
// for whoever runs services in-process (tests, shop dev), which pass the
// context through the service's own Run.
func OnStarted(ctx context.Context, fn func(httpAddr string)) context.Context {
	return context.WithValue(ctx, startedKey{}, fn)
}

type listenerKey struct{}

// WithListener returns a context that makes Run serve HTTP on ln instead
// of listening on HTTP_ADDR. Whoever runs services in-process (tests,
// shop dev) binds every port before starting any service, so a port is
// never free between being chosen and being served (another test's
// connection took one that way). Run closes ln, whether it starts or not;
// a service's own Run that fails before calling Run leaves it open, so the
// caller closes it too once the service has stopped (a second Close is
// harmless). Run serves ln from its start, before the service has
// started (see the package doc).
func WithListener(ctx context.Context, ln net.Listener) context.Context {
	return context.WithValue(ctx, listenerKey{}, ln)
}

// Deps are handed to Setup.
type Deps struct {
	Pool     *pgxpool.Pool
	Log      *slog.Logger
	Registry *prometheus.Registry
	// Wake tells the outbox relay that a transaction wrote outbox rows;
	// call it after the commit. The consumer's transactions call it
	// already; parts that write events from elsewhere (an HTTP handler)
	// call it themselves, or their events wait for the relay's poll.
	Wake func()
	// ReadUpTo reports whether the service's consumer group has committed
	// every record of its topics written before t (inbox.Consumer.ReadUpTo):
	// a part that acts on an answer not having come asks it first. For a
	// service without a consumer it is an error.
	ReadUpTo func(ctx context.Context, t time.Time) (bool, error)
}

// Run starts the service and blocks until ctx ends and shutdown completes.
// It returns an error if start-up fails; shutdown is bounded by
// common.ShutdownTimeout. ctx ending during start-up (while it waits for
// PostgreSQL or Kafka, say) is a stop like any other: Run logs it and
// returns nil.
func Run(ctx context.Context, spec Spec, common config.Common, log *slog.Logger, setup func(ctx context.Context, d Deps) (Parts, error)) (err error) {
	log = log.With("service", spec.Name)
	// A forced stop (WithForce: a second signal) ends forceable, which
	// everything that waits for the stop to complete waits on too.
	force := forceOf(ctx)
	forceable, endForceable := context.WithCancelCause(context.WithoutCancel(ctx))
	defer endForceable(nil)
	var forced atomic.Bool
	defer context.AfterFunc(force, func() {
		forced.Store(true)
		log.Warn("stop forced by a second signal: what is left of the drain and of the shutdown's waits is skipped")
		endForceable(ErrForced)
	})()
	defer func() {
		// Whatever start-up or shutdown got to, a forced stop is not a
		// clean one: the exit status says so.
		if err == nil && forced.Load() {
			err = fmt.Errorf("%s: %w", spec.Name, ErrForced)
		}
	}()
	started := false
	defer func() {
		// SIGINT or SIGTERM while the service waits for a dependency or
		// migrates: the operator asked it to stop, and it has. The step
		// it cut short fails with "context canceled", which is no
		// failure of the service's (exit status 1, an ERROR in the log).
		if err != nil && !started && ctx.Err() != nil {
			log.Info("stopped while starting", "cut_short", err.Error())
			err = nil
		}
	}()
	ln, _ := ctx.Value(listenerKey{}).(net.Listener) // nil: HTTP listens on HTTP_ADDR
	if ln != nil {
		defer ln.Close() // served and closed by HTTP, unless Run fails before serving it
	}

	tp, flushTraces, err := tracing.Setup(ctx, spec.Name, log)
	if err != nil {
		return err
	}
	defer func() {
		fctx, cancel := context.WithTimeout(forceable, 5*time.Second)
		defer cancel()
		if err := flushTraces(fctx); err != nil {
			log.Warn("flush traces", "err", err)
		}
	}()
	var httpTracing trace.TracerProvider
	if _, off := tp.(noop.TracerProvider); !off {
		httpTracing = tp
	}

	// HTTP first, with start-up's answers (/readyz says what it waits
	// for): a service waiting for PostgreSQL is alive, not ready, and a
	// liveness probe must not kill it. The steps that wait log every
	// failed attempt through startLog, which keeps the last for /readyz.
	progress := newStarting(spec.Name)
	progress.enter(stagePostgres)
	startLog := progress.tap(log)
	reg := prometheus.NewRegistry()
	registerMetrics(reg, log, progress.gauge)
	// Half the shutdown's time for HTTP: requests finish in milliseconds,
	// and one a client holds open (a body never finished) must not take
	// the time the consumer and the relay need to stop cleanly.
	srv := httpserver.NewStarting(httpserver.Config{Addr: common.HTTPAddr, Listener: ln, ShutdownTimeout: common.ShutdownTimeout / 2,
		RequestTimeout: common.HTTPRequestTimeout, TrustedProxies: common.TrustedProxies(), AllowedHosts: common.HTTPAllowedHosts,
		TracerProvider: httpTracing}, log, reg, progress.status)
	httpCtx, stopHTTP := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHTTP()
	httpDone := start(func() error { return srv.Run(httpCtx) })
	defer func() {
		if !started { // start-up failed or was stopped: HTTP stops, and closes its listener, before Run returns
			stopHTTP()
			select {
			case <-httpDone:
			case <-forceable.Done():
			}
		}
	}()
	select {
	case <-srv.Listening():
	case err := <-httpDone:
		httpDone = closedWith(nil)
		return fmt.Errorf("http: %w", errOrStopped(err))
	}

	pool, err := pg.Connect(ctx, pg.Config{URL: common.DatabaseURL, Schema: spec.Schema, MaxConns: common.DBMaxConns}, startLog)
	if err != nil {
		return err
	}
	// Closed by the ordered shutdown below once the service has started;
	// here if start-up fails or is stopped. Either way bounded: a
	// connection still in use (a statement waiting on a lock) held the
	// process, unbounded and silent, until it came back.
	poolOpen := true
	defer func() {
		if !poolOpen {
			return
		}
		if cerr := closePool(pool, log, "database pool", time.Now().Add(common.ShutdownTimeout), force.Done()); cerr != nil && err == nil {
			err = fmt.Errorf("%s: not stopped within SHUTDOWN_TIMEOUT (%s): %w", spec.Name, common.ShutdownTimeout, cerr)
		}
	}()
	progress.enter(stageMigrations)
	sets := []pg.Migrations{
		{Name: outbox.MigrationsTable, FS: outbox.Migrations()},
		{Name: inbox.MigrationsTable, FS: inbox.Migrations()},
	}
	if spec.Migrations.FS != nil {
		sets = append(sets, spec.Migrations)
	}
	if err := pg.Migrate(ctx, pool, startLog, spec.Schema, sets...); err != nil {
		return err
	}
	progress.enter(stageKafka)
	prefix := common.KafkaTopicPrefix
	topics := make([]kafkatopics.Spec, len(spec.Topics))
	for i, t := range spec.Topics {
		t.Name = prefix + t.Name
		topics[i] = t
	}
	consume := make([]string, len(spec.ConsumeTopics))
	for i, t := range spec.ConsumeTopics {
		consume[i] = prefix + t
	}
	// Kafka security (SASL, TLS): one transport for writers and admin
	// requests, one dialer for the group reader.
	sec := common.Kafka
	for _, w := range sec.Warnings() {
		log.Warn(w)
	}
	transport, err := sec.Transport()
	if err != nil {
		return err
	}
	defer transport.CloseIdleConnections()
	dialer, err := sec.Dialer()
	if err != nil {
		return err
	}
	if sec.Enabled() {
		// Fail fast, naming the variables, on credentials or certificates
		// the brokers refuse (rather than retrying a "broker not
		// available" until the topics' deadline).
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := sec.Check(cctx, common.KafkaBrokers)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %w", spec.Name, err)
		}
	}
	kafkaClient := &kafka.Client{Addr: kafka.TCP(common.KafkaBrokers...), Transport: transport}
	// The dead-letter topic too (the consumer would create it as it
	// starts): the topic watch below keeps it, and would otherwise find
	// it missing, and say the broker lost it, when /readyz asks first.
	watched := topics
	if len(consume) > 0 {
		watched = append(slices.Clip(topics), inbox.DLQTopicSpec(prefix+events.DLQTopic(spec.Name)))
	}
	tctx, cancel := context.WithTimeout(ctx, time.Minute)
	err = kafkatopics.EnsureWith(tctx, kafkaClient, startLog, watched...)
	cancel()
	if err != nil {
		return fmt.Errorf("%s: topics (KAFKA_BROKERS=%v): %w", spec.Name, common.KafkaBrokers, err)
	}
	progress.enter(stageSetup)
	// A broker that loses its data comes back without the topics: the
	// watch creates them again while the service runs.
	topicWatch := kafkatopics.NewWatch(kafkaClient, log, topicWatchInterval, watched...)
	var consumer *inbox.Consumer // set below, before any part runs
	topicWatch.OnRestored(func(back []string) {
		// The group joins afresh: see inbox.Consumer.Rejoin.
		if consumer != nil && slices.ContainsFunc(back, func(t string) bool { return slices.Contains(consume, t) }) {
			consumer.Rejoin(back...)
		}
	})

	outboxMetrics := outbox.NewMetrics(pool, spec.Name, log)
	relay := outbox.NewRelay(pool, outbox.RelayConfig{Brokers: common.KafkaBrokers, Transport: transport, TopicPrefix: prefix, Logger: log,
		OnPublish: outboxMetrics.OnPublish, TopicMissing: topicWatch.Check})
	readUpTo := func(ctx context.Context, t time.Time) (bool, error) {
		if consumer == nil {
			return false, fmt.Errorf("%s consumes no topic", spec.Name)
		}
		return consumer.ReadUpTo(ctx, t)
	}
	parts, err := setup(ctx, Deps{Pool: pool, Log: log, Registry: reg, Wake: relay.Wake, ReadUpTo: readUpTo})
	if err != nil {
		return fmt.Errorf("%s: setup: %w", spec.Name, err)
	}

	if len(spec.ConsumeTopics) > 0 {
		if parts.Handler == nil && parts.BatchHandler == nil {
			return fmt.Errorf("%s: consumes %v but has no handler", spec.Name, spec.ConsumeTopics)
		}
		consumer, err = inbox.New(pool, inbox.Config{Brokers: common.KafkaBrokers, Dialer: dialer, Transport: transport,
			Group: prefix + spec.Name, DLQTopic: prefix + events.DLQTopic(spec.Name),
			Topics: consume, Handler: parts.Handler, BatchHandler: parts.BatchHandler, OnCommit: relay.Wake, BatchSize: spec.BatchSize,
			Parallelism: parallelism(spec, common), Retention: common.InboxRetention, Linger: common.ConsumerLinger, Tracer: tp.Tracer("github.com/shopflow/shopflow/pkg/platform/inbox"),
			Logger: log})
		if err != nil {
			return err
		}
	}
	registerMetrics(reg, log, outboxMetrics)
	if consumer != nil {
		registerMetrics(reg, log, consumer.Collector(spec.Name))
	}
	checks := []httpserver.ReadyCheck{
		// Writable, not a ping: a read-only database (a standby after a
		// failover) answers pings while refusing every write.
		{Name: "postgres", Check: func(ctx context.Context) error {
			err := pg.Writable(ctx, pool)
			if errors.Is(err, pg.ErrReadOnly) {
				return httpserver.Public(err)
			}
			return err
		}},
		// A metadata request, not ApiVersions: brokers answer that before
		// authentication, so it would call a misconfigured service ready.
		// Then the topics: a broker that lost them answers, but nothing
		// can be published or consumed until the watch has them again.
		{Name: "kafka", Check: func(ctx context.Context) error {
			if err := sec.Check(ctx, common.KafkaBrokers); err != nil {
				return err
			}
			var missing *kafkatopics.MissingError
			if err := topicWatch.Missing(ctx); errors.As(err, &missing) {
				return httpserver.Public(missing)
			}
			return nil // the metadata cache's error: the check above reached a broker
		}},
	}
	routes := parts.Routes
	if routes == nil {
		routes = func(chi.Router) {}
	}

	// Each stage has its own context so shutdown can end them in order
	// (HTTP's is above).
	relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	consumerCtx, stopConsumer := context.WithCancel(context.WithoutCancel(ctx))
	bgCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRelay()
	defer stopConsumer()
	defer stopBackground()

	if err := ctx.Err(); err != nil {
		// Stopped during setup: nothing has run yet, and a service that
		// was never ready has nothing to drain (SHUTDOWN_DRAIN_DELAY).
		return err
	}
	started = true // from here on, a stop goes through the ordered shutdown below
	relayDone := start(func() error { return relay.Run(relayCtx) })
	consumerDone := start(func() error {
		if consumer == nil {
			return nil
		}
		return consumer.Run(consumerCtx)
	})
	bgDone := []<-chan error{start(func() error { return topicWatch.Run(bgCtx) })}
	for _, fn := range parts.Background {
		bgDone = append(bgDone, start(func() error { return fn(bgCtx) }))
	}
	srv.Started(checks, routes)
	progress.done()
	if ctx.Err() == nil {
		log.Info("started", "http", srv.Addr(), "schema", spec.Schema, "consumes", consume)
		if fn, ok := ctx.Value(startedKey{}).(func(string)); ok {
			fn(srv.Addr())
		}
	}

	// Wait for the signal, or for a part to fail on its own.
	failed := waitStop(ctx, &httpDone, &consumerDone, &relayDone, consumer != nil)
	if delay := common.ShutdownDrainDelay; failed == nil && delay > 0 && !forced.Load() {
		// Behind a load balancer: /readyz says 503 for a while first, and
		// everything else is served as before, so that the balancer takes
		// the replica out before its port closes (it sent requests to a
		// closed port, 502s, until its health checks noticed).
		srv.Drain()
		log.Info("draining: /readyz answers 503, everything else is served, until the shutdown begins",
			"for", delay.String())
		dctx, cancel := context.WithTimeout(forceable, delay) // ends early if forced
		failed = waitStop(dctx, &httpDone, &consumerDone, &relayDone, consumer != nil)
		cancel()
	}
	log.Info("shutting down")
	// One deadline for all stages: once it has passed, each later wait
	// gives up at once (a time.After channel would let only the first
	// stage that saw it go, and every later one wait without a bound).
	deadline, cancelDeadline := context.WithTimeout(context.WithoutCancel(ctx), common.ShutdownTimeout)
	defer cancelDeadline()
	// A forced stop tells every stage to stop at once, not in turn, and
	// ends the deadline forceGrace later: what stops at once (a consumer
	// committing its offsets, a relay with nothing left to publish) stops
	// cleanly, and the rest is left running.
	defer context.AfterFunc(force, func() {
		stopHTTP()
		stopBackground()
		stopConsumer()
		stopRelay()
		time.AfterFunc(forceGrace, cancelDeadline)
	})()
	var abandoned, skipped, left []string
	wait := func(stage string, stop context.CancelFunc, done ...<-chan error) {
		late := deadline.Err() != nil // the stages before took all the time
		stop()
		for _, d := range done {
			var err error
			var ok bool
			select { // one that has stopped is not abandoned, deadline or not
			case err, ok = <-d:
			default:
				select {
				case err, ok = <-d:
				case <-deadline.Done():
				}
			}
			switch {
			case ok && err != nil:
				log.Error("stopped with error", "stage", stage, "err", err)
			case !ok && forced.Load():
				left = append(left, stage)
			case !ok && late:
				log.Error("shutdown deadline passed before this stage was stopped", "stage", stage)
				skipped = append(skipped, stage)
			case !ok:
				log.Error("shutdown deadline passed", "stage", stage)
				abandoned = append(abandoned, stage)
			}
		}
		log.Info("stopped", "stage", stage)
	}
	wait("http", stopHTTP, httpDone)
	wait("background", stopBackground, bgDone...)
	wait("consumer", stopConsumer, consumerDone)
	wait("relay", stopRelay, relayDone)
	// Last, the pool: it waits for the connections still in use, which
	// only work cut off above (or a request's, which HTTP's stop ended)
	// can hold, so it gets what is left of the deadline.
	poolOpen = false
	deadlineAt, _ := deadline.Deadline()
	if err := closePool(pool, log, "database pool", deadlineAt, force.Done()); err != nil {
		if forced.Load() {
			left = append(left, err.Error())
		} else {
			abandoned = append(abandoned, err.Error())
		}
	}
	if forced.Load() && failed == nil {
		// Offsets or events may be left for the next start (nothing is
		// lost), as after a crash.
		failed = fmt.Errorf("%s: %w", spec.Name, ErrForced)
		if len(left) > 0 {
			failed = fmt.Errorf("%w; left running: %s", failed, strings.Join(slices.Compact(left), ", "))
		}
	}
	if len(abandoned)+len(skipped) > 0 && failed == nil {
		// Not a clean stop: offsets or events may be left for the next
		// start (nothing is lost), and the exit status says so.
		msg := fmt.Sprintf("%s: not stopped within SHUTDOWN_TIMEOUT (%s)", spec.Name, common.ShutdownTimeout)
		if len(abandoned) > 0 {
			msg += ": " + strings.Join(slices.Compact(abandoned), ", ")
		}
		if len(skipped) > 0 {
			msg += "; given no time after it: " + strings.Join(slices.Compact(skipped), ", ")
		}
		failed = errors.New(msg)
	}
	return failed
}

// forceGrace is how long a forced stop waits for its stages, all told
// to stop at once (the pool gets poolCloseGrace after them).
const forceGrace = time.Second

// topicWatchInterval is how often a running service looks for its topics
// on the broker (besides when a publish or /readyz finds one missing).
var topicWatchInterval = kafkatopics.DefaultWatchInterval

// registerMetrics adds collectors; a conflict is logged, never fatal.
func registerMetrics(reg *prometheus.Registry, log *slog.Logger, cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			log.Warn("metrics not registered", "err", err)
		}
	}
}

func parallelism(spec Spec, common config.Common) int {
	p := common.ConsumerParallelism
	if spec.Parallelism > 0 && (p <= 0 || spec.Parallelism < p) {
		p = spec.Parallelism
	}
	return p
}

// waitStop blocks until ctx ends (nil) or a part stops on its own (its
// error); the part's channel is then replaced by a drained one.
func waitStop(ctx context.Context, httpDone, consumerDone, relayDone *<-chan error, consuming bool) error {
	cd := *consumerDone
	if !consuming {
		cd = nil // a service without a consumer: that stage ended at once
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-*httpDone:
		*httpDone = closedWith(nil)
		return fmt.Errorf("http: %w", errOrStopped(err))
	case err := <-cd:
		*consumerDone = closedWith(nil)
		return fmt.Errorf("consumer: %w", errOrStopped(err))
	case err := <-*relayDone:
		*relayDone = closedWith(nil)
		return fmt.Errorf("relay: %w", errOrStopped(err))
	}
}

func start(fn func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- fn() }()
	return ch
}

func closedWith(err error) <-chan error {
	ch := make(chan error, 1)
	ch <- err
	close(ch)
	return ch
}

func errOrStopped(err error) error {
	if err == nil {
		return errors.New("stopped unexpectedly")
	}
	return err
}
