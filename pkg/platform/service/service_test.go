package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/broker"
	"github.com/shopflow/shopflow/pkg/platform/config"
	"github.com/shopflow/shopflow/pkg/platform/httpserver"
	"github.com/shopflow/shopflow/pkg/platform/kafkasec"
	"github.com/shopflow/shopflow/pkg/platform/kafkatopics"
	"github.com/shopflow/shopflow/pkg/platform/outbox"
	"github.com/shopflow/shopflow/pkg/platform/pg"
	"github.com/shopflow/shopflow/pkg/platform/service"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// jsonLines parses the JSON log lines in s.
func jsonLines(s string) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// echoSpec is a small service: it consumes shop.orders, records each
// OrderPlaced in its table and answers with PaymentAuthorized through the
// outbox, and serves GET /v1/seen.
func echoSpec() (service.Spec, func(ctx context.Context, d service.Deps) (service.Parts, error)) {
	spec := service.Spec{
		Name:   "echo",
		Schema: "echo",
		Migrations: pg.Migrations{Name: "echo_version", FS: fstest.MapFS{
			"001_seen.sql": {Data: []byte(`CREATE TABLE seen (order_id text PRIMARY KEY);`)},
		}},
		Topics: []kafkatopics.Spec{
			{Name: events.TopicOrders, Partitions: 3},
			{Name: events.TopicPayments, Partitions: 3},
		},
		ConsumeTopics: []string{events.TopicOrders},
	}
	setup := func(ctx context.Context, d service.Deps) (service.Parts, error) {
		return service.Parts{
			Routes: func(r chi.Router) {
				r.Get("/v1/seen", func(w http.ResponseWriter, r *http.Request) {
					var n int
					if err := d.Pool.QueryRow(r.Context(), `SELECT count(*) FROM seen`).Scan(&n); err != nil {
						httpserver.WriteError(w, r, err)
						return
					}
					httpserver.WriteJSON(w, http.StatusOK, map[string]int{"seen": n})
				})
			},
			Handler: func(ctx context.Context, tx pgx.Tx, ev events.Event) error {
				p, ok := ev.Payload.(events.OrderPlaced)
				if !ok {
					return nil
				}
				if _, err := tx.Exec(ctx, `INSERT INTO seen VALUES ($1)`, p.OrderID); err != nil {
					return err
				}
				return outbox.Write(ctx, tx, events.New("/shopflow/echo", events.PaymentAuthorized{
					OrderID: p.OrderID, PaymentID: "pay-" + p.OrderID, AmountCents: p.TotalCents,
					Currency: p.Currency, AuthorizationCode: "A1"}))
			},
		}, nil
	}
	return spec, setup
}

func placed(orderID string) events.Message {
	m, err := events.Encode(events.New("/shopflow/order", events.OrderPlaced{
		OrderID: orderID, CustomerID: "c1", Currency: "USD", TotalCents: 500,
		Items:           []events.Line{{SKU: "SKU-1", Quantity: 1, UnitPriceCents: 500}},
		Payment:         events.PaymentMethod{CardToken: "tok_visa"},
		ShippingAddress: events.Address{Name: "A", Line1: "1 Main St", City: "X", PostalCode: "1", Country: "US"},
		PlacedAt:        time.Now().UTC(),
	}))
	if err != nil {
		panic(err)
	}
	return m
}

// TestRunServesConsumesPublishesAndStopsInOrder runs a whole service on
// the real broker and PostgreSQL: it migrates its schema, creates its
// topics under the prefix, serves health and its routes, turns consumed
// events into published ones, and on cancel stops in the fixed order.
func TestRunServesConsumesPublishesAndStopsInOrder(t *testing.T) {
	t.Parallel()
	common := testenv.Common(t)
	spec, setup := echoSpec()
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	addr, stop := testenv.Serve(t, func(ctx context.Context, started func(string)) error {
		return service.Run(service.OnStarted(ctx, started), spec, common, log, setup)
	})
	base := "http://" + addr
	ctx := context.Background()

	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		res, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %d %s", path, res.StatusCode, body)
		}
	}

	// Produce three orders to the prefixed topic; expect three results.
	w := &kafka.Writer{Transport: &kafka.Transport{}, Addr: kafka.TCP(common.KafkaBrokers...), Topic: common.KafkaTopicPrefix + events.TopicOrders,
		Balancer: &kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	var want []string
	for range 3 {
		id := uuid.NewString()
		want = append(want, id)
		m := placed(id)
		km := kafka.Message{Key: m.Key, Value: m.Value}
		for _, h := range m.Headers {
			km.Headers = append(km.Headers, kafka.Header(h))
		}
		if err := w.WriteMessages(ctx, km); err != nil {
			t.Fatal(err)
		}
	}
	got := testenv.Consume(t, common.KafkaTopicPrefix+events.TopicPayments, time.Minute, testenv.Count(3))
	seen := map[string]bool{}
	for _, m := range got {
		ev, err := events.Decode(fromKafka(m.Headers), m.Value)
		if err != nil {
			t.Fatalf("result does not decode: %v", err)
		}
		seen[ev.Payload.(events.PaymentAuthorized).OrderID] = true
	}
	for _, id := range want {
		if !seen[id] {
			t.Errorf("no PaymentAuthorized for %s", id)
		}
	}
	res, err := http.Get(base + "/v1/seen")
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]int
	_ = json.NewDecoder(res.Body).Decode(&body)
	res.Body.Close()
	if body["seen"] != 3 {
		t.Errorf("GET /v1/seen = %v, want 3", body)
	}

	// The outbox and consumer metrics, once everything is published and
	// committed.
	group := common.KafkaTopicPrefix + "echo"
	wantMetrics := []string{
		`shop_outbox_published_total{service="echo"} 3`,
		`shop_outbox_backlog{service="echo"} 0`,
		`shop_consumer_processed_total{group="` + group + `",service="echo"} 3`,
		`shop_consumer_lag{group="` + group + `",partition="0",service="echo",topic="` + common.KafkaTopicPrefix + `shop.orders"} 0`,
		`shop_http_request_duration_seconds_count{code="200",lifecycle="",method="GET",route="/v1/seen"} 1`,
	}
	var metrics string
	testenv.Eventually(t, 30*time.Second, "metrics never showed everything published and committed", func() bool {
		res, err := http.Get(base + "/metrics")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		metrics = string(b)
		for _, w := range wantMetrics {
			if !strings.Contains(metrics, w) {
				return false
			}
		}
		return true
	})

	stop()
	var stages []string
	for _, l := range jsonLines(logs.String()) {
		if l["msg"] == "stopped" {
			stages = append(stages, fmt.Sprint(l["stage"]))
		}
	}
	if got, want := strings.Join(stages, ","), "http,background,consumer,relay"; got != want {
		t.Errorf("shutdown order = %s, want %s", got, want)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("HTTP still answers after Run returned")
	}
}

// TestRunFailsFastOnBadDatabase: an unreachable PostgreSQL is an error
// naming it once the bounded start-up retry gives up, not a hang.
func TestRunFailsFastOnBadDatabase(t *testing.T) {
	t.Parallel()
	common := testenv.Common(t)
	common.DatabaseURL = "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1"
	spec, setup := echoSpec()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	err := service.Run(ctx, spec, common, slog.New(slog.NewTextHandler(io.Discard, nil)), setup)
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("Run = %v, want an error naming the database", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run hung until the test's deadline: %v (after %v)", err, time.Since(start))
	}
}

// TestRunStoppedWhileWaitingAtStart: SIGINT or SIGTERM while the service
// waits for PostgreSQL or Kafka at start is a graceful stop: Run returns
// nil (exit status 0) and logs it at INFO. It used to return "context
// canceled", which the binaries log as ERROR "payment failed" and exit 1.
func TestRunStoppedWhileWaitingAtStart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		change  func(*config.Common, string)
		waiting string // the log line that says it waits
	}{
		{"for PostgreSQL", func(c *config.Common, closed string) {
			c.DatabaseURL = "postgres://postgres@" + closed + "/none?sslmode=disable&connect_timeout=1"
		}, "postgres not ready, retrying"},
		{"for Kafka", func(c *config.Common, closed string) { c.KafkaBrokers = []string{closed} }, "kafka not ready, retrying"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			common := testenv.Common(t)
			tc.change(&common, testenv.FreeAddr(t))
			spec, setup := echoSpec()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var logs syncBuffer
			done := make(chan error, 1)
			go func() { done <- service.Run(ctx, spec, common, slog.New(slog.NewJSONHandler(&logs, nil)), setup) }()
			testenv.Eventually(t, 30*time.Second, "the service waiting ("+tc.waiting+")", func() bool {
				return strings.Contains(logs.String(), tc.waiting)
			})
			cancel() // SIGINT
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Run = %v, want nil: a stop while starting is a graceful stop", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return within 10 s of the stop")
			}
			var said bool
			for _, l := range jsonLines(logs.String()) {
				said = said || l["msg"] == "stopped while starting" && l["level"] == "INFO"
			}
			if !said {
				t.Errorf("no INFO \"stopped while starting\" in the log:\n%s", logs.String())
			}
		})
	}
}

// syncBuffer collects what a logger writes while a test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func fromKafka(hs []kafka.Header) []events.Header {
	out := make([]events.Header, len(hs))
	for i, h := range hs {
		out[i] = events.Header(h)
	}
	return out
}

// TestRunWithSASL: against a broker that requires SCRAM-SHA-512, a
// service with the right KAFKA_SASL_* settings creates its topics,
// consumes and publishes; with a wrong password it stops at start-up with
// an error naming the settings, quickly.
func TestRunWithSASL(t *testing.T) {
	t.Parallel()
	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0",
		SASL: []broker.SASLUser{{Mechanism: "SCRAM-SHA-512", User: "svc", Password: "right"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	common := testenv.Common(t)
	common.KafkaBrokers = []string{b.Addr()}
	common.Kafka = kafkasec.Config{SASLMechanism: "SCRAM-SHA-512", SASLUsername: "svc", SASLPassword: "wrong"}
	spec, setup := echoSpec()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	err = service.Run(ctx, spec, common, log, setup)
	if err == nil || !strings.Contains(err.Error(), "KAFKA_SASL") || time.Since(start) > 30*time.Second {
		t.Fatalf("wrong password: Run = %v after %v; want a quick error naming KAFKA_SASL_*", err, time.Since(start))
	}

	common.Kafka.SASLPassword = "right"
	_, stop := testenv.Serve(t, func(ctx context.Context, started func(string)) error {
		return service.Run(service.OnStarted(ctx, started), spec, common, log, setup)
	})
	transport, err := common.Kafka.Transport()
	if err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(b.Addr()), Topic: common.KafkaTopicPrefix + events.TopicOrders, Transport: transport,
		Balancer: &kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	m := placed(uuid.NewString())
	km := kafka.Message{Key: m.Key, Value: m.Value}
	for _, h := range m.Headers {
		km.Headers = append(km.Headers, kafka.Header(h))
	}
	if err := w.WriteMessages(ctx, km); err != nil {
		t.Fatal(err)
	}
	dialer, _ := common.Kafka.Dialer()
	// The result lands on one of the 3 partitions: read them all at once.
	var got atomic.Int64
	var wg sync.WaitGroup
	for p := range 3 {
		wg.Go(func() {
			rp := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{b.Addr()}, Topic: common.KafkaTopicPrefix + events.TopicPayments,
				Partition: p, Dialer: dialer, MaxWait: 100 * time.Millisecond})
			defer rp.Close()
			lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
			defer lcancel()
			if _, err := rp.ReadMessage(lctx); err == nil {
				got.Add(1)
			}
		})
	}
	wg.Wait()
	if got.Load() != 1 {
		t.Errorf("%d results on %s over SASL, want 1", got.Load(), events.TopicPayments)
	}
	stop()
}

// TestShutdownDeadlineBoundsEveryStage: SHUTDOWN_TIMEOUT bounds the whole
// shutdown. Two background tasks here ignore the stop; the first wait to
// see the deadline used to consume it (a time.After channel), so the
// second waited for its task without any bound. Run then fails, naming
// the stage.
func TestShutdownDeadlineBoundsEveryStage(t *testing.T) {
	t.Parallel()
	common := testenv.Common(t)
	common.ShutdownTimeout = time.Second
	spec, setup := echoSpec()
	release := make(chan struct{})
	defer close(release)
	stuck := func(ctx context.Context) error {
		<-ctx.Done()
		<-release // ignores the stop until the test ends
		return nil
	}
	withStuck := func(ctx context.Context, d service.Deps) (service.Parts, error) {
		p, err := setup(ctx, d)
		p.Background = append(p.Background, stuck, stuck)
		return p, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, done := runUntilStarted(t, ctx, spec, common, withStuck)
	cancel()
	select {
	case err := <-done:
		// A stage the deadline cuts off makes Run fail: the exit status
		// says the stop was not clean.
		t.Logf("Run: %v", err)
		if err == nil || !strings.Contains(err.Error(), "not stopped within SHUTDOWN_TIMEOUT (1s): background") {
			t.Errorf("Run: %v, want an error naming the background stage", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run still waiting 15 s after the stop, with SHUTDOWN_TIMEOUT 1s")
	}
}

// TestShutdownSlowClientLeavesTimeForTheRest: a client holding a request
// open (a body never finished) gets HTTP's half of SHUTDOWN_TIMEOUT, not
// all of it: the stages after it still stop cleanly. It used to take the
// whole deadline, and the consumer and the relay were abandoned with exit
// status 0. A stage the deadline does cut off makes Run fail.
func TestShutdownSlowClientLeavesTimeForTheRest(t *testing.T) {
	t.Parallel()
	common := testenv.Common(t)
	// HTTP's half is 5 s; the other 5 s are ample for the consumer and
	// the relay on a loaded machine, and the stage below.
	common.ShutdownTimeout = 10 * time.Second
	spec, setup := echoSpec()
	var finished atomic.Bool
	slowStop := func(ctx context.Context) error { // a stage that needs a moment to stop, as a relay's flush does
		<-ctx.Done()
		time.Sleep(500 * time.Millisecond)
		finished.Store(true)
		return nil
	}
	withSlowStop := func(ctx context.Context, d service.Deps) (service.Parts, error) {
		p, err := setup(ctx, d)
		p.Background = append(p.Background, slowStop)
		return p, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, done := runUntilStarted(t, ctx, spec, common, withSlowStop)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Half a body: the server waits for the rest.
	if _, err := io.WriteString(conn, "POST /v1/seen HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil || !finished.Load() {
			t.Errorf("Run: %v, the stage after HTTP finished: %v; want a clean stop of every stage", err, finished.Load())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run still waiting 15 s after the stop, with SHUTDOWN_TIMEOUT 10s")
	}
}

// TestShutdownBoundsThePoolClose: a pool connection still in use when
// the stages have stopped (work that outlives them, as a placement's
// batch waiting on a lock did) no longer holds Run: the pool gets what is
// left of SHUTDOWN_TIMEOUT, the log says what it waits for, and Run
// fails naming it. pgxpool's Close waited, silently, for the connection
// to come back, and Run then returned nil (exit status 0).
func TestShutdownBoundsThePoolClose(t *testing.T) {
	t.Parallel()
	common := testenv.Common(t)
	common.ShutdownTimeout = 2 * time.Second
	spec, setup := echoSpec()
	release, held := make(chan struct{}), make(chan struct{})
	defer close(release)
	withHeldConn := func(ctx context.Context, d service.Deps) (service.Parts, error) {
		p, err := setup(ctx, d)
		p.Background = append(p.Background, func(ctx context.Context) error {
			conn, err := d.Pool.Acquire(ctx)
			if err != nil {
				return err
			}
			close(held)
			go func() { // work that outlives the stage, holding its connection
				<-release
				conn.Release()
			}()
			<-ctx.Done()
			return nil // the stage itself stops at once
		})
		return p, err
	}
	logs := &testenv.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, done := runUntilStartedWithLog(t, ctx, spec, common, withHeldConn, slog.New(slog.NewJSONHandler(logs, nil)))
	<-held
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		t.Logf("Run returned after %s: %v", time.Since(start).Round(time.Millisecond), err)
		if err == nil || !strings.Contains(err.Error(), "database pool (1 connection still in use)") {
			t.Errorf("Run: %v, want an error naming the database pool and its connection in use", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run still waiting 15 s after the stop, with SHUTDOWN_TIMEOUT 2s: the pool's close waits for the connection in use")
	}
	var said bool
	for _, l := range jsonLines(logs.String()) {
		said = said || l["msg"] == "closing the database pool: waiting for connections still in use" && l["in_use"] == float64(1)
	}
	if !said {
		t.Errorf("the log does not say what closing the pool waits for:\n%s", logs.String())
	}
}

// TestShutdownDrainDelay: with SHUTDOWN_DRAIN_DELAY, a stopped service
// first answers /readyz 503 "shutting down" while it serves its API as
// before, for a load balancer to take it out; then it shuts down and its
// port closes. It used to close its listener at once: a balancer that had
// not noticed yet sent requests to a closed port (178 to 255 502s per
// round of restarts through a proxy that does not retry).
func TestShutdownDrainDelay(t *testing.T) {
	t.Parallel()
	common := testenv.Common(t)
	common.ShutdownDrainDelay = 5 * time.Second
	spec, setup := echoSpec()
	logs := &testenv.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, done := runUntilStartedWithLog(t, ctx, spec, common, setup, slog.New(slog.NewJSONHandler(logs, nil)))
	// A new connection for each request: the port itself must be open.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	get := func(path string) (int, string) {
		t.Helper()
		res, err := client.Get("http://" + addr + path)
		if err != nil {
			t.Fatalf("GET %s while draining: %v", path, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz before the stop = %d %s", code, body)
	}

	cancel() // SIGTERM
	testenv.Eventually(t, 10*time.Second, "/readyz answering 503 while draining", func() bool {
		code, body := get("/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "shutting down")
	})
	if code, body := get("/v1/seen"); code != http.StatusOK {
		t.Errorf("the API while draining = %d %s, want 200: everything but /readyz is served as before", code, body)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(common.ShutdownDrainDelay + 20*time.Second):
		t.Fatal("Run did not return after the drain delay and the shutdown")
	}
	if res, err := client.Get("http://" + addr + "/healthz"); err == nil {
		res.Body.Close()
		t.Error("the port still answers after Run returned")
	}
	var said bool
	for _, l := range jsonLines(logs.String()) {
		said = said || l["msg"] == "draining: /readyz answers 503, everything else is served, until the shutdown begins" && l["for"] == "5s"
	}
	if !said {
		t.Errorf("the log does not say it drains:\n%s", logs.String())
	}
}

// TestRunStoppedDuringSetup: a stop that lands while the service's own
// setup runs ends start-up there, as in the earlier stages: no part is
// started, and no SHUTDOWN_DRAIN_DELAY is waited out for a service that
// was never ready. Run started the relay, the consumer and the
// background parts, then drained.
func TestRunStoppedDuringSetup(t *testing.T) {
	t.Parallel()
	common := testenv.Common(t)
	common.ShutdownDrainDelay = time.Hour
	spec, echo := echoSpec()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ran atomic.Bool
	setup := func(sctx context.Context, d service.Deps) (service.Parts, error) {
		parts, err := echo(sctx, d)
		parts.Background = append(parts.Background, func(ctx context.Context) error {
			ran.Store(true)
			<-ctx.Done()
			return nil
		})
		cancel() // SIGTERM, while setup runs
		return parts, err
	}
	done := make(chan error, 1)
	go func() { done <- service.Run(ctx, spec, common, slog.New(slog.DiscardHandler), setup) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil: a stop while starting is a graceful stop", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30 s of a stop during setup (SHUTDOWN_DRAIN_DELAY is an hour)")
	}
	if ran.Load() {
		t.Error("a background part ran: the service started after the stop")
	}
}

// TestTrustedProxies: HTTP_TRUSTED_PROXIES reaches the HTTP server of
// every service (service.Run): the access log's client_ip is the one
// X-Forwarded-For names when the request comes from a trusted proxy, and
// the TCP peer when it comes from anywhere else, whatever the header
// says. Nothing set the server's TrustedProxies: behind a proxy every
// line named the proxy.
func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	common := testenv.Common(t)
	common.HTTPTrustedProxies = []string{"127.0.0.2"} // the proxy; the test's other connections come from 127.0.0.1
	spec, setup := echoSpec()
	logs := &testenv.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, done := runUntilStartedWithLog(t, ctx, spec, common, setup, slog.New(slog.NewJSONHandler(logs, nil)))
	from := func(ip, requestID, forwardedFor string) {
		t.Helper()
		client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
			LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).DialContext}}
		req, _ := http.NewRequest("GET", "http://"+addr+"/v1/seen", nil)
		if forwardedFor != "" {
			req.Header.Set("X-Forwarded-For", forwardedFor)
		}
		req.Header.Set("X-Request-Id", requestID)
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET from %s: %v", ip, err)
		}
		res.Body.Close()
	}
	from("127.0.0.2", "via-proxy", "203.0.113.7")
	from("127.0.0.1", "direct", "203.0.113.7")
	from("127.0.0.2", "proxy-itself", "")              // its health check
	from("127.0.0.2", "garbled", "203.0.113.7, bogus") // not believed
	from("127.0.0.2", "two-proxies", "203.0.113.7, 127.0.0.2")
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	got := map[string]any{}
	for _, l := range jsonLines(logs.String()) {
		if l["msg"] == "http request" {
			got[fmt.Sprint(l["request_id"])] = l["client_ip"]
		}
	}
	if got["via-proxy"] != "203.0.113.7" || got["direct"] != "127.0.0.1" {
		t.Errorf("client_ip via the trusted proxy %v, want the forwarded 203.0.113.7; directly %v, want the peer 127.0.0.1",
			got["via-proxy"], got["direct"])
	}
	if got["two-proxies"] != "203.0.113.7" {
		t.Errorf("client_ip through two trusted hops = %v, want 203.0.113.7", got["two-proxies"])
	}
	// No client named: the peer, the proxy, rather than nothing (and
	// never an address left of an entry that does not parse).
	if got["proxy-itself"] != "127.0.0.2" || got["garbled"] != "127.0.0.2" {
		t.Errorf("client_ip of the proxy's own request %v, with a garbled header %v; want the peer 127.0.0.2 for both",
			got["proxy-itself"], got["garbled"])
	}
}

// TestAllowedHosts: HTTP_ALLOWED_HOSTS reaches the HTTP server of every
// service (service.Run): a request for a Host it does not list is
// refused 421, one for a name it lists served, and /healthz answers
// whatever the Host.
func TestAllowedHosts(t *testing.T) {
	t.Parallel()
	common := testenv.Common(t)
	common.HTTPAllowedHosts = []string{"localhost"}
	spec, setup := echoSpec()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, done := runUntilStarted(t, ctx, spec, common, setup)
	for _, c := range []struct {
		host, path string
		want       int
	}{
		{"", "/v1/seen", http.StatusMisdirectedRequest}, // the address dialled, 127.0.0.1:port
		{"localhost", "/v1/seen", http.StatusOK},
		{"", "/healthz", http.StatusOK},
	} {
		req, _ := http.NewRequest("GET", "http://"+addr+c.path, nil)
		req.Host = c.host
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", c.path, err)
		}
		res.Body.Close()
		if res.StatusCode != c.want {
			t.Errorf("GET %s with Host %q: %d; want %d", c.path, c.host, res.StatusCode, c.want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
}

// runUntilStarted runs the service in the background until it listens and
// returns its address and the channel Run's result comes on.
func runUntilStarted(t *testing.T, ctx context.Context, spec service.Spec, common config.Common,
	setup func(context.Context, service.Deps) (service.Parts, error)) (string, <-chan error) {
	t.Helper()
	return runUntilStartedWithLog(t, ctx, spec, common, setup, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// runUntilStartedWithLog is runUntilStarted logging to log.
func runUntilStartedWithLog(t *testing.T, ctx context.Context, spec service.Spec, common config.Common,
	setup func(context.Context, service.Deps) (service.Parts, error), log *slog.Logger) (string, <-chan error) {
	t.Helper()
	started := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- service.Run(service.OnStarted(ctx, func(a string) { started <- a }), spec, common, log, setup)
	}()
	select {
	case addr := <-started:
		return addr, done
	case err := <-done:
		t.Fatalf("Run returned before starting: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("the service did not start within a minute")
	}
	return "", nil
}
