// Package httpapi is the order service's REST API (ARCHITECTURE.md, "Ports
// and endpoints"): request and response types, validation, and the one
// place where the use cases' errors become HTTP statuses.
package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"
	"golang.org/x/text/unicode/norm"

	"github.com/shopflow/shopflow/pkg/platform/httpserver"
	"github.com/shopflow/shopflow/services/order/internal/app"
	"github.com/shopflow/shopflow/services/order/internal/order"
	"github.com/shopflow/shopflow/services/order/internal/store"
)

// API serves the order endpoints.
type API struct {
	app        *app.App
	adminToken string
	openAPI    []byte
	// placementBound is how long after it arrived a placement may still
	// be stored (app.PlacementBound of the request deadline).
	placementBound time.Duration
}

// New returns the API over a; adminToken guards the admin endpoints
// (empty: they are disabled); openAPI is served at /openapi.yaml;
// requestTimeout is the HTTP server's request deadline
// (HTTP_REQUEST_TIMEOUT).
func New(a *app.App, adminToken string, openAPI []byte, requestTimeout time.Duration) *API {
	return &API{app: a, adminToken: adminToken, openAPI: openAPI, placementBound: app.PlacementBound(requestTimeout)}
}

// Routes mounts the endpoints on r.
func (api *API) Routes(r chi.Router) {
	r.Get("/openapi.yaml", api.serveOpenAPI)
	r.Route("/v1", func(r chi.Router) {
		// Both POSTs are safe to send again whatever became of the
		// first attempt (so a database that gave no definite answer is
		// a 503, not a 500): a placement is stored under its
		// Idempotency-Key, given or made, which a retry replays; a
		// cancellation of an order cancelled already answers it again.
		r.With(httpserver.RetrySafe).Post("/orders", api.placeOrder)
		r.Get("/orders", api.listOrders)
		r.Get("/orders/{id}", api.getOrder)
		r.With(httpserver.RetrySafe).Post("/orders/{id}/cancel", api.cancelOrder)
		r.Get("/idempotency-keys/{key}", api.keyPlaced)
		r.Get("/products", api.listProducts)
		r.With(httpserver.RequireToken(api.adminToken, "shopflow-admin")).Put("/products/{sku}", api.putProduct)
	})
}

func (api *API) serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(api.openAPI)
}

// --- wire types ---

// PlaceOrderRequest is the body of POST /v1/orders.
type PlaceOrderRequest struct {
	CustomerID      string        `json:"customer_id"`
	Currency        string        `json:"currency"`
	Items           []ItemRequest `json:"items"`
	Payment         PaymentMethod `json:"payment"`
	ShippingAddress order.Address `json:"shipping_address"`
	// ExpectedTotalCents, optional, is the total the client showed: the
	// order is placed only at that total (409 otherwise). Absent, it is
	// left out of the Idempotency-Key's fingerprint as before.
	ExpectedTotalCents *int64 `json:"expected_total_cents,omitempty"`
}

// ItemRequest is one requested line.
type ItemRequest struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// PaymentMethod names the card by its token.
type PaymentMethod struct {
	CardToken string `json:"card_token"`
}

// Order is an order as the API shows it.
type Order struct {
	ID              string        `json:"id"`
	CustomerID      string        `json:"customer_id"`
	Status          order.Status  `json:"status"`
	Reason          string        `json:"reason"`
	Currency        string        `json:"currency"`
	TotalCents      int64         `json:"total_cents"`
	Items           []Line        `json:"items,omitempty"`
	Steps           Steps         `json:"steps"`
	TrackingNumber  string        `json:"tracking_number"`
	ShippingAddress order.Address `json:"shipping_address"`
	PlacedAt        time.Time     `json:"placed_at"`
	ConfirmedAt     *time.Time    `json:"confirmed_at"`
	CancelledAt     *time.Time    `json:"cancelled_at"`
	UpdatedAt       time.Time     `json:"updated_at"`
}

// Line is one priced line of an order.
type Line struct {
	SKU            string `json:"sku"`
	Name           string `json:"name"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
	LineTotalCents int64  `json:"line_total_cents"`
}

// Steps is the state of each saga step.
type Steps struct {
	Payment   order.Step `json:"payment"`
	Inventory order.Step `json:"inventory"`
	Shipping  order.Step `json:"shipping"`
}

// OrderList is a page of GET /v1/orders.
type OrderList struct {
	Orders     []Order `json:"orders"`
	NextCursor string  `json:"next_cursor,omitempty"`
}

// KeyPlacement is the answer of GET /v1/idempotency-keys/{key}: the
// order a placement sent with the key placed.
type KeyPlacement struct {
	IdempotencyKey string `json:"idempotency_key"`
	OrderID        string `json:"order_id"`
}

// Product is a catalog entry.
type Product struct {
	SKU        string    `json:"sku"`
	Name       string    `json:"name"`
	PriceCents int64     `json:"price_cents"`
	Currency   string    `json:"currency"`
	Active     bool      `json:"active"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// ProductList is the body of GET /v1/products.
type ProductList struct {
	Products []Product `json:"products"`
}

// PutProductRequest is the body of PUT /v1/products/{sku}.
type PutProductRequest struct {
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
	Currency   string `json:"currency"`
	Active     *bool  `json:"active,omitempty"`
}

func view(o order.Order) Order {
	v := Order{
		ID: o.ID, CustomerID: o.CustomerID, Status: o.Status, Reason: o.Reason(), Currency: o.Currency,
		TotalCents: o.TotalCents, Steps: Steps{o.Steps.Payment, o.Steps.Inventory, o.Steps.Shipping},
		TrackingNumber: o.TrackingNumber, ShippingAddress: o.Address,
		PlacedAt: o.PlacedAt, UpdatedAt: o.UpdatedAt, ConfirmedAt: timePtr(o.ConfirmedAt), CancelledAt: timePtr(o.CancelledAt),
	}
	for _, l := range o.Lines {
		v.Items = append(v.Items, Line{SKU: l.SKU, Name: l.Name, Quantity: l.Quantity,
			UnitPriceCents: l.UnitPriceCents, LineTotalCents: l.TotalCents()})
	}
	return v
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// --- handlers ---

func (api *API) placeOrder(w http.ResponseWriter, r *http.Request) {
	// Every placement is stored under a key, the client's or one made
	// here, and every answer names it, a refusal of the body's form (415,
	// malformed JSON) too: a client that gets no definite answer (a 503,
	// a dropped connection after it was stored) can send the request
	// again with that key and get the order placed once.
	k, given := r.Header["Idempotency-Key"]
	if !given {
		k = []string{rand.Text()}
	} else if len(k) != 1 || !validKey(k[0]) {
		writeInvalid(w, r, app.FieldError{Field: "Idempotency-Key",
			Message: "must be one header of 1 to 255 printable ASCII characters"})
		return
	}
	w.Header().Set("Idempotency-Key", k[0])
	var req PlaceOrderRequest
	if err := httpserver.DecodeJSON(w, r, &req); err != nil {
		unknown, ok := errors.AsType[*httpserver.UnknownFieldsError](err)
		if !ok {
			httpserver.WriteError(w, r, err)
			return
		}
		// One answer with every bad field: the unknown ones, and what
		// the request's own fields break.
		req.ShippingAddress = nfcAddress(req.ShippingAddress)
		var bad []app.FieldError
		for _, f := range unknown.Errors {
			bad = append(bad, app.FieldError{Field: f.Field, Message: f.Message})
		}
		writeInvalid(w, r, append(bad, validatePlace(&req, api.app.Sells)...)...)
		return
	}
	// The address is stored and printed in Unicode's composed form
	// (NFC): "e" followed by a combining diaeresis, as some keyboards
	// and pastes give it, is the label's "ë", not a mark it cannot print.
	req.ShippingAddress = nfcAddress(req.ShippingAddress)
	canonical, _ := json.Marshal(req) // re-encoded, so spacing and key order do not count
	sum := sha256.Sum256(canonical)
	key := &app.Key{Value: k[0], Fingerprint: sum[:]}
	if bad := validatePlace(&req, api.app.Sells); len(bad) > 0 {
		if !given {
			key = nil // a key made just now has no answer stored under it
		}
		api.refusePlacement(w, r, key, &app.ValidationError{Fields: bad})
		return
	}
	items := make([]app.Item, len(req.Items))
	for i, it := range req.Items {
		items[i] = app.Item{SKU: it.SKU, Quantity: it.Quantity}
	}
	res, err := api.app.Place(r.Context(), key, app.PlaceRequest{
		CustomerID: req.CustomerID, Currency: req.Currency, Items: items,
		CardToken: req.Payment.CardToken, Address: req.ShippingAddress, ExpectedTotalCents: req.ExpectedTotalCents,
	}, render)
	_, invalid := errors.AsType[*app.ValidationError](err)
	_, changed := errors.AsType[*app.TotalChangedError](err)
	if invalid || changed {
		if !given {
			key = nil
		}
		api.refusePlacement(w, r, key, err) // the catalog's rules, or its prices
		return
	}
	if err != nil {
		api.writeError(w, r, err)
		return
	}
	writePlaced(w, res)
}

// refusePlacement answers a placement the rules refuse (invalid, an error
// naming the fields). With a key a request completed under, that request's
// answer comes instead (replayed, or 422 for another body): as with
// Stripe, a key's first answer wins over the rules of the day, so a retry
// of an order placed before a product was withdrawn, a currency dropped or
// a rule tightened gets the order, not a 400.
func (api *API) refusePlacement(w http.ResponseWriter, r *http.Request, key *app.Key, invalid error) {
	if key != nil {
		res, err := api.app.StoredAnswer(r.Context(), key)
		if err != nil {
			api.writeError(w, r, err)
			return
		}
		if res != nil {
			writePlaced(w, *res)
			return
		}
	}
	api.writeError(w, r, invalid)
}

// writePlaced sends a placement's answer, new or replayed (the
// Idempotency-Key header is set already); a replay says so, as Stripe's
// does, so a client can tell its retry placed nothing new.
func writePlaced(w http.ResponseWriter, res store.Response) {
	if res.Location != "" {
		w.Header().Set("Location", res.Location)
	}
	if res.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(res.Status)
	_, _ = w.Write(res.Body)
}

// render is the 201 answer to a placement, stored for replays.
func render(o order.Order) store.Response {
	b, err := json.Marshal(view(o))
	if err != nil {
		panic(err) // plain data; cannot fail
	}
	return store.Response{Status: http.StatusCreated, Body: append(b, '\n'), Location: "/v1/orders/" + o.ID}
}

func (api *API) getOrder(w http.ResponseWriter, r *http.Request) {
	id, ok := orderID(w, r)
	if !ok {
		return
	}
	o, err := api.app.Get(r.Context(), id)
	if err != nil {
		api.writeError(w, r, err)
		return
	}
	httpserver.WriteJSON(w, http.StatusOK, view(o))
}

// keyPlaced answers whether a placement sent with an Idempotency-Key
// placed an order, and which, without placing one: for a client that
// never got its answer (a browser reloaded mid-checkout, or whose cart
// changed since) and must know before it sends another order under a new
// key. 409 while such a placement is running, 404 when none placed an
// order within the key's 24 hours.
func (api *API) keyPlaced(w http.ResponseWriter, r *http.Request) {
	key := httpserver.PathParam(r, "key")
	if !validKey(key) {
		writeInvalid(w, r, app.FieldError{Field: "key", Message: "is not an Idempotency-Key: 1 to 255 printable ASCII characters"})
		return
	}
	id, err := api.app.KeyPlaced(r.Context(), key)
	if errors.Is(err, app.ErrNotFound) {
		// A type of its own: a client must not take a 404 from elsewhere (a
		// gateway, a replica not upgraded yet) for "nothing was placed".
		// "None is being stored" holds for placements that have taken the
		// key; one that reached the service less than placementBound ago
		// may still be on its way to its batch's first statement (its
		// turn, a connection, a lock on the orders table that preparing
		// the statements waits for), holding nothing this could see: a
		// client trusts the 404 only for a placement it sent longer ago
		// than that (may_still_place_for_seconds).
		bound := int(math.Ceil(api.placementBound.Seconds()))
		httpserver.WriteProblem(w, r, httpserver.Problem{Status: http.StatusNotFound, Type: KeyUnusedType,
			Title: "Nothing placed with this key",
			Detail: fmt.Sprintf("no order was placed with this Idempotency-Key in the last 24 hours, and none is being stored now; "+
				"a placement sent with it less than %d s ago may still be on its way to the database and be stored: ask again after that", bound),
			// And what it remembers: past KeyTTL, a placement the key made
			// is forgotten, and "none" says nothing of it.
			Extensions: map[string]any{"may_still_place_for_seconds": bound, "remembers_keys_for_seconds": int(store.KeyTTL.Seconds())}})
		return
	}
	if err != nil {
		api.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store") // the answer changes once a placement completes
	httpserver.WriteJSON(w, http.StatusOK, KeyPlacement{IdempotencyKey: key, OrderID: id})
}

func (api *API) cancelOrder(w http.ResponseWriter, r *http.Request) {
	id, ok := orderID(w, r)
	if !ok {
		return
	}
	o, err := api.app.Cancel(r.Context(), id)
	if err != nil {
		api.writeError(w, r, err)
		return
	}
	httpserver.WriteJSON(w, http.StatusOK, view(o))
}

const (
	defaultLimit = 20
	maxLimit     = 100
)

func (api *API) listOrders(w http.ResponseWriter, r *http.Request) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		// r.URL.Query() drops what it cannot parse: "?%zz=1" listed
		// everything.
		httpserver.WriteProblem(w, r, httpserver.Problem{Status: http.StatusBadRequest,
			Detail: "malformed query string: " + err.Error()})
		return
	}
	var bad []app.FieldError
	f := store.Filter{Limit: defaultLimit}
	for name, vs := range q {
		switch name {
		case "customer_id", "status", "limit", "cursor":
			if len(vs) > 1 {
				bad = append(bad, app.FieldError{Field: name, Message: "is given more than once"})
			}
		default:
			bad = append(bad, app.FieldError{Field: name, Message: "unknown query parameter; use customer_id, status, limit, cursor"})
		}
	}
	if v := q.Get("customer_id"); v != "" {
		if msg := checkCustomerID(v); msg != "" {
			if strings.Contains(v, " ") && strings.Contains(r.URL.RawQuery, "+") {
				// A query string's + is a space: alice+shop@x arrived as
				// "alice shop@x".
				msg += "; a + in a query string means a space: send it as %2B"
			}
			bad = append(bad, app.FieldError{Field: "customer_id", Message: msg})
		}
		f.CustomerID = v
	}
	if v := q.Get("status"); v != "" {
		if !order.Status(v).Valid() {
			bad = append(bad, app.FieldError{Field: "status", Message: "must be one of pending, confirmed, cancelled"})
		}
		f.Status = order.Status(v)
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			bad = append(bad, app.FieldError{Field: "limit", Message: fmt.Sprintf("must be a whole number from 1 to %d", maxLimit)})
		}
		f.Limit = n
	}
	if v := q.Get("cursor"); v != "" {
		b, err := base64.RawURLEncoding.DecodeString(v)
		id, uerr := uuid.FromBytes(b)
		if err != nil || uerr != nil {
			bad = append(bad, app.FieldError{Field: "cursor", Message: "is not a cursor this API returned"})
		}
		f.Before = id.String()
	}
	if len(bad) > 0 {
		// In name order: the query is a map, and the same request
		// must get the same answer.
		slices.SortStableFunc(bad, func(a, b app.FieldError) int { return strings.Compare(a.Field, b.Field) })
		writeInvalid(w, r, bad...)
		return
	}
	orders, more, err := api.app.List(r.Context(), f)
	if err != nil {
		api.writeError(w, r, err)
		return
	}
	out := OrderList{Orders: make([]Order, len(orders))}
	for i, o := range orders {
		out.Orders[i] = view(o)
	}
	if more {
		last := uuid.MustParse(orders[len(orders)-1].ID)
		out.NextCursor = base64.RawURLEncoding.EncodeToString(last[:])
	}
	httpserver.WriteJSON(w, http.StatusOK, out)
}

func (api *API) listProducts(w http.ResponseWriter, r *http.Request) {
	ps, err := api.app.Products(r.Context())
	if err != nil {
		api.writeError(w, r, err)
		return
	}
	out := ProductList{Products: make([]Product, len(ps))}
	for i, p := range ps {
		out.Products[i] = productView(p)
	}
	httpserver.WriteJSON(w, http.StatusOK, out)
}

func productView(p order.Product) Product {
	return Product{SKU: p.SKU, Name: p.Name, PriceCents: p.PriceCents, Currency: p.Currency, Active: p.Active, UpdatedAt: p.UpdatedAt}
}

func (api *API) putProduct(w http.ResponseWriter, r *http.Request) {
	sku := httpserver.PathParam(r, "sku")
	var req PutProductRequest
	if err := httpserver.DecodeJSON(w, r, &req); err != nil {
		httpserver.WriteError(w, r, err)
		return
	}
	var bad []app.FieldError
	if !skuPattern.MatchString(sku) {
		bad = append(bad, app.FieldError{Field: "sku", Message: "must be 1 to 64 of A-Z, 0-9 and -, starting with a letter or digit"})
	}
	if msg := checkText(req.Name, 1, 200); msg != "" {
		bad = append(bad, app.FieldError{Field: "name", Message: msg})
	}
	if req.PriceCents < 1 || req.PriceCents > maxPriceCents {
		bad = append(bad, app.FieldError{Field: "price_cents", Message: fmt.Sprintf("must be from 1 to %d (minor units)", maxPriceCents)})
	}
	if msg := checkCurrency(req.Currency, api.app.Sells); msg != "" {
		bad = append(bad, app.FieldError{Field: "currency", Message: msg})
	}
	if len(bad) > 0 {
		writeInvalid(w, r, bad...)
		return
	}
	// Conditional requests (RFC 9110 13.1): products have no ETag, so
	// If-Match: * means "only if it exists" (update only), If-Match with
	// tags can never hold (412), If-None-Match: * means "only if it does
	// not" (create only: shop seed uses it, so it never undoes an
	// admin's price or deactivation), and If-None-Match with tags always
	// holds.
	mode := store.Upsert
	failed := ""
	if im := r.Header.Values("If-Match"); len(im) > 0 {
		if strings.TrimSpace(strings.Join(im, ",")) == "*" {
			mode = store.UpdateOnly
		} else {
			failed = "products have no ETag, so If-Match can only be *"
		}
	}
	if inm := r.Header.Values("If-None-Match"); len(inm) > 0 && strings.TrimSpace(strings.Join(inm, ",")) == "*" && failed == "" {
		if mode == store.UpdateOnly {
			failed = "If-Match: * and If-None-Match: * cannot both hold"
		}
		mode = store.CreateOnly
	}
	active := req.Active == nil || *req.Active
	var (
		p       order.Product
		created bool
		err     error
	)
	if failed == "" {
		p, created, err = api.app.PutProduct(r.Context(),
			order.Product{SKU: sku, Name: req.Name, PriceCents: req.PriceCents, Currency: req.Currency, Active: active}, mode)
		switch {
		case errors.Is(err, app.ErrProductExists):
			failed = fmt.Sprintf("product %s is in the catalog already (If-None-Match: *)", sku)
		case errors.Is(err, app.ErrNotFound):
			failed = fmt.Sprintf("product %s is not in the catalog (If-Match: *)", sku)
		}
	}
	if failed != "" {
		httpserver.WriteProblem(w, r, httpserver.Problem{Status: http.StatusPreconditionFailed, Title: "Precondition Failed",
			Detail: failed + "; nothing was changed"})
		return
	}
	if err != nil {
		api.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated // RFC 9110 9.3.4: a PUT that creates says so
	}
	httpserver.WriteJSON(w, status, productView(p))
}

// nfcAddress returns a with each field in Unicode normalization form C.
func nfcAddress(a order.Address) order.Address {
	for _, f := range []*string{&a.Name, &a.Line1, &a.Line2, &a.City, &a.PostalCode, &a.Country} {
		*f = norm.NFC.String(*f)
	}
	return a
}

func orderID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id, err := uuid.Parse(httpserver.PathParam(r, "id"))
	if err != nil {
		writeInvalid(w, r, app.FieldError{Field: "id", Message: "is not an order id (a UUID)"})
		return "", false
	}
	return id.String(), true
}

// TotalChangedType is the problem type of a placement refused because
// its expected_total_cents is not what the order costs: a definite
// refusal (the other 409, a key in flight, is worth retrying).
const TotalChangedType = "urn:shopflow:problem:total-changed"

// KeyUnusedType is the problem type of GET /v1/idempotency-keys/{key}'s
// 404: no placement with the key placed an order, and none is running.
const KeyUnusedType = "urn:shopflow:problem:key-unused"

// writeError is the one mapping from the use cases' errors to statuses.
func (api *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var (
		invalid *app.ValidationError
		changed *app.TotalChangedError
	)
	switch {
	case errors.As(err, &invalid):
		writeInvalid(w, r, invalid.Fields...)
	case errors.As(err, &changed):
		httpserver.WriteProblem(w, r, httpserver.Problem{Status: http.StatusConflict, Type: TotalChangedType,
			Title: "The prices changed",
			Detail: fmt.Sprintf("the order would cost %d, not the expected %d (%s minor units): the catalog's prices changed; "+
				"nothing was placed. Send expected_total_cents %d to accept the new total.",
				changed.Total, changed.Expected, changed.Currency, changed.Total),
			Extensions: map[string]any{"total_cents": changed.Total, "expected_total_cents": changed.Expected, "currency": changed.Currency}})
	case errors.Is(err, app.ErrNotFound):
		httpserver.WriteProblem(w, r, httpserver.Problem{Status: http.StatusNotFound, Detail: "no such order"})
	case errors.Is(err, order.ErrNotCancellable):
		httpserver.WriteProblem(w, r, httpserver.Problem{Status: http.StatusConflict, Detail: err.Error()})
	case errors.Is(err, app.ErrKeyMismatch):
		httpserver.WriteProblem(w, r, httpserver.Problem{Status: http.StatusUnprocessableEntity, Detail: err.Error()})
	case errors.Is(err, app.ErrKeyInFlight):
		w.Header().Set("Retry-After", "1")
		httpserver.WriteProblem(w, r, httpserver.Problem{Status: http.StatusConflict, Detail: err.Error()})
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		httpserver.WriteError(w, r, err) // client gone; logged quietly
	default:
		httpserver.WriteError(w, r, err)
	}
}

func writeInvalid(w http.ResponseWriter, r *http.Request, fields ...app.FieldError) {
	fe := make([]httpserver.FieldError, len(fields))
	for i, f := range fields {
		fe[i] = httpserver.FieldError{Field: f.Field, Message: f.Message}
	}
	detail := "the request has invalid fields"
	if len(fields) == 1 {
		detail = fields[0].Field + ": " + fields[0].Message
	}
	httpserver.WriteProblem(w, r, httpserver.Problem{Status: http.StatusBadRequest, Title: "Invalid request",
		Detail: detail, Errors: fe})
}
