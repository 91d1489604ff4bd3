// Package inventory is shopflow's inventory service: it keeps stock per SKU
// (on hand, reserved, available) and takes part in the order saga. For each
// OrderPlaced on shop.orders it reserves every line of the order or none
// (StockReserved / StockRejected naming the short SKUs on shop.inventory);
// OrderCancelled releases a reservation (StockReleased) and OrderConfirmed
// takes it off the shelf. Events are applied through the platform's inbox
// (once per event id) and published through its outbox (with the state
// change), so duplicates and redeliveries have one effect.
//
// HTTP (default :8082): GET /v1/stock/{sku}; PUT /v1/stock/{sku} with
// {"on_hand": N} and Authorization: Bearer ADMIN_TOKEN, which records
// each change in the stock_adjustments ledger (on hand is always its sum
// less what was sold).
package inventory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/config"
	"github.com/shopflow/shopflow/pkg/platform/httpserver"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/kafkatopics"
	"github.com/shopflow/shopflow/pkg/platform/pg"
	"github.com/shopflow/shopflow/pkg/platform/service"
	"github.com/shopflow/shopflow/services/inventory/internal/app"
	"github.com/shopflow/shopflow/services/inventory/internal/consume"
	"github.com/shopflow/shopflow/services/inventory/internal/httpapi"
	"github.com/shopflow/shopflow/services/inventory/migrations"
)

// Name is the service's name and consumer group; Schema its PostgreSQL
// schema.
const (
	Name   = "inventory"
	Schema = "inventory"
)

// Source is the ce_source of the events the service publishes.
const Source = app.Source

// DefaultHTTPAddr is where the API listens unless HTTP_ADDR says otherwise.
const DefaultHTTPAddr = ":8082"

// Config is the inventory service's configuration.
type Config struct {
	config.Common
	// AdminToken guards PUT /v1/stock/{sku}; unset, that endpoint answers
	// 403.
	AdminToken string `env:"ADMIN_TOKEN" secret:"true"`
	// LockTimeout bounds how long applying an event (or an admin update)
	// waits for a stock row lock before failing and being retried.
	LockTimeout time.Duration `env:"INVENTORY_LOCK_TIMEOUT" envDefault:"5s"`
}

// Validate checks the inventory's own settings (Common checks itself) and
// reports every bad one.
func (c Config) Validate() error {
	var errs []error
	if err := httpserver.CheckToken(c.AdminToken); err != nil {
		errs = append(errs, &config.VarError{Var: "ADMIN_TOKEN", Err: err})
	}
	if c.LockTimeout <= 0 {
		errs = append(errs, &config.VarError{Var: "INVENTORY_LOCK_TIMEOUT", Err: fmt.Errorf("%s is not a positive duration", c.LockTimeout)})
	}
	return errors.Join(errs...)
}

// LoadConfig reads Config from the environment.
func LoadConfig() (Config, error) {
	return config.Load[Config](config.WithDefault("HTTP_ADDR", DefaultHTTPAddr))
}

// Variables lists the variables LoadConfig reads, with its defaults, for
// the binary's usage message.
func Variables() []config.Variable {
	return config.Variables[Config](config.WithDefault("HTTP_ADDR", DefaultHTTPAddr))
}

// Spec declares the service to the platform: its schema and migrations,
// the topics it creates (shop.orders, which it consumes, and
// shop.inventory, where its results go) and its consumer.
func Spec() service.Spec {
	return service.Spec{
		Name:       Name,
		Schema:     Schema,
		Migrations: pg.Migrations{Name: migrations.Table, FS: migrations.FS()},
		Topics: []kafkatopics.Spec{
			{Name: events.TopicOrders, Partitions: 12},
			{Name: events.TopicInventory, Partitions: 12},
		},
		ConsumeTopics: []string{events.TopicOrders},
		// Every order locks rows of the same few SKUs, and a batch holds
		// its locks until it commits: parallel batches would only wait on
		// each other (and deadlock across orders). One worker.
		Parallelism: 1,
	}
}

// Run runs the service until ctx ends, then shuts it down in order (see
// pkg/platform/service). It returns an error if start-up fails.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := errors.Join(cfg.Common.Validate(), cfg.Validate()); err != nil {
		return err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log.Info("starting", "service", Name, "config", config.Redacted(cfg))
	if cfg.AdminToken == "" {
		log.Warn("ADMIN_TOKEN is not set: PUT /v1/stock/{sku} answers 403", "service", Name)
	}
	return service.Run(ctx, Spec(), cfg.Common, log, func(ctx context.Context, d service.Deps) (service.Parts, error) {
		svc := app.New(d.Pool, d.Log, cfg.LockTimeout)
		return service.Parts{
			Routes: httpapi.New(svc, cfg.AdminToken).Routes,
			// An order id in another form than the order service's is
			// another text for the same reservation (the column is text),
			// so it is dead-lettered before it is applied.
			BatchHandler: inbox.Checked(events.Event.CheckOrderID, consume.BatchHandler(svc, d.Log)),
		}, nil
	})
}
