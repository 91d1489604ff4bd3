// Package httpapi serves the shipping service's read API:
//
//	GET /v1/shipments/{order_id}        the shipment: status, tracking number, pickup slot, address, history
//	GET /v1/shipments/{order_id}/label  the printable label, application/pdf
//
// Errors are application/problem+json: 400 for a malformed order id
// (naming the order_id parameter), 404 when the order has no shipment
// (saying when a cancellation arrived before any shipment), and 410 Gone
// for the label of a cancelled shipment: a voided label must not be
// printable, so none is served.
package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/shopflow/shopflow/pkg/platform/httpserver"
	"github.com/shopflow/shopflow/services/shipping/internal/label"
	"github.com/shopflow/shopflow/services/shipping/internal/shipment"
	"github.com/shopflow/shopflow/services/shipping/internal/store"
)

// maxOrderIDLength bounds the order id in the path; ids are UUIDs.
const maxOrderIDLength = 128

// API serves shipments read from DB.
type API struct {
	DB store.DB
}

// Routes mounts the endpoints on r.
func (a API) Routes(r chi.Router) {
	r.Get("/v1/shipments/{order_id}", a.get)
	r.Get("/v1/shipments/{order_id}/label", a.label)
}

// Response is the body of GET /v1/shipments/{order_id}.
type Response struct {
	OrderID        string `json:"order_id"`
	ShipmentID     string `json:"shipment_id"`
	Status         string `json:"status"`
	Carrier        string `json:"carrier"`
	TrackingNumber string `json:"tracking_number"`
	// PickupAt and PickupUntil bound the pickup slot, in the warehouse's
	// zone (PickupZone).
	PickupAt     time.Time        `json:"pickup_at"`
	PickupUntil  time.Time        `json:"pickup_until"`
	PickupZone   string           `json:"pickup_zone"`
	LabelURL     string           `json:"label_url,omitempty"` // none once cancelled: the label is void
	CancelReason string           `json:"cancel_reason,omitempty"`
	Address      AddressResponse  `json:"address"`
	History      []ChangeResponse `json:"history"`
	CreatedAt    time.Time        `json:"created_at"`
	UpdatedAt    time.Time        `json:"updated_at"`
}

// AddressResponse is the ship-to address.
type AddressResponse struct {
	Name       string `json:"name"`
	Line1      string `json:"line1"`
	Line2      string `json:"line2,omitempty"`
	City       string `json:"city"`
	PostalCode string `json:"postal_code"`
	Country    string `json:"country"`
}

// ChangeResponse is one status change.
type ChangeResponse struct {
	Status  string    `json:"status"`
	EventID string    `json:"event_id"`
	Note    string    `json:"note,omitempty"`
	At      time.Time `json:"at"`
}

func labelURL(orderID string) string { return "/v1/shipments/" + orderID + "/label" }

func toResponse(s shipment.Shipment) Response {
	a := s.Address
	out := Response{
		OrderID: s.OrderID, ShipmentID: s.ShipmentID, Status: string(s.Status), Carrier: s.Carrier,
		TrackingNumber: s.TrackingNumber, PickupAt: s.PickupAt, PickupUntil: s.PickupAt.Add(shipment.SlotLength),
		PickupZone: s.PickupZone, CancelReason: s.CancelReason,
		Address:   AddressResponse{Name: a.Name, Line1: a.Line1, Line2: a.Line2, City: a.City, PostalCode: a.PostalCode, Country: a.Country},
		History:   make([]ChangeResponse, len(s.History)),
		CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt,
	}
	for i, c := range s.History {
		out.History[i] = ChangeResponse{Status: string(c.Status), EventID: c.EventID, Note: c.Note, At: c.At}
	}
	if s.Status != shipment.StatusCancelled {
		out.LabelURL = labelURL(s.OrderID)
	}
	return out
}

// orderID reads and checks the {order_id} path parameter.
func orderID(r *http.Request) (string, error) {
	id := httpserver.PathParam(r, "order_id")
	msg := ""
	switch {
	case strings.TrimSpace(id) == "":
		msg = "must not be empty"
	case !utf8.ValidString(id) || strings.ContainsFunc(id, func(c rune) bool { return unicode.IsControl(c) || unicode.IsSpace(c) }):
		msg = "must be printable text without spaces"
	case len(id) > maxOrderIDLength:
		msg = fmt.Sprintf("must be at most %d bytes", maxOrderIDLength)
	}
	if msg != "" {
		return "", &httpserver.Problem{Status: http.StatusBadRequest, Detail: "order_id " + msg,
			Errors: []httpserver.FieldError{{Field: "order_id", Message: msg}}}
	}
	return id, nil
}

// find loads the shipment or explains its absence as a problem.
func (a API) find(ctx context.Context, r *http.Request) (shipment.Shipment, error) {
	id, err := orderID(r)
	if err != nil {
		return shipment.Shipment{}, err
	}
	s, err := store.Get(ctx, a.DB, id)
	if u, perr := uuid.Parse(id); errors.Is(err, store.ErrNotFound) && perr == nil && u.String() != id {
		// Order ids are UUIDs, which the order service writes in
		// their canonical lower-case form; the order API accepts any
		// form uuid.Parse does, so this API finds the same order by it.
		id = u.String()
		s, err = store.Get(ctx, a.DB, id)
	}
	if !errors.Is(err, store.ErrNotFound) {
		return s, err
	}
	p := &httpserver.Problem{Status: http.StatusNotFound, Detail: fmt.Sprintf("order %s has no shipment", id)}
	c, cerr := store.GetCancellation(ctx, a.DB, id)
	switch {
	case cerr == nil:
		p.Detail = fmt.Sprintf("order %s has no shipment: it was cancelled (%s) before one was scheduled", id, c.Reason)
		p.Extensions = map[string]any{"cancellation_recorded_at": c.RecordedAt}
	case !errors.Is(cerr, store.ErrNotFound):
		return s, cerr
	}
	return s, p
}

func (a API) get(w http.ResponseWriter, r *http.Request) {
	s, err := a.find(r.Context(), r)
	if err != nil {
		httpserver.WriteError(w, r, err)
		return
	}
	httpserver.WriteJSON(w, http.StatusOK, toResponse(s))
}

func (a API) label(w http.ResponseWriter, r *http.Request) {
	s, err := a.find(r.Context(), r)
	if err != nil {
		httpserver.WriteError(w, r, err)
		return
	}
	if s.Status == shipment.StatusCancelled {
		httpserver.WriteProblem(w, r, httpserver.Problem{Status: http.StatusGone,
			Detail: fmt.Sprintf("shipment %s (tracking number %s) was cancelled; its label is void", s.ShipmentID, s.TrackingNumber)})
		return
	}
	var buf bytes.Buffer
	addr := s.Address
	err = label.Render(&buf, label.Shipment{
		OrderID: s.OrderID, ShipmentID: s.ShipmentID, Carrier: s.Carrier, TrackingNumber: s.TrackingNumber,
		PickupAt: s.PickupAt, SlotLength: shipment.SlotLength,
		Name: addr.Name, Line1: addr.Line1, Line2: addr.Line2, City: addr.City, PostalCode: addr.PostalCode, Country: addr.Country,
		CreatedAt: s.CreatedAt,
	})
	if err != nil {
		httpserver.WriteError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/pdf")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`inline; filename="label-%s.pdf"`, s.TrackingNumber))
	w.Header().Set("Content-Length", fmt.Sprint(buf.Len()))
	w.Header().Set("Cache-Control", "no-store") // a cancellation must void it at once
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}
