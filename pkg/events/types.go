package events

import "strings"

// Type is a CloudEvents type (the ce_type header): "shop.<domain>.<event>.v<N>".
type Type string

// The event types of the order saga. A breaking change to a payload gets a
// new type with the next version suffix; additive changes keep the type.
const (
	TypeOrderPlaced       Type = "shop.order.placed.v1"
	TypeOrderConfirmed    Type = "shop.order.confirmed.v1"
	TypeOrderCancelled    Type = "shop.order.cancelled.v1"
	TypePaymentAuthorized Type = "shop.payment.authorized.v1"
	TypePaymentDeclined   Type = "shop.payment.declined.v1"
	TypePaymentRefunded   Type = "shop.payment.refunded.v1"
	TypeStockReserved     Type = "shop.stock.reserved.v1"
	TypeStockRejected     Type = "shop.stock.rejected.v1"
	TypeStockReleased     Type = "shop.stock.released.v1"
	TypeShipmentScheduled Type = "shop.shipment.scheduled.v1"
	TypeShipmentCancelled Type = "shop.shipment.cancelled.v1"
)

// The topics events are published to, one per producing service. Records
// are keyed by order id.
const (
	TopicOrders    = "shop.orders"    // order.* events, from the order service
	TopicPayments  = "shop.payments"  // payment.* events, from the payment service
	TopicInventory = "shop.inventory" // stock.* events, from the inventory service
	TopicShipments = "shop.shipments" // shipment.* events, from the shipping service
)

// dlqPrefix prefixes a consumer group's dead-letter topic.
const dlqPrefix = "shop.dlq."

// DLQTopic returns the dead-letter topic of a consumer group: "shop.dlq." + group.
func DLQTopic(group string) string { return dlqPrefix + group }

// Types returns every event type this package can encode and decode, in a
// stable order (the order of the Type constants). The slice is the caller's.
func Types() []Type {
	ts := make([]Type, len(payloadTypes))
	for i, p := range payloadTypes {
		ts[i] = p.EventType()
	}
	return ts
}

// The ce_source of each service's events. The order service applies a
// step's result only from the step's own service (Type.Source): a record
// on shop.payments from anyone else is not the payment service's answer.
const (
	SourceOrder     = "/shopflow/order"
	SourcePayment   = "/shopflow/payment"
	SourceInventory = "/shopflow/inventory"
	SourceShipping  = "/shopflow/shipping"
)

// Topic returns the topic events of type t are published to, chosen by the
// type's domain (order, payment, stock, shipment) whatever its version, or ""
// for a type outside those domains.
func (t Type) Topic() string {
	switch t.domain() {
	case "order":
		return TopicOrders
	case "payment":
		return TopicPayments
	case "stock":
		return TopicInventory
	case "shipment":
		return TopicShipments
	}
	return ""
}

// Source returns the ce_source of the service that publishes events of
// type t, chosen by the type's domain as Topic is, or "" for a type
// outside those domains.
func (t Type) Source() string {
	switch t.domain() {
	case "order":
		return SourceOrder
	case "payment":
		return SourcePayment
	case "stock":
		return SourceInventory
	case "shipment":
		return SourceShipping
	}
	return ""
}

// domain is the part of t after "shop.", up to the next dot ("" when t
// has no such part).
func (t Type) domain() string {
	rest, ok := strings.CutPrefix(string(t), "shop.")
	if !ok {
		return ""
	}
	domain, _, ok := strings.Cut(rest, ".")
	if !ok {
		return ""
	}
	return domain
}

// Header names of the CloudEvents Kafka binding (binary content mode).
const (
	HeaderSpecVersion = "ce_specversion"
	HeaderID          = "ce_id"
	HeaderSource      = "ce_source"
	HeaderType        = "ce_type"
	HeaderTime        = "ce_time"
	HeaderSubject     = "ce_subject"
	HeaderContentType = "content-type"
	HeaderTraceParent = "traceparent"
)

// Header names a consumer adds when it dead-letters a record to DLQTopic
// (the record keeps its key, value and original headers). Numbers are
// decimal strings; HeaderDLQFailedAt is RFC 3339 UTC.
const (
	HeaderDLQError           = "dlq_error"
	HeaderDLQSourceTopic     = "dlq_source_topic"
	HeaderDLQSourcePartition = "dlq_source_partition"
	HeaderDLQSourceOffset    = "dlq_source_offset"
	HeaderDLQGroup           = "dlq_group"
	HeaderDLQAttempts        = "dlq_attempts"
	HeaderDLQFailedAt        = "dlq_failed_at"
	// HeaderDLQOmitted is set on a dead letter that leaves the record's
	// key, value and original headers out because the whole record did
	// not fit the dead-letter topic; it says their sizes. The record stays
	// at its source offset until the topic's retention removes it.
	HeaderDLQOmitted = "dlq_omitted"
)

// SpecVersion is the CloudEvents version of the envelope (ce_specversion).
const SpecVersion = "1.0"

// ContentType is the media type of every payload (the content-type header).
const ContentType = "application/json"
