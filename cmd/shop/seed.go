package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/shopflow/shopflow/cmd/shop/devstate"
	"github.com/shopflow/shopflow/cmd/shop/seed"
	"github.com/shopflow/shopflow/pkg/platform/config"
)

// cmdSeed loads the demo catalog and stock into running services.
func cmdSeed(ctx context.Context, args []string, stdout, stderr io.Writer, _ *slog.Logger) error {
	fs := flag.NewFlagSet("shop seed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	orderURL := fs.String("order", "", "order service base URL (default: the running shop dev's, else "+defaultOrderURL+")")
	inventoryURL := fs.String("inventory", "", "inventory service base URL (default: the running shop dev's, else "+defaultInventoryURL+")")
	token := fs.String("admin-token", envOr("ADMIN_TOKEN", wellKnownToken), "the services' ADMIN_TOKEN")
	dataDir := fs.String("data-dir", defaultDataDir, dataDirUsage)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		// Parsing stops at the first argument that is not a flag: the
		// flags after it would be ignored without a word.
		return fmt.Errorf("seed: unexpected argument %q", fs.Arg(0))
	}
	var errs []error
	for _, f := range []struct {
		name string
		url  *string
	}{{"order", orderURL}, {"inventory", inventoryURL}} {
		if flagSet(fs, f.name) {
			errs = append(errs, checkBaseURL(f.name, *f.url))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	if !flagSet(fs, "order") || !flagSet(fs, "inventory") {
		dev, err := runningDev(fs, *dataDir, "--order and --inventory")
		if err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		*orderURL = serviceURL(fs, "order", *orderURL, dev, defaultOrderURL)
		*inventoryURL = serviceURL(fs, "inventory", *inventoryURL, dev, defaultInventoryURL)
		if dev != nil && !dev.WellKnownAdminToken && !flagSet(fs, "admin-token") && os.Getenv("ADMIN_TOKEN") == "" {
			return fmt.Errorf("seed: %s gave the services an admin token of its own (its banner shows it): pass --admin-token or set ADMIN_TOKEN",
				devName(dev, *dataDir))
		}
		sayTarget(stderr, "seed", "order "+*orderURL+", inventory "+*inventoryURL, dev, *dataDir)
	}
	res, err := seed.Seed(ctx, *orderURL, *inventoryURL, *token, stderr)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	fmt.Fprintf(stdout, "seed: %d products added, %d already in the catalog; stock set for %d SKUs, %d already stocked\n",
		res.Products, res.ProductsPresent, res.StockSet, res.StockPresent)
	return nil
}

// The services' addresses under shop dev's defaults.
const (
	defaultOrderURL     = "http://127.0.0.1:8080"
	defaultInventoryURL = "http://127.0.0.1:8082"
)

// serviceURL returns the base URL of service name: v when its flag was
// given, else the one of dev (the running shop dev; nil for none), else def.
func serviceURL(fs *flag.FlagSet, name, v string, dev *devstate.State, def string) string {
	switch {
	case flagSet(fs, name):
		return v
	case dev != nil && dev.URLs[name] != "":
		return dev.URLs[name]
	default:
		return def
	}
}

// checkBaseURL checks a service address flag (--order, --inventory): an
// http(s) URL with a host, which "notaurl" is not (it failed later as
// `Put "notaurl/v1/products/SKU-0001": unsupported protocol scheme ""`).
func checkBaseURL(flagName, v string) error {
	if err := config.CheckBaseURL(v); err != nil {
		return fmt.Errorf("--%s: %w (like http://127.0.0.1:8080)", flagName, err)
	}
	return nil
}
