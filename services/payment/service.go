// Package payment is shopflow's payment service. It consumes the order
// events of shop.orders as consumer group "payment" and, through a card
// payment gateway, authorizes each order's amount when it is placed
// (PaymentAuthorized or PaymentDeclined on shop.payments), captures it when
// the order is confirmed, and voids or refunds it when the order is
// cancelled (PaymentRefunded). GET /v1/payments/{order_id} shows a payment
// and its status history.
//
// Guarantees, on top of the platform's inbox and outbox (docs/backbone.md):
// a redelivered or duplicated event has one effect; an event that means
// nothing in the payment's state (a compensation for something never done
// here) is recorded in the history and emits nothing; and a card is never
// charged twice, because every gateway call carries the order id as
// idempotency key and the gateway keeps its answers in its own ledger,
// outside the consumer's transaction.
//
// The consumer applies the records of each inbox transaction together
// (internal/consume): two round trips to the database per batch however
// many events it holds, and the gateway calls of its orders side by side.
//
// The gateway is internal/gateway.Fake, deterministic by card token (see
// its package doc), with PAYMENT_GATEWAY_LATENCY added to every call.
package payment

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/config"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/kafkatopics"
	"github.com/shopflow/shopflow/pkg/platform/pg"
	"github.com/shopflow/shopflow/pkg/platform/service"
	"github.com/shopflow/shopflow/services/payment/internal/consume"
	"github.com/shopflow/shopflow/services/payment/internal/gateway"
	"github.com/shopflow/shopflow/services/payment/internal/httpapi"
)

// Name is the service's name and consumer group; Schema its PostgreSQL schema.
const (
	Name   = "payment"
	Schema = "payments"
)

// DefaultHTTPAddr is where the HTTP API listens unless HTTP_ADDR says otherwise.
const DefaultHTTPAddr = ":8081"

// maxGatewayLatency keeps the simulated latency well inside the inbox's
// 30 s budget for applying one record.
const maxGatewayLatency = 10 * time.Second

// Config is the payment service's configuration.
type Config struct {
	config.Common
	// GatewayLatency is added to every call of the fake gateway, to
	// simulate a remote one.
	GatewayLatency time.Duration `env:"PAYMENT_GATEWAY_LATENCY" envDefault:"0s"`
}

// Validate checks the payment service's own settings (config.Load checks
// Common's separately).
func (c Config) Validate() error {
	if c.GatewayLatency < 0 || c.GatewayLatency > maxGatewayLatency {
		return &config.VarError{Var: "PAYMENT_GATEWAY_LATENCY",
			Err: fmt.Errorf("%s is not between 0s and %s", c.GatewayLatency, maxGatewayLatency)}
	}
	return nil
}

// LoadConfig reads the configuration from the environment.
func LoadConfig() (Config, error) {
	return config.Load[Config](config.WithDefault("HTTP_ADDR", DefaultHTTPAddr))
}

// Variables lists the variables LoadConfig reads, with its defaults, for
// the binary's usage message.
func Variables() []config.Variable {
	return config.Variables[Config](config.WithDefault("HTTP_ADDR", DefaultHTTPAddr))
}

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the service's own migrations (payments, history and
// the fake gateway's ledger), applied after the outbox's and the inbox's.
func Migrations() pg.Migrations {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embedded path is fixed at compile time
	}
	return pg.Migrations{Name: "payment_version", FS: sub}
}

// Spec declares the service to the platform runtime.
func Spec() service.Spec {
	return service.Spec{
		Name:       Name,
		Schema:     Schema,
		Migrations: Migrations(),
		Topics: []kafkatopics.Spec{
			{Name: events.TopicOrders, Partitions: kafkatopics.DefaultPartitions},
			{Name: events.TopicPayments, Partitions: kafkatopics.DefaultPartitions},
		},
		ConsumeTopics: []string{events.TopicOrders},
	}
}

// Run runs the service until ctx ends and shutdown completes.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	return run(ctx, cfg, log, nil)
}

// run is Run with a hook that wraps the gateway (tests use it to lose a
// gateway answer).
func run(ctx context.Context, cfg Config, log *slog.Logger, wrap func(gateway.Gateway) gateway.Gateway) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log.Info("starting", "service", Name, "config", config.Redacted(cfg))
	var gwPool *pgxpool.Pool
	err := service.Run(ctx, Spec(), cfg.Common, log, func(ctx context.Context, d service.Deps) (service.Parts, error) {
		// The gateway stands for another system: its own pool, so its
		// commits are independent of the consumer's transaction and a
		// consumer holding connections cannot starve it. The fake sends
		// the calls made at once as one statement per kind (authorize,
		// follow-up), so two connections carry the common case; the rest
		// serve the per-call statements that settle flaky cards. Its
		// commits do not wait for the WAL flush (synchronous_commit off):
		// the fake's memory matters only once the payment records what it
		// answered, and that commit flushes the WAL up to and past the
		// gateway's write.
		var err error
		gwPool, err = pg.Connect(ctx, pg.Config{URL: cfg.DatabaseURL, Schema: Schema, MaxConns: 16,
			Settings: map[string]string{"synchronous_commit": "off"}}, log.With("component", "gateway"))
		if err != nil {
			return service.Parts{}, fmt.Errorf("gateway: %w", err)
		}
		// Brief gateway faults are retried in the call (twice, 20 and 40
		// ms later), as a gateway client library does; what outlasts
		// that goes to the inbox's retries.
		gw := gateway.WithRetries(gateway.NewFake(gwPool, gateway.FakeConfig{Latency: cfg.GatewayLatency}), 2, 20*time.Millisecond)
		if wrap != nil {
			gw = wrap(gw)
		}
		return service.Parts{
			Routes: httpapi.New(d.Pool).Routes,
			// An order id in another form than the order service's is
			// another text for the same payment (the column is text),
			// so it is dead-lettered before it is applied.
			BatchHandler: inbox.Checked(events.Event.CheckOrderID, consume.New(gw, d.Log).HandleBatch),
		}, nil
	})
	// service.Run returns after the consumer drained: nobody calls the
	// gateway any more, unless the shutdown's deadline cut the consumer
	// off (Run's error says so), whose call then gets a moment at most.
	if gwPool != nil {
		if cerr := service.ClosePool(gwPool, log, "gateway pool", time.Now()); cerr != nil && err == nil {
			err = fmt.Errorf("%s: not stopped cleanly: %w", Name, cerr)
		}
	}
	return err
}
