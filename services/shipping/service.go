// Package shipping is shopflow's shipping service. It consumes the order
// events on shop.orders and, through the transactional outbox, publishes
// its results on shop.shipments:
//
//   - OrderPlaced: books a shipment with the carrier (a tracking number
//     "SF" + 10 digits + a Luhn check digit, and a pickup slot on the next
//     business day after the order's receipt, see shipment.Schedule), then
//     emits ShipmentScheduled. An address the carrier cannot take goes to
//     the dead-letter topic shop.dlq.shipping with the reason.
//   - OrderCancelled: cancels the shipment and emits ShipmentCancelled; a
//     cancellation of an order never scheduled here is recorded, emits
//     nothing, and keeps a late OrderPlaced for that order from booking.
//   - OrderConfirmed: marks the shipment ready for pickup (no event).
//
// Every record is applied once (the inbox), and every handler is also
// idempotent by order id, so duplicates and redeliveries have one effect.
// The consumer applies the records of an inbox transaction together, in
// two database round trips however many there are (see package consume).
//
// HTTP (default :8083): GET /v1/shipments/{order_id} and
// GET /v1/shipments/{order_id}/label (a 4×6 inch PDF with the address and
// a Code 128 barcode of the tracking number), besides the platform's
// /healthz, /readyz and /metrics.
//
// Configuration: the common variables (DATABASE_URL, KAFKA_BROKERS,
// HTTP_ADDR, LOG_LEVEL, ...) plus SHIPPING_TIMEZONE (IANA zone of the
// warehouse, default UTC) and SHIPPING_CUTOFF (HH:MM local, default 15:00).
package shipping

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
	_ "time/tzdata" // SHIPPING_TIMEZONE must resolve on images without a zoneinfo database

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/config"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
	"github.com/shopflow/shopflow/pkg/platform/kafkatopics"
	"github.com/shopflow/shopflow/pkg/platform/service"
	"github.com/shopflow/shopflow/services/shipping/internal/consume"
	"github.com/shopflow/shopflow/services/shipping/internal/httpapi"
	"github.com/shopflow/shopflow/services/shipping/internal/shipment"
)

// Name is the service's name and consumer group; Schema its PostgreSQL schema.
const (
	Name   = "shipping"
	Schema = "shipping"
)

// DefaultHTTPAddr is where the API listens unless HTTP_ADDR says otherwise.
const DefaultHTTPAddr = ":8083"

// Source is the ce_source of the events the service emits.
const Source = consume.Source

// Config is the service's configuration.
type Config struct {
	config.Common
	// TimeZone is the IANA name of the warehouse's time zone, in which the
	// cutoff and the pickup slots are reckoned. Empty means UTC.
	TimeZone string `env:"SHIPPING_TIMEZONE" envDefault:"UTC"`
	// Cutoff is the local time of day (HH:MM) after which an order counts
	// as received the next business day. Empty means 15:00.
	Cutoff string `env:"SHIPPING_CUTOFF" envDefault:"15:00"`
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

// Validate checks the common settings and the shipping ones, reporting
// every problem with the variable it concerns.
func (c Config) Validate() error {
	_, err := c.schedule()
	return errors.Join(c.Common.Validate(), err)
}

// schedule builds the pickup calendar from TimeZone and Cutoff.
func (c Config) schedule() (shipment.Schedule, error) {
	var errs []error
	zone, cut := c.TimeZone, c.Cutoff
	if zone == "" {
		zone = "UTC"
	}
	if cut == "" {
		cut = "15:00"
	}
	loc, err := time.LoadLocation(zone)
	if err != nil || zone == "Local" { // Local is the host's zone, whatever it is: not a warehouse's
		errs = append(errs, &config.VarError{Var: "SHIPPING_TIMEZONE",
			Err: fmt.Errorf("%q is not an IANA time zone name like Europe/Berlin", zone)})
	}
	cutoff, err := shipment.ParseCutoff(cut)
	if err != nil {
		errs = append(errs, &config.VarError{Var: "SHIPPING_CUTOFF", Err: err})
	}
	return shipment.Schedule{Location: loc, Cutoff: cutoff}, errors.Join(errs...)
}

// Spec declares the service to the platform runtime.
func Spec() service.Spec {
	return service.Spec{
		Name:       Name,
		Schema:     Schema,
		Migrations: Migrations(),
		Topics: []kafkatopics.Spec{
			{Name: events.TopicOrders, Partitions: kafkatopics.DefaultPartitions},
			{Name: events.TopicShipments, Partitions: kafkatopics.DefaultPartitions},
		},
		ConsumeTopics: []string{events.TopicOrders},
	}
}

// Run runs the service until ctx ends, then shuts it down gracefully.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	sched, err := cfg.schedule()
	if err != nil {
		return err
	}
	log.Info("starting", "service", Name, "config", config.Redacted(cfg))
	return service.Run(ctx, Spec(), cfg.Common, log, func(ctx context.Context, d service.Deps) (service.Parts, error) {
		return service.Parts{
			Routes: httpapi.API{DB: d.Pool}.Routes,
			// An order id in another form than the order service's is
			// another text for the same shipment (the column is text),
			// so it is dead-lettered before it is applied.
			BatchHandler: inbox.Checked(events.Event.CheckOrderID, consume.Handler{Schedule: sched, Log: d.Log}.HandleBatch),
		}, nil
	})
}
