// Package events holds the event contracts shared by every shopflow service:
// the payload types, the CloudEvents 1.0 envelope, and the codec that maps an
// event to and from a Kafka record in binary content mode.
//
// # Wire format
//
// An event is one Kafka record. Its value is the JSON payload (snake_case
// fields, money as integer minor units plus an ISO 4217 currency, times as
// RFC 3339). Its key is the order id, so every event about one order lands
// on one partition and is consumed in order. Its headers carry the envelope:
//
//	ce_specversion  "1.0"
//	ce_id           UUID (New makes a UUIDv7), the consumers' dedupe key
//	ce_source       URI reference of the producer, e.g. "/shopflow/order"
//	ce_type         one of Types(), e.g. "shop.order.placed.v1"
//	ce_time         RFC 3339 with nanoseconds, UTC
//	ce_subject      the order id, equal to the payload's order_id
//	content-type    "application/json"
//	traceparent     W3C trace context, when tracing is on
//
// # Strict decoding
//
// Decode accepts exactly what Encode produces, plus unknown payload fields
// and unknown headers (additive changes stay v1; a breaking change gets a
// new .v2 type). Everything else is an error value, a *DecodeError, whose
// kind callers test with errors.Is: ErrUnknownType, ErrMalformed,
// ErrMissingField or ErrInvalidField. A consumer sends such records to its
// dead-letter topic (DLQTopic) instead of retrying them. Decode never panics.
//
// Decode is stricter than the JSON Schemas can say (each schema's $comment
// repeats this): integers have no fraction or exponent (2, not 2.0 or 2e0),
// times are RFC 3339 with an upper-case T and Z or an offset, no leap
// second, and never the zero time, an OrderPlaced's total_cents is the
// sum of its lines, no string holds U+0000 (NUL: PostgreSQL's text cannot
// store it), and a payload is at most MaxPayloadBytes. A producer in
// another language that validates against the schemas must keep to these
// too, or its records are dead-lettered.
//
// # Bounds
//
// An event holds at most what a real order needs (limits.go): MaxLines
// lines, MaxQuantity units a line, every string a bounded number of
// characters, the payload MaxPayloadBytes. Decode refuses an event beyond
// a bound as ErrInvalidField (ErrMalformed for the payload's size), naming
// the field and the bound, so that one record cannot make a consumer's
// transaction, memory or result events as large as its producer likes;
// Encode refuses to make one. The schemas carry the bounds as maxItems,
// maximum and maxLength.
//
// # Machine-readable contracts
//
// Schemas holds one JSON Schema (draft 2020-12) per event type, and AsyncAPI
// an AsyncAPI 3.0 document describing the topics, messages and headers. Both
// are generated from the Go types in this package (their json tags, their
// event tags carrying the constraints, and their doc comments) by the test
// TestContractFiles, which fails when the committed files are stale.
// Regenerate them with go generate.
package events

//go:generate go test -run=TestContractFiles -update
