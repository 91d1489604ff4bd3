// Package order is shopflow's order service: the customer-facing REST API
// (orders, catalog), the transactional outbox that announces each order on
// shop.orders, and the saga that turns the payment, inventory and shipping
// results into the order's status (ARCHITECTURE.md, "The saga").
//
// cmd/order runs it as a process; cmd/shop and the end-to-end tests run it
// in-process through Run.
package order

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"golang.org/x/text/currency"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/config"
	"github.com/shopflow/shopflow/pkg/platform/httpserver"
	"github.com/shopflow/shopflow/pkg/platform/kafkatopics"
	"github.com/shopflow/shopflow/pkg/platform/pg"
	"github.com/shopflow/shopflow/pkg/platform/service"
	"github.com/shopflow/shopflow/services/order/internal/app"
	"github.com/shopflow/shopflow/services/order/internal/consume"
	"github.com/shopflow/shopflow/services/order/internal/httpapi"
	"github.com/shopflow/shopflow/services/order/internal/web"
)

// Config is the order service's configuration.
type Config struct {
	config.Common
	// AdminToken guards the admin endpoints (PUT /v1/products/{sku});
	// unset disables them.
	AdminToken string `env:"ADMIN_TOKEN" secret:"true"`
	// Currencies are the ISO 4217 codes orders may be placed in.
	Currencies Currencies `env:"ORDER_CURRENCIES" envDefault:"USD,EUR,GBP"`
	// InventoryURL is where the storefront asks for availability.
	InventoryURL string `env:"INVENTORY_URL" envDefault:"http://127.0.0.1:8082"`
	// ShippingURL is the shipping service as this service reaches it:
	// the order page's label link is the order service's own, which
	// fetches the PDF from there.
	ShippingURL string `env:"SHIPPING_URL" envDefault:"http://127.0.0.1:8083"`
	// OpsPeers are the other services (name=base URL) whose /metrics the
	// ops dashboard reads for their outbox backlog.
	OpsPeers map[string]string `env:"OPS_PEERS" envSeparator:"," envKeyValSeparator:"=" format:"comma-separated list of name=URL pairs (like payment=http://127.0.0.1:8081,shipping=http://127.0.0.1:8083)" envDefault:"payment=http://127.0.0.1:8081,inventory=http://127.0.0.1:8082,shipping=http://127.0.0.1:8083"`
	// PlacementBatches bounds the placement transactions in flight; the
	// placements that arrive meanwhile are stored together in the next
	// one (0 in code: app.DefaultPlacementBatches).
	PlacementBatches int `env:"ORDER_PLACEMENT_BATCHES" envDefault:"2"`
	// PendingTimeout cancels an order still pending this long after it
	// was placed (0: never), so a step that never answers does not hold
	// the customer's money and the stock for good.
	PendingTimeout time.Duration `env:"ORDER_PENDING_TIMEOUT" envDefault:"30m"`
	// MaxStreams bounds the order pages' event streams open at once (a
	// stream more is answered 503); MaxStreamsPerClient, those of one
	// client address (429). 0 in code means web's defaults.
	MaxStreams          int `env:"ORDER_MAX_STREAMS" envDefault:"1000"`
	MaxStreamsPerClient int `env:"ORDER_MAX_STREAMS_PER_CLIENT" envDefault:"20"`
}

var currencyCode = regexp.MustCompile(`^[A-Z]{3}$`)

// Currencies is ORDER_CURRENCIES: ISO 4217 codes, comma-separated, taken
// in any case ("usd,EUR") and kept in upper case, the form orders name
// them in. Config.Validate checks each.
type Currencies []string

// UnmarshalText reads a comma-separated list, upper-casing each entry
// and changing nothing else (an empty entry stays, for Validate to name).
func (c *Currencies) UnmarshalText(text []byte) error {
	*c = strings.Split(strings.ToUpper(string(text)), ",")
	return nil
}

// maxStreams is ORDER_MAX_STREAMS's largest value: each stream holds a
// connection and a file descriptor.
const maxStreams = 100_000

// Validate checks the order service's own settings (Common's are checked
// by config.Load too) and reports every bad one, each a *config.VarError.
func (c Config) Validate() error {
	var errs []error
	bad := func(name string, err error) { errs = append(errs, &config.VarError{Var: name, Err: err}) }

	if err := httpserver.CheckToken(c.AdminToken); err != nil {
		bad("ADMIN_TOKEN", err)
	}
	if len(c.Currencies) == 0 {
		bad("ORDER_CURRENCIES", errors.New("missing"))
	}
	var notCodes []string // each problem once: ",," is one mistake
	for _, cur := range c.Currencies {
		msg := ""
		if cur == "" {
			msg = config.EmptyEntry("ISO 4217 codes like USD")
		} else if _, err := currency.ParseISO(cur); err != nil || !currencyCode.MatchString(cur) {
			msg = fmt.Sprintf("%q is not an ISO 4217 code like USD", cur)
		}
		if msg != "" && !slices.Contains(notCodes, msg) {
			notCodes = append(notCodes, msg)
		}
	}
	if len(notCodes) > 0 {
		bad("ORDER_CURRENCIES", errors.New(strings.Join(notCodes, "; ")))
	}
	if err := config.CheckBaseURL(c.InventoryURL); err != nil {
		bad("INVENTORY_URL", err)
	}
	if err := config.CheckBaseURL(c.ShippingURL); err != nil {
		bad("SHIPPING_URL", err)
	}
	pool := c.DBMaxConns
	if pool == 0 {
		pool = int32(max(4, runtime.NumCPU())) // pgxpool's default
	}
	switch {
	case c.PlacementBatches < 0 || c.PlacementBatches > 64:
		bad("ORDER_PLACEMENT_BATCHES", fmt.Errorf("%d is not in 0..64 (0: the default, 2)", c.PlacementBatches))
	case c.DBMaxConns < 0 || c.DBMaxConns > 1000:
		// Out of range, which config.Common reports: a pool of -1 says
		// nothing about the batches.
	case int32(cmp.Or(c.PlacementBatches, app.DefaultPlacementBatches)) >= pool:
		n := strconv.Itoa(c.PlacementBatches)
		if c.PlacementBatches == 0 {
			n = fmt.Sprintf("0 (the default, %d)", app.DefaultPlacementBatches)
		}
		bad("ORDER_PLACEMENT_BATCHES", fmt.Errorf(
			"%s would leave no connection of a pool of %d (DB_MAX_CONNS) to reads and the saga; keep it below", n, pool))
	}
	if c.MaxStreams < 0 || c.MaxStreams > maxStreams {
		bad("ORDER_MAX_STREAMS", fmt.Errorf("%d is not in 0..%d (0: the default, %d)", c.MaxStreams, maxStreams, web.DefaultMaxStreams))
	}
	if c.MaxStreamsPerClient < 0 || c.MaxStreamsPerClient > maxStreams {
		bad("ORDER_MAX_STREAMS_PER_CLIENT", fmt.Errorf("%d is not in 0..%d (0: the default, %d)", c.MaxStreamsPerClient, maxStreams, web.DefaultMaxStreamsPerClient))
	}
	if c.PendingTimeout != 0 && c.PendingTimeout < time.Second {
		bad("ORDER_PENDING_TIMEOUT", fmt.Errorf("%s is below 1s (0 turns expiry off)", c.PendingTimeout))
	}
	// One message for every bad peer, in name order (a map has none).
	var badPeers []string
	for _, peer := range slices.Sorted(maps.Keys(c.OpsPeers)) {
		if peer == "" {
			badPeers = append(badPeers, fmt.Sprintf("%q has no name before its =", config.MaskURL(c.OpsPeers[peer])))
			continue
		}
		if err := config.CheckBaseURL(c.OpsPeers[peer]); err != nil {
			badPeers = append(badPeers, fmt.Sprintf("%s: %v", peer, err))
		}
	}
	if len(badPeers) > 0 {
		bad("OPS_PEERS", errors.New(strings.Join(badPeers, "; ")))
	}
	return errors.Join(errs...)
}

// DefaultHTTPAddr is where the order service listens unless HTTP_ADDR says.
const DefaultHTTPAddr = ":8080"

// Name is the service's name and consumer group.
const Name = "order"

// LoadConfig reads Config from the environment.
func LoadConfig() (Config, error) {
	return config.Load[Config](config.WithDefault("HTTP_ADDR", DefaultHTTPAddr))
}

// Variables lists the variables LoadConfig reads, with its defaults, for
// the binary's usage message.
func Variables() []config.Variable {
	return config.Variables[Config](config.WithDefault("HTTP_ADDR", DefaultHTTPAddr))
}

//go:embed migrations/*.sql
var migrations embed.FS

// OpenAPI is the API's description, served at /openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte

// Partitions of the topics the service creates when they are missing.
const Partitions = 12

// Spec describes the order service to the platform runtime.
func Spec() service.Spec {
	mig, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the embedded path is fixed at compile time
	}
	topics := []kafkatopics.Spec{}
	for _, t := range []string{events.TopicOrders, events.TopicPayments, events.TopicInventory, events.TopicShipments} {
		topics = append(topics, kafkatopics.Spec{Name: t, Partitions: Partitions})
	}
	return service.Spec{
		Name:          Name,
		Schema:        "orders",
		Migrations:    pg.Migrations{Name: "orders_version", FS: mig},
		Topics:        topics,
		ConsumeTopics: []string{events.TopicPayments, events.TopicInventory, events.TopicShipments},
	}
}

// Run runs the order service until ctx ends, then shuts it down in order.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	log.Info("starting", "service", Spec().Name, "config", config.Redacted(&cfg))
	return service.Run(ctx, Spec(), cfg.Common, log, func(ctx context.Context, d service.Deps) (service.Parts, error) {
		a := app.New(d.Pool, cfg.Currencies, d.Log, d.Wake, cfg.PlacementBatches)
		for _, c := range a.Collectors() {
			if err := d.Registry.Register(c); err != nil {
				return service.Parts{}, err
			}
		}
		api := httpapi.New(a, cfg.AdminToken, OpenAPI, cfg.HTTPRequestTimeout)
		// The dashboard's Kafka requests get their own transport: the
		// service's SASL/TLS settings, and a metadata cache of its own.
		transport, err := cfg.Kafka.Transport()
		if err != nil {
			return service.Parts{}, err
		}
		pages, err := web.New(a, d.Pool, web.Config{
			InventoryURL: strings.TrimSuffix(cfg.InventoryURL, "/"), ShippingURL: strings.TrimSuffix(cfg.ShippingURL, "/"),
			Peers: cfg.OpsPeers, Brokers: cfg.KafkaBrokers, TopicPrefix: cfg.KafkaTopicPrefix, Transport: transport,
			MaxStreams: cfg.MaxStreams, MaxStreamsPerClient: cfg.MaxStreamsPerClient,
		}, d.Log)
		if err != nil {
			return service.Parts{}, err
		}
		for _, c := range pages.Collectors() {
			if err := d.Registry.Register(c); err != nil {
				return service.Parts{}, err
			}
		}
		return service.Parts{
			// The pages are mounted beside the API, not in it, so the
			// OpenAPI document stays about the API.
			Routes: func(r chi.Router) {
				api.Routes(r)
				pages.Routes(r)
			},
			BatchHandler: consume.Handler(a),
			Background: []func(context.Context) error{
				func(ctx context.Context) error { return a.PruneKeys(ctx, 10*time.Minute) },
				a.CountOrders,
				func(ctx context.Context) error {
					if cfg.PendingTimeout == 0 {
						return nil
					}
					return a.ExpireLoop(ctx, cfg.PendingTimeout, expiryInterval(cfg.PendingTimeout),
						min(expirySlack, cfg.PendingTimeout), d.ReadUpTo)
				},
			},
		}, nil
	})
}

// expirySlack is what ExpireLoop allows a round to take beyond its
// interval before the gap between two looks counts as a hold-up (the
// broker's answer alone may take 10 s on a bad day); for a timeout shorter
// than it, the timeout.
const expirySlack = 15 * time.Second

// expiryInterval is how often pending orders are looked at for expiry: a
// tenth of the timeout, between 1 s and 1 min. An order is cancelled five
// to six intervals and the slack after its timeout (ExpireLoop): 5 min
// 15 s to 6 min 15 s for the default 30 min, while events flow steadily.
func expiryInterval(timeout time.Duration) time.Duration {
	return min(max(timeout/10, time.Second), time.Minute)
}
