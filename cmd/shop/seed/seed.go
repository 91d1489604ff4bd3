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
	"slices"
	"strings"
	"time"

	"github.com/shopflow/shopflow/cmd/shop/answer"
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
// match "//v1/..."). A request answered 429 or 503 (the admin token's
// throttle, a service still starting) is sent again after the answer's
// Retry-After, each wait at most answer.MaxWait, up to maxAttempts in
// all; waits, when not nil, is told of each wait, a line each.
func Seed(ctx context.Context, orderURL, inventoryURL, adminToken string, waits io.Writer) (Result, error) {
	orderURL, inventoryURL = strings.TrimRight(orderURL, "/"), strings.TrimRight(inventoryURL, "/")
	var res Result
	c := &client{http: &http.Client{Timeout: 10 * time.Second}, token: adminToken, waits: waits, sleep: answer.Sleep}
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

// maxAttempts bounds the requests sent for one PUT answered 429 or 503:
// with waits of at most answer.MaxWait, two minutes, twice what the admin
// token's throttle refuses a client for.
const maxAttempts = 5

type client struct {
	http  *http.Client
	token string
	// waits is told of each wait before a request is sent again (nil:
	// nobody); sleep waits (the tests' records the wait instead).
	waits io.Writer
	sleep func(context.Context, time.Duration) bool
}

// do sends a JSON request with the headers hdr and wants one of the
// statuses. A 429 or a 503 is sent again after its Retry-After (at most
// answer.MaxWait; without one, after 1 s, then 2 s...), up to maxAttempts
// in all; any other answer is final. An error answer is said in plain
// text (answer.Text: a problem's title and detail).
func (c *client) do(ctx context.Context, method, url string, body any, hdr http.Header, want ...int) (int, error) {
	var b []byte
	if body != nil {
		var err error
		if b, err = json.Marshal(body); err != nil {
			return 0, err
		}
	}
	backoff := time.Second
	for attempt := 1; ; attempt++ {
		status, header, text, err := c.send(ctx, method, url, b, hdr)
		if err != nil {
			return 0, err
		}
		if slices.Contains(want, status) {
			return status, nil
		}
		err = fmt.Errorf("%s %s: %d %s", method, url, status, text)
		if status != http.StatusTooManyRequests && status != http.StatusServiceUnavailable {
			return status, err
		}
		if attempt == maxAttempts {
			return status, fmt.Errorf("gave up after %d attempts: %w", attempt, err)
		}
		wait := backoff
		if after, ok := answer.RetryAfter(header, time.Now()); ok {
			wait = min(after, answer.MaxWait)
		}
		backoff = min(2*backoff, answer.MaxWait)
		if c.waits != nil {
			fmt.Fprintf(c.waits, "seed: %v; sending it again in %s\n", err, wait.Round(time.Second))
		}
		if !c.sleep(ctx, wait) {
			return status, fmt.Errorf("%w (stopped before sending it again: %w)", err, context.Cause(ctx))
		}
	}
}

// send sends one request and reads its answer: the status, the headers,
// the body as answer.Text says it.
func (c *client) send(ctx context.Context, method, url string, body []byte, hdr http.Header) (int, http.Header, string, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, "", err
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
		return 0, nil, "", err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	return res.StatusCode, res.Header, answer.Text(b), nil
}
