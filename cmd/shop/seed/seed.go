// Package seed loads the demo catalog (order service) and its stock
// (inventory service) through the services' admin APIs. It is idempotent:
// products are created only where the catalog has none, and stock set
// only for SKUs the inventory does not know yet, so seeding a running
// shop again (every start of shop dev does) never undoes an admin's
// price or deactivation, nor restocks what was sold (shop check relies
// on that to prove stock is conserved).
package seed

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Product is one demo catalog entry and its initial stock.
type Product struct {
	SKU        string
	Name       string
	PriceCents int64
	Currency   string
	Stock      int64
}

// OutOfStockSKU is a demo product seeded with no stock: ordering it is
// how `shop load` exercises StockRejected.
const OutOfStockSKU = "SKU-0099"

// Catalog is the demo catalog. Prices are in cents (USD).
var Catalog = []Product{
	{"SKU-0001", "Espresso beans, 1 kg", 2499, "USD", 100000},
	{"SKU-0002", "Filter papers, 100", 499, "USD", 100000},
	{"SKU-0003", "Burr grinder", 12900, "USD", 100000},
	{"SKU-0004", "Pour-over kettle", 5900, "USD", 100000},
	{"SKU-0005", "Ceramic dripper", 2900, "USD", 100000},
	{"SKU-0006", "Milk jug, 600 ml", 1900, "USD", 100000},
	{"SKU-0007", "Tamper, 58 mm", 3400, "USD", 100000},
	{"SKU-0008", "Cup set, 4", 3900, "USD", 100000},
	{"SKU-0009", "Descaler, 500 ml", 1200, "USD", 100000},
	{"SKU-0010", "Cold brew bottle", 2700, "USD", 100000},
	{"SKU-0011", "Scale with timer", 4900, "USD", 100000},
	{"SKU-0012", "Travel mug", 2200, "USD", 100000},
	{OutOfStockSKU, "Limited edition roaster", 89900, "USD", 0},
	// A premium machine whose price takes orders over the fake gateway's
	// 10,000.00 limit with a few units.
	{"SKU-0100", "Dual boiler espresso machine", 349900, "USD", 100000},
}

// Initial returns the seeded stock by SKU (shop check's baseline).
func Initial() map[string]int64 {
	m := make(map[string]int64, len(Catalog))
	for _, p := range Catalog {
		m[p.SKU] = p.Stock
	}
	return m
}

// Result counts what a seeding did.
type Result struct {
	Products        int // created in the catalog
	ProductsPresent int // products left as they were
	StockSet        int // SKUs given their initial stock
	StockPresent    int // SKUs left as they were
}

// Seed creates the catalog in the order service and the initial stock in
// the inventory service at the given base URLs, where they are missing.
// Trailing slashes on the URLs are dropped (the services' routes do not
// match "//v1/...").
func Seed(ctx context.Context, orderURL, inventoryURL, adminToken string) (Result, error) {
	orderURL, inventoryURL = strings.TrimRight(orderURL, "/"), strings.TrimRight(inventoryURL, "/")
	var res Result
	c := &client{http: &http.Client{Timeout: 10 * time.Second}, token: adminToken}
	for _, p := range Catalog {
		body := map[string]any{"name": p.Name, "price_cents": p.PriceCents, "currency": p.Currency, "active": true}
		// Products and stock are created only where there are none: an
		// existing product (an admin changed its price or took it off
		// sale) and an existing level (orders reserved and sold from
		// it, an admin set it) are kept. If-None-Match: * makes each a
		// single step (412: it exists).
		status, err := c.do(ctx, "PUT", orderURL+"/v1/products/"+p.SKU, body, createOnly, http.StatusCreated, http.StatusPreconditionFailed)
		if err != nil {
			return res, fmt.Errorf("catalog %s: %w", p.SKU, err)
		}
		if status == http.StatusCreated {
			res.Products++
		} else {
			res.ProductsPresent++
		}
		status, err = c.do(ctx, "PUT", inventoryURL+"/v1/stock/"+p.SKU, map[string]any{"on_hand": p.Stock},
			createOnly, http.StatusCreated, http.StatusPreconditionFailed)
		if err != nil {
			return res, fmt.Errorf("stock %s: %w", p.SKU, err)
		}
		if status == http.StatusPreconditionFailed {
			res.StockPresent++
			continue
		}
		res.StockSet++
	}
	return res, nil
}

// createOnly makes a PUT create what is not there and change nothing
// that is.
var createOnly = http.Header{"If-None-Match": {"*"}}

type client struct {
	http  *http.Client
	token string
}

// do sends a JSON request with the headers hdr and wants one of the
// statuses.
func (c *client) do(ctx context.Context, method, url string, body any, hdr http.Header, want ...int) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	res, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	for _, w := range want {
		if res.StatusCode == w {
			return w, nil
		}
	}
	return res.StatusCode, fmt.Errorf("%s %s: %d %s", method, url, res.StatusCode, bytes.TrimSpace(b))
}
