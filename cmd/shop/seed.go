package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/shopflow/shopflow/cmd/shop/seed"
	"github.com/shopflow/shopflow/pkg/platform/config"
)

// cmdSeed loads the demo catalog and stock into running services.
func cmdSeed(ctx context.Context, args []string, stdout, stderr io.Writer, _ *slog.Logger) error {
	fs := flag.NewFlagSet("shop seed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	orderURL := fs.String("order", "http://127.0.0.1:8080", "order service base URL")
	inventoryURL := fs.String("inventory", "http://127.0.0.1:8082", "inventory service base URL")
	token := fs.String("admin-token", envOr("ADMIN_TOKEN", wellKnownToken), "the services' ADMIN_TOKEN")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		// Parsing stops at the first argument that is not a flag: the
		// flags after it would be ignored without a word.
		return fmt.Errorf("seed: unexpected argument %q", fs.Arg(0))
	}
	if err := errors.Join(checkBaseURL("order", *orderURL), checkBaseURL("inventory", *inventoryURL)); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	res, err := seed.Seed(ctx, *orderURL, *inventoryURL, *token)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	fmt.Fprintf(stdout, "seed: %d products added, %d already in the catalog; stock set for %d SKUs, %d already stocked\n",
		res.Products, res.ProductsPresent, res.StockSet, res.StockPresent)
	return nil
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
