// Package web serves the order service's pages for people: the storefront
// (/), an order's live status (/orders/{id}) and the ops dashboard (/ops).
//
// The pages are rendered on the server with html/template; the templates,
// the style sheet and a little plain JavaScript are embedded in the binary,
// so nothing is built and nothing is loaded from elsewhere. The browser
// places orders through the public API (POST /v1/orders with an
// Idempotency-Key) like any other client; the order page follows the saga
// through a server-sent event stream that polls the order's row, and the
// dashboard polls a JSON snapshot. Each page still shows its data without
// JavaScript and offers a refresh link.
//
// What the order service does not own it asks for, never failing a page
// because of it: availability from the inventory service (GET
// /v1/stock/{sku}, short timeout, "unknown" when it does not answer), the
// other services' outbox backlog from their /metrics, consumer lag and
// dead letters from Kafka.
package web

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/httpserver"
	"github.com/shopflow/shopflow/services/order/internal/order"
	"github.com/shopflow/shopflow/services/order/internal/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Orders is what the pages need of the use cases (*app.App).
type Orders interface {
	Get(ctx context.Context, id string) (order.Order, error)
	Products(ctx context.Context) ([]order.Product, error)
	StatusCounts(ctx context.Context) (map[string]int64, error)
}

// Config is what the pages need to know about the rest of the shop.
type Config struct {
	// InventoryURL is the inventory service's base URL (availability).
	InventoryURL string
	// ShippingURL is the shipping service's base URL as this service
	// reaches it: the order page's label link is the order service's own
	// /orders/{id}/label, which fetches the PDF from there, so the
	// browser needs no route to shipping.
	ShippingURL string
	// Peers are the other services' base URLs by name, whose /metrics
	// give their outbox backlog.
	Peers map[string]string
	// Brokers and TopicPrefix locate the topics and groups for the lag
	// and dead-letter figures.
	Brokers     []string
	TopicPrefix string
	// Transport, if set, carries the Kafka requests (the service's SASL
	// and TLS settings); nil is kafka-go's default.
	Transport kafka.RoundTripper
	// PollInterval is how often the order streams' orders are read, all
	// in one query (default 300 ms).
	PollInterval time.Duration
	// MaxStreams bounds the order event streams open at once
	// (ORDER_MAX_STREAMS; 0: DefaultMaxStreams); MaxStreamsPerClient,
	// those of one client address (ORDER_MAX_STREAMS_PER_CLIENT; 0:
	// DefaultMaxStreamsPerClient).
	MaxStreams, MaxStreamsPerClient int
	// Timeout bounds each call to another service or Kafka made while
	// rendering (default 800 ms), so a dead dependency costs a page that
	// long at most.
	Timeout time.Duration
}

// Web serves the pages.
type Web struct {
	orders Orders
	pool   *pgxpool.Pool
	cfg    Config
	log    *slog.Logger
	http   *http.Client
	labels *http.Client // for the shipping labels it passes on (label)
	pages  map[string]*template.Template
	static http.Handler
	// problemLog throttles the ops dashboard's log of figures it could
	// not read.
	problemLog everyMinute
	// snapshots and stocks share the dashboard's figures and the
	// storefront's availability among the pages' viewers.
	snapshots shared[snapshot]
	stocks    shared[map[string]int64]
	// streams bounds the open event streams, and watcher reads their
	// orders (see streams.go).
	streams *streamLimits
	watcher *watcher
}

// New returns the pages over orders and the service's pool. Open event
// streams end when the HTTP server begins its shutdown
// (httpserver.Stopping), not before: during SHUTDOWN_DRAIN_DELAY they run
// on as every other request is served.
func New(orders Orders, pool *pgxpool.Pool, cfg Config, log *slog.Logger) (*Web, error) {
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 300 * time.Millisecond
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	if cfg.MaxStreamsPerClient <= 0 {
		cfg.MaxStreamsPerClient = DefaultMaxStreamsPerClient
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 800 * time.Millisecond
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	static, err := staticFiles(sub)
	if err != nil {
		return nil, err
	}
	return &Web{
		orders: orders, pool: pool, cfg: cfg, log: log, pages: pages,
		http:    &http.Client{Timeout: cfg.Timeout},
		labels:  &http.Client{Timeout: labelTimeout},
		static:  http.StripPrefix("/static/", static),
		streams: newStreamLimits(cfg.MaxStreams, cfg.MaxStreamsPerClient),
		watcher: newWatcher(pool, cfg.PollInterval, log),
	}, nil
}

// Routes mounts the pages on r. They stay out of the API's routes, so
// the OpenAPI document describes only the API.
func (wb *Web) Routes(r chi.Router) {
	r.Get("/", wb.storefront)
	r.Get("/orders/{id}", wb.orderPage)
	r.Get("/orders/{id}/events", wb.orderEvents)
	r.Get("/orders/{id}/label", wb.label)
	r.Get("/ops", wb.opsPage)
	r.Get("/ops/data", wb.opsData)
	r.Get("/static/*", wb.static.ServeHTTP)
	// A browser that follows a stale or mistyped link (/orders/, /ops/)
	// gets a page that leads back to the shop; API clients the problem.
	r.NotFound(httpserver.NotFoundPage(func(w http.ResponseWriter, r *http.Request) {
		wb.errorPage(w, r, httpserver.Problem{Status: http.StatusNotFound}, "Page not found", "There is no page at this address.")
	}))
}

// staticFiles serves the files of fsys with Cache-Control: no-cache and
// an ETag of their content: a browser asks again each time (a 304 when it
// has the file), so after an upgrade it never runs the old script against
// the new page, as an hour's max-age let it. Anything else (a directory,
// whose listing http.FileServer would show, or a missing file) is the
// API's 404 problem, not FileServer's plain text.
func staticFiles(fsys fs.FS) (http.Handler, error) {
	etags := map[string]string{}
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		etags[name] = `"` + hex.EncodeToString(sum[:16]) + `"`
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("web: static files: %w", err)
	}
	files := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/")
		etag, ok := etags[name]
		if !ok {
			// r.URL.Path has lost its /static/ to StripPrefix.
			httpserver.WriteProblem(w, r, httpserver.Problem{Status: http.StatusNotFound,
				Detail: "no such file: /static/" + name, Instance: "/static/" + name})
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("ETag", etag) // http.ServeContent answers If-None-Match with it
		files.ServeHTTP(w, r)
	}), nil
}

// storePage is the storefront's data.
type storePage struct {
	Products []productView
	Cards    []cardChoice
	Error    string
	// ShipTo are the countries orders ship to (the OrderPlaced
	// contract), which the API enforces.
	ShipTo string
}

type productView struct {
	SKU, Name, Currency string
	PriceCents          int64
	Price               string
	// Available is nil when the inventory did not answer.
	Available *int64
}

// OutOfStock reports whether the inventory said none is left (not when
// it did not answer: then the order may still go through).
func (p productView) OutOfStock() bool { return p.Available != nil && *p.Available <= 0 }

// AvailabilityText is what the storefront shows for the product's stock.
func (p productView) AvailabilityText() string {
	switch {
	case p.Available == nil:
		return "unknown"
	case *p.Available <= 0:
		return "out of stock"
	default:
		return itoa(*p.Available) + " in stock"
	}
}

// cardChoice is one of the test cards the fake gateway knows
// (ARCHITECTURE.md, "The saga").
type cardChoice struct {
	Token, Label, Hint string
}

var cards = []cardChoice{
	{"tok_visa", "Visa ending 4242", "approves"},
	{"tok_declined", "Card that declines", "the payment is declined and the order cancelled"},
	{"tok_flaky", "Flaky card", "fails twice, then approves: exercises retries"},
}

func (wb *Web) storefront(w http.ResponseWriter, r *http.Request) {
	ps, err := wb.orders.Products(r.Context())
	if err != nil {
		wb.fail(w, r, err)
		return
	}
	skus := make([]string, len(ps))
	for i, p := range ps {
		skus[i] = p.SKU
	}
	avail, err := wb.stocks.get(r.Context(), strings.Join(skus, ","), func(ctx context.Context) map[string]int64 {
		return wb.availability(ctx, skus)
	})
	if err != nil {
		return // the client went away
	}
	page := storePage{Cards: cards, Products: make([]productView, len(ps)),
		ShipTo: strings.Join(events.ShippingCountries(), ", ")}
	for i, p := range ps {
		v := productView{SKU: p.SKU, Name: p.Name, Currency: p.Currency, PriceCents: p.PriceCents,
			Price: formatMoney(p.PriceCents, p.Currency)}
		if n, ok := avail[p.SKU]; ok {
			v.Available = &n
		}
		page.Products[i] = v
	}
	wb.render(w, r, http.StatusOK, "store", "Shop", page)
}

func (wb *Web) orderPage(w http.ResponseWriter, r *http.Request) {
	raw := httpserver.PathParam(r, "id")
	id, err := uuid.Parse(raw)
	if err != nil {
		wb.errorPage(w, r, badOrderID, "That is not an order number", "Order numbers look like 0192f4c2-…; check the link.")
		return
	}
	if raw != id.String() {
		// {…}, urn:uuid:, upper case or no hyphens: one address per order,
		// the one the page's own links and its event stream use.
		http.Redirect(w, r, "/orders/"+id.String(), http.StatusMovedPermanently)
		return
	}
	o, err := wb.orders.Get(r.Context(), id.String())
	if err != nil {
		wb.fail(w, r, err)
		return
	}
	wb.render(w, r, http.StatusOK, "order", "Order "+o.ID, wb.orderView(o))
}

// labelTimeout bounds fetching a shipping label (shipping renders one in
// about 20 ms).
const labelTimeout = 15 * time.Second

// MaxLabelBytes caps a label passed on (shipping's are some 35 KB): a
// larger answer from shipping is refused, 502, so that a shipping service
// gone wrong (or an address that is not shipping's) cannot stream without
// end through this one.
const MaxLabelBytes = 4 << 20

// labelCSP is the Content-Security-Policy of everything passed on from
// shipping: a sandbox (no script, no form, an origin of its own), so that
// even an answer a browser rendered as a page could do nothing on the
// shop's origin. Only sandbox: default-src 'none' kept browsers' own PDF
// viewers from styling their page.
const labelCSP = "sandbox"

// refuseLabel reports why shipping's answer res cannot be passed on as
// an order's label, or "": a success (2xx) that is not application/pdf
// (a browser would render text/html as a page of the shop's), or an answer
// that says it is larger than MaxLabelBytes.
func refuseLabel(res *http.Response) string {
	if res.StatusCode >= 200 && res.StatusCode < 300 {
		mt, _, err := mime.ParseMediaType(res.Header.Get("Content-Type"))
		if err != nil || mt != "application/pdf" {
			return fmt.Sprintf("a %d answer of Content-Type %q, not application/pdf", res.StatusCode, res.Header.Get("Content-Type"))
		}
	}
	if res.ContentLength > MaxLabelBytes {
		return fmt.Sprintf("an answer of %d bytes, over the %d a label may have", res.ContentLength, MaxLabelBytes)
	}
	return ""
}

// label passes on the order's shipping label from the shipping service:
// the browser reaches the order service only (under compose, shipping has
// no fixed host port). Only a confirmed order's label is asked for
// (labelConfirmed). For an API client shipping's answer goes through as
// it is, its problem+json for a missing (404) or cancelled (410) shipment
// included; a browser following the order page's link gets an error page
// instead, which names neither shipping nor its paths.
func (wb *Web) label(w http.ResponseWriter, r *http.Request) {
	id, err := uuid.Parse(httpserver.PathParam(r, "id"))
	if err != nil {
		wb.errorPage(w, r, badOrderID, "That is not an order number", "Order numbers look like 0192f4c2-…; check the link.")
		return
	}
	browser := httpserver.PrefersHTML(r)
	if !wb.labelConfirmed(w, r, id.String(), browser) {
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, // HEAD stays HEAD: no PDF rendered for nothing
		wb.cfg.ShippingURL+"/v1/shipments/"+url.PathEscape(id.String())+"/label", nil)
	if err != nil {
		wb.fail(w, r, err)
		return
	}
	res, err := wb.labels.Do(req)
	if err != nil {
		if !httpserver.ClientGone(r) {
			status := http.StatusBadGateway
			if errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(err) || r.Context().Err() != nil { // its deadline passed
				status = http.StatusGatewayTimeout
			}
			wb.log.Warn("shipping label: the shipping service does not answer", "order_id", id, "err", err)
			if browser {
				wb.labelErrorPage(w, r, status, id.String())
			} else {
				httpserver.WriteProblem(w, r, httpserver.Problem{Status: status,
					Detail: "the shipping service does not answer; try again in a moment"})
			}
		}
		return
	}
	defer res.Body.Close()
	if why := refuseLabel(res); why != "" {
		wb.log.Warn("shipping label: refused what the shipping service answered", "order_id", id, "why", why)
		if browser {
			wb.labelErrorPage(w, r, http.StatusBadGateway, id.String())
		} else {
			httpserver.WriteProblem(w, r, httpserver.Problem{Status: http.StatusBadGateway,
				Detail: "the shipping service's answer is not a label; try again later"})
		}
		return
	}
	if browser && res.StatusCode >= 400 {
		wb.labelErrorPage(w, r, res.StatusCode, id.String())
		return
	}
	for _, h := range []string{"Content-Type", "Content-Length", "Content-Disposition", "Cache-Control", "ETag", "Last-Modified",
		"Retry-After", "X-Content-Type-Options"} {
		if v := res.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.Header().Set("Content-Security-Policy", labelCSP)
	if res.StatusCode < 300 && w.Header().Get("Content-Disposition") == "" {
		w.Header().Set("Content-Disposition", `inline; filename="label-`+id.String()+`.pdf"`)
	}
	w.WriteHeader(res.StatusCode)
	n, err := io.Copy(w, io.LimitReader(res.Body, MaxLabelBytes+1))
	if err != nil && !httpserver.ClientGone(r) {
		wb.log.Warn("shipping label: copy cut short", "order_id", id, "err", err)
	}
	if n > MaxLabelBytes {
		// Without a Content-Length, the size shows only now: the answer
		// is cut off, so that the client does not take it for whole.
		wb.log.Warn("shipping label: refused what the shipping service answered", "order_id", id,
			"why", fmt.Sprintf("an answer over the %d bytes a label may have", MaxLabelBytes))
		panic(http.ErrAbortHandler)
	}
}

// labelConfirmed reports whether the order id is confirmed, and if not
// answers why its label is refused, without asking shipping: unknown
// 404, cancelled 410, pending 409 (it exists, and its label may come once
// it is confirmed: a 404 would read as a mistyped number). Shipping books
// a shipment as soon as it sees OrderPlaced, before payment has answered,
// and serves the label of any order it booked: passed on as it was, the
// label of an order that could still be cancelled (its payment declined)
// was printable by anyone with the order's number. A database that does
// not answer is a 503 with Retry-After, as for the order page.
func (wb *Web) labelConfirmed(w http.ResponseWriter, r *http.Request, id string, browser bool) bool {
	o, err := store.GetOrderRow(r.Context(), wb.pool, id)
	if err != nil {
		wb.fail(w, r, err) // "No such order" for an unknown one
		return false
	}
	var p httpserver.Problem
	switch o.Status {
	case order.Confirmed:
		return true
	case order.Cancelled:
		p = httpserver.Problem{Status: http.StatusGone, Detail: "the order was cancelled; its label is void"}
	default:
		p = httpserver.Problem{Status: http.StatusConflict,
			Detail: "the order is " + string(o.Status) + "; its label is served once the order is confirmed"}
	}
	if browser {
		wb.labelErrorPage(w, r, p.Status, id)
	} else {
		httpserver.WriteProblem(w, r, p)
	}
	return false
}

// fail answers an error from the use cases: an error page for a browser,
// the API's problem for anyone else (errorPage).
func (wb *Web) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		wb.errorPage(w, r, noSuchOrder, "No such order", "There is no order with that number.")
	case httpserver.ClientGone(r):
		// The browser went away; nobody reads the answer.
	case !httpserver.PrefersHTML(r):
		httpserver.WriteError(w, r, err) // a 503 with Retry-After when the database is, as for the API
	case httpserver.Unavailable(r, err):
		// The database is down, or did not answer within the request's
		// deadline: the page was fine, and loading it again will do.
		wb.log.Warn("page failed: the database is unavailable or did not answer in time", "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", strconv.Itoa(httpserver.RetryAfterUnavailable))
		// A browser loads the page again by itself (every browser honours
		// Refresh): a tab that met a frozen database stayed on this page
		// after the database was back, until the customer reloaded it.
		w.Header().Set("Refresh", strconv.Itoa(httpserver.RetryAfterUnavailable))
		wb.errorPage(w, r, httpserver.Problem{Status: http.StatusServiceUnavailable},
			"The shop cannot answer right now", "This page loads again by itself in a few seconds.")
	default:
		wb.log.Error("page failed", "path", r.URL.Path, "err", err)
		wb.errorPage(w, r, httpserver.Problem{Status: http.StatusInternalServerError}, "Something went wrong", "Please try again in a moment.")
	}
}

// labelErrorPage tells a browser why an order has no label, by the status
// of the refusal (labelConfirmed), of shipping's answer or of its silence.
func (wb *Web) labelErrorPage(w http.ResponseWriter, r *http.Request, status int, orderID string) {
	v := errorView{Heading: "No label for this order", Back: "/orders/" + url.PathEscape(orderID), BackText: "Back to the order"}
	switch status {
	case http.StatusGone:
		v.Detail = "The order was cancelled: it will not ship, and its label is void."
	case http.StatusConflict:
		v.Detail = "The order is not confirmed yet: the label appears on the order page once payment, stock and shipping have all answered."
	case http.StatusNotFound:
		v.Detail = "The order has not shipped yet: the label appears on the order page once the shipment is scheduled."
	default:
		v.Heading = "The label is not available right now"
		v.Detail = "Shipping could not provide it just now; please try again in a moment."
	}
	wb.render(w, r, status, "error", v.Heading, v)
}

// errorView is the error page's data; Back, if set, is a link (BackText)
// shown before the one to the shop.
type errorView struct{ Heading, Detail, Back, BackText string }

// errorPage answers in the asker's terms (httpserver.PrefersHTML, as
// the API's routes and unknown addresses do): a browser gets a page
// (heading, detail) of p's status that leads back to the shop, anyone
// else p itself as application/problem+json. A page route answered an
// API client's request (curl's */*, Accept: application/json) with HTML.
func (wb *Web) errorPage(w http.ResponseWriter, r *http.Request, p httpserver.Problem, heading, detail string) {
	if !httpserver.PrefersHTML(r) {
		httpserver.WriteProblem(w, r, p)
		return
	}
	wb.render(w, r, p.Status, "error", heading, errorView{Heading: heading, Detail: detail})
}

// badOrderID and noSuchOrder are the problems of an order's routes, for
// an address whose id is not a UUID and for an order that does not
// exist; the event stream's and the API's say the same.
var (
	badOrderID = httpserver.Problem{Status: http.StatusBadRequest, Title: "Invalid request",
		Detail: "id: is not an order id (a UUID)", Errors: []httpserver.FieldError{{Field: "id", Message: "is not an order id (a UUID)"}}}
	noSuchOrder = httpserver.Problem{Status: http.StatusNotFound, Detail: "no such order"}
)
