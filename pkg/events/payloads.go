package events

import (
	"fmt"
	"math"
	"time"
)

// Payload is the data of one event type. Every payload struct implements it
// with value receivers.
//
// Field constraints live in the structs' event tags, read by Validate, by
// Decode and by the JSON Schema generator alike, so the three cannot drift:
// every field is required unless tagged optional (a required string or list
// must be non-empty, a required time non-zero); min=N and max=N bound an
// integer; maxlen=N bounds a string's characters and maxitems=N a list's
// items (every string and list is bounded; N is a number or the name of a
// bound in limits.go, such as MaxLines); format=currency (ISO 4217, three
// capital letters) and format=country (ISO 3166-1 alpha-2, two capital
// letters) constrain strings; enum=a|b lists the allowed values of a
// string. Every string is UTF-8 without U+0000 (NUL).
type Payload interface {
	// EventType is the ce_type of the payload.
	EventType() Type
	// AggregateID is the order id: the Kafka key and ce_subject.
	AggregateID() string
	// Validate reports the first field that breaks the contract as a
	// *DecodeError of kind ErrMissingField or ErrInvalidField naming it.
	Validate() error
}

// payloadTypes lists a zero value of every payload type, in the order of
// the Type constants; Types, Decode and the contract files derive from it.
var payloadTypes = []Payload{
	OrderPlaced{}, OrderConfirmed{}, OrderCancelled{},
	PaymentAuthorized{}, PaymentDeclined{}, PaymentRefunded{},
	StockReserved{}, StockRejected{}, StockReleased{},
	ShipmentScheduled{}, ShipmentCancelled{},
}

// OrderPlaced is published by the order service when a customer places an
// order; it starts the saga. Prices come from the order service's catalog.
type OrderPlaced struct {
	// OrderID is the order's id (ce_subject and the Kafka key).
	OrderID string `json:"order_id" event:"maxlen=maxIDLength"`
	// CustomerID is the id of the customer who placed the order.
	CustomerID string `json:"customer_id" event:"maxlen=maxCustomerIDLength"`
	// Currency is the ISO 4217 code of every amount in the order.
	Currency string `json:"currency" event:"format=currency"`
	// TotalCents is the order total in minor units; it equals the sum of
	// quantity * unit_price_cents over the items.
	TotalCents int64 `json:"total_cents" event:"min=1"`
	// Items are the ordered lines, at least one and at most MaxLines (100).
	Items []Line `json:"items" event:"maxitems=MaxLines"`
	// Payment is how the customer pays.
	Payment PaymentMethod `json:"payment"`
	// ShippingAddress is where the order ships to.
	ShippingAddress Address `json:"shipping_address"`
	// PlacedAt is when the order was accepted.
	PlacedAt time.Time `json:"placed_at"`
}

// Line is one line of an order.
type Line struct {
	// SKU identifies the product.
	SKU string `json:"sku" event:"maxlen=maxSKULength"`
	// Quantity is the number of units ordered, 1 to MaxQuantity (1000).
	Quantity int `json:"quantity" event:"min=1,max=MaxQuantity"`
	// UnitPriceCents is the catalog price of one unit in minor units.
	UnitPriceCents int64 `json:"unit_price_cents" event:"min=0"`
}

// PaymentMethod is how an order is paid.
type PaymentMethod struct {
	// CardToken is the payment gateway's token for the customer's card.
	CardToken string `json:"card_token" event:"maxlen=maxTextLength"`
}

// Address is a postal address.
type Address struct {
	// Name is the recipient's name.
	Name string `json:"name" event:"maxlen=maxTextLength"`
	// Line1 is the first address line.
	Line1 string `json:"line1" event:"maxlen=maxTextLength"`
	// Line2 is the optional second address line.
	Line2 string `json:"line2,omitempty" event:"optional,maxlen=maxTextLength"`
	// City is the city or town.
	City string `json:"city" event:"maxlen=maxTextLength"`
	// PostalCode is the postal or ZIP code.
	PostalCode string `json:"postal_code" event:"maxlen=maxTextLength"`
	// Country is the ISO 3166-1 alpha-2 country code.
	Country string `json:"country" event:"format=country"`
}

// OrderConfirmed is published by the order service when payment, inventory
// and shipping have all succeeded; payment then captures.
type OrderConfirmed struct {
	// OrderID is the order's id (ce_subject and the Kafka key).
	OrderID string `json:"order_id" event:"maxlen=maxIDLength"`
	// ConfirmedAt is when the order was confirmed.
	ConfirmedAt time.Time `json:"confirmed_at"`
}

// OrderCancelled is published by the order service when a step fails or the
// customer cancels before confirmation; the other services compensate what
// they did for the order.
type OrderCancelled struct {
	// OrderID is the order's id (ce_subject and the Kafka key).
	OrderID string `json:"order_id" event:"maxlen=maxIDLength"`
	// Reason says why the order was cancelled: the first cause known, as
	// the event goes out at once (a failed step, the customer's cancel,
	// the expiry). A failure arriving after it is added to the order's
	// own reason (GET /v1/orders/{id}), not sent again.
	Reason string `json:"reason" event:"maxlen=maxCancelReasonLength"`
	// CancelledAt is when the order was cancelled.
	CancelledAt time.Time `json:"cancelled_at"`
}

// PaymentAuthorized is published by the payment service when the order's
// amount is authorized on the customer's card.
type PaymentAuthorized struct {
	// OrderID is the order's id (ce_subject and the Kafka key).
	OrderID string `json:"order_id" event:"maxlen=maxIDLength"`
	// PaymentID is the payment service's id of the payment.
	PaymentID string `json:"payment_id" event:"maxlen=maxIDLength"`
	// AmountCents is the authorized amount in minor units.
	AmountCents int64 `json:"amount_cents" event:"min=0"`
	// Currency is the ISO 4217 code of the amount.
	Currency string `json:"currency" event:"format=currency"`
	// AuthorizationCode is the gateway's authorization code.
	AuthorizationCode string `json:"authorization_code" event:"maxlen=maxTextLength"`
}

// PaymentDeclined is published by the payment service when the gateway
// declines the order's payment.
type PaymentDeclined struct {
	// OrderID is the order's id (ce_subject and the Kafka key).
	OrderID string `json:"order_id" event:"maxlen=maxIDLength"`
	// AmountCents is the declined amount in minor units.
	AmountCents int64 `json:"amount_cents" event:"min=0"`
	// Currency is the ISO 4217 code of the amount.
	Currency string `json:"currency" event:"format=currency"`
	// Reason is the gateway's reason for declining.
	Reason string `json:"reason" event:"maxlen=maxReasonLength"`
}

// The values of PaymentRefunded.Kind.
const (
	RefundKindVoid   = "void"   // the authorization was released before capture
	RefundKindRefund = "refund" // captured money was paid back
)

// PaymentRefunded is published by the payment service when it gives back,
// after a cancellation, what it had authorized or captured.
type PaymentRefunded struct {
	// OrderID is the order's id (ce_subject and the Kafka key).
	OrderID string `json:"order_id" event:"maxlen=maxIDLength"`
	// PaymentID is the payment service's id of the payment.
	PaymentID string `json:"payment_id" event:"maxlen=maxIDLength"`
	// AmountCents is the amount given back in minor units.
	AmountCents int64 `json:"amount_cents" event:"min=0"`
	// Currency is the ISO 4217 code of the amount.
	Currency string `json:"currency" event:"format=currency"`
	// Kind is "void" (authorization released) or "refund" (capture paid back).
	Kind string `json:"kind" event:"enum=void|refund"`
}

// StockLine is a quantity of one SKU.
type StockLine struct {
	// SKU identifies the product.
	SKU string `json:"sku" event:"maxlen=maxSKULength"`
	// Quantity is the number of units, 1 to 100,000 (an order's lines
	// of the SKU, summed).
	Quantity int `json:"quantity" event:"min=1,max=maxSKUQuantity"`
}

// ShortLine is an order line the inventory cannot fill.
type ShortLine struct {
	// SKU identifies the product.
	SKU string `json:"sku" event:"maxlen=maxSKULength"`
	// Requested is the number of units the order asked for, 1 to 100,000.
	Requested int `json:"requested" event:"min=1,max=maxSKUQuantity"`
	// Available is the number of units in stock.
	Available int `json:"available" event:"min=0"`
}

// StockReserved is published by the inventory service when it has reserved
// every line of the order, atomically.
type StockReserved struct {
	// OrderID is the order's id (ce_subject and the Kafka key).
	OrderID string `json:"order_id" event:"maxlen=maxIDLength"`
	// ReservationID is the inventory service's id of the reservation.
	ReservationID string `json:"reservation_id" event:"maxlen=maxIDLength"`
	// Items are the reserved quantities, 1 to MaxLines (100) lines.
	Items []StockLine `json:"items" event:"maxitems=MaxLines"`
}

// StockRejected is published by the inventory service when it cannot
// reserve every line of the order; it reserves none.
type StockRejected struct {
	// OrderID is the order's id (ce_subject and the Kafka key).
	OrderID string `json:"order_id" event:"maxlen=maxIDLength"`
	// Short lists the lines that could not be filled, 1 to MaxLines (100).
	Short []ShortLine `json:"short" event:"maxitems=MaxLines"`
}

// StockReleased is published by the inventory service when it gives back a
// reservation after the order was cancelled.
type StockReleased struct {
	// OrderID is the order's id (ce_subject and the Kafka key).
	OrderID string `json:"order_id" event:"maxlen=maxIDLength"`
	// ReservationID is the id of the released reservation.
	ReservationID string `json:"reservation_id" event:"maxlen=maxIDLength"`
	// Items are the released quantities, 1 to MaxLines (100) lines.
	Items []StockLine `json:"items" event:"maxitems=MaxLines"`
}

// ShipmentScheduled is published by the shipping service when it has
// created the order's shipment and booked a pickup.
type ShipmentScheduled struct {
	// OrderID is the order's id (ce_subject and the Kafka key).
	OrderID string `json:"order_id" event:"maxlen=maxIDLength"`
	// ShipmentID is the shipping service's id of the shipment.
	ShipmentID string `json:"shipment_id" event:"maxlen=maxIDLength"`
	// Carrier names the carrier.
	Carrier string `json:"carrier" event:"maxlen=maxTextLength"`
	// TrackingNumber is the carrier's tracking number.
	TrackingNumber string `json:"tracking_number" event:"maxlen=maxTextLength"`
	// PickupAt is the start of the booked pickup slot.
	PickupAt time.Time `json:"pickup_at"`
}

// ShipmentCancelled is published by the shipping service when it cancels
// the order's shipment after the order was cancelled.
type ShipmentCancelled struct {
	// OrderID is the order's id (ce_subject and the Kafka key).
	OrderID string `json:"order_id" event:"maxlen=maxIDLength"`
	// ShipmentID is the id of the cancelled shipment.
	ShipmentID string `json:"shipment_id" event:"maxlen=maxIDLength"`
	// TrackingNumber is the carrier's tracking number of the shipment.
	TrackingNumber string `json:"tracking_number" event:"maxlen=maxTextLength"`
}

// EventType returns TypeOrderPlaced.
func (OrderPlaced) EventType() Type { return TypeOrderPlaced }

// EventType returns TypeOrderConfirmed.
func (OrderConfirmed) EventType() Type { return TypeOrderConfirmed }

// EventType returns TypeOrderCancelled.
func (OrderCancelled) EventType() Type { return TypeOrderCancelled }

// EventType returns TypePaymentAuthorized.
func (PaymentAuthorized) EventType() Type { return TypePaymentAuthorized }

// EventType returns TypePaymentDeclined.
func (PaymentDeclined) EventType() Type { return TypePaymentDeclined }

// EventType returns TypePaymentRefunded.
func (PaymentRefunded) EventType() Type { return TypePaymentRefunded }

// EventType returns TypeStockReserved.
func (StockReserved) EventType() Type { return TypeStockReserved }

// EventType returns TypeStockRejected.
func (StockRejected) EventType() Type { return TypeStockRejected }

// EventType returns TypeStockReleased.
func (StockReleased) EventType() Type { return TypeStockReleased }

// EventType returns TypeShipmentScheduled.
func (ShipmentScheduled) EventType() Type { return TypeShipmentScheduled }

// EventType returns TypeShipmentCancelled.
func (ShipmentCancelled) EventType() Type { return TypeShipmentCancelled }

// AggregateID returns the order id.
func (p OrderPlaced) AggregateID() string { return p.OrderID }

// AggregateID returns the order id.
func (p OrderConfirmed) AggregateID() string { return p.OrderID }

// AggregateID returns the order id.
func (p OrderCancelled) AggregateID() string { return p.OrderID }

// AggregateID returns the order id.
func (p PaymentAuthorized) AggregateID() string { return p.OrderID }

// AggregateID returns the order id.
func (p PaymentDeclined) AggregateID() string { return p.OrderID }

// AggregateID returns the order id.
func (p PaymentRefunded) AggregateID() string { return p.OrderID }

// AggregateID returns the order id.
func (p StockReserved) AggregateID() string { return p.OrderID }

// AggregateID returns the order id.
func (p StockRejected) AggregateID() string { return p.OrderID }

// AggregateID returns the order id.
func (p StockReleased) AggregateID() string { return p.OrderID }

// AggregateID returns the order id.
func (p ShipmentScheduled) AggregateID() string { return p.OrderID }

// AggregateID returns the order id.
func (p ShipmentCancelled) AggregateID() string { return p.OrderID }

// Validate checks the tagged field constraints, then that TotalCents is the
// sum of the lines.
func (p OrderPlaced) Validate() error {
	if err := validateFields(p); err != nil {
		return err
	}
	var sum int64
	for i, l := range p.Items {
		line, ok := mulInt64(int64(l.Quantity), l.UnitPriceCents)
		if ok {
			sum, ok = addInt64(sum, line)
		}
		if !ok {
			return &DecodeError{Kind: ErrInvalidField, Type: TypeOrderPlaced, op: "validate",
				Field: fmt.Sprintf("items[%d].unit_price_cents", i), Err: errOverflow}
		}
	}
	if sum != p.TotalCents {
		return &DecodeError{Kind: ErrInvalidField, Type: TypeOrderPlaced, op: "validate", Field: "total_cents",
			Err: fmt.Errorf("%d is not the sum of the lines, %d", p.TotalCents, sum)}
	}
	return nil
}

// Validate checks the tagged field constraints.
func (p OrderConfirmed) Validate() error { return validateFields(p) }

// Validate checks the tagged field constraints.
func (p OrderCancelled) Validate() error { return validateFields(p) }

// Validate checks the tagged field constraints.
func (p PaymentAuthorized) Validate() error { return validateFields(p) }

// Validate checks the tagged field constraints.
func (p PaymentDeclined) Validate() error { return validateFields(p) }

// Validate checks the tagged field constraints.
func (p PaymentRefunded) Validate() error { return validateFields(p) }

// Validate checks the tagged field constraints.
func (p StockReserved) Validate() error { return validateFields(p) }

// Validate checks the tagged field constraints.
func (p StockRejected) Validate() error { return validateFields(p) }

// Validate checks the tagged field constraints.
func (p StockReleased) Validate() error { return validateFields(p) }

// Validate checks the tagged field constraints.
func (p ShipmentScheduled) Validate() error { return validateFields(p) }

// Validate checks the tagged field constraints.
func (p ShipmentCancelled) Validate() error { return validateFields(p) }

// mulInt64 returns a*b for a, b >= 0 and whether it fits in an int64.
func mulInt64(a, b int64) (int64, bool) {
	if a < 0 || b < 0 || (a != 0 && b > math.MaxInt64/a) {
		return 0, false
	}
	return a * b, true
}

// addInt64 returns a+b for a, b >= 0 and whether it fits in an int64.
func addInt64(a, b int64) (int64, bool) {
	if a < 0 || b < 0 || a > math.MaxInt64-b {
		return 0, false
	}
	return a + b, true
}
