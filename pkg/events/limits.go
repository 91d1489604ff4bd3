package events

// The contract's bounds on what one event may hold. Decode refuses an
// event beyond them (a *DecodeError naming the field and the bound, which
// a consumer dead-letters at once), and Encode refuses to produce one, so
// that what a consumer does for one event (its transaction, its memory,
// the result events it writes) stays within what a real order needs. The
// order API enforces the same bounds when an order is placed.
//
// Event tags name them (maxitems=MaxLines, maxlen=maxTextLength) rather
// than repeat their values; see limitNames.
const (
	// MaxLines is the most lines an order may have: OrderPlaced's items,
	// and so the lines of the inventory's answers about it
	// (StockReserved's and StockReleased's items, StockRejected's short).
	MaxLines = 100
	// MaxQuantity is the most units one line of an order may ask for.
	MaxQuantity = 1000
	// MaxPayloadBytes bounds an event's payload (the Kafka record value),
	// checked before it is parsed: 1 MiB, Kafka's default
	// max.message.bytes and what the outbox can publish. The largest
	// payload the other bounds allow is far smaller (about 200 KB with
	// every character of every string escaped as \uXXXX\uXXXX); the rest
	// is room for fields added to v1 later.
	MaxPayloadBytes = 1 << 20
)

// The bounds on string fields, in characters (Unicode code points, as
// JSON Schema's maxLength counts them). Each is at least what the order
// API accepts for the field, so no order it takes is refused here; all are
// short enough for a PostgreSQL B-tree index entry (2704 bytes) even at 4
// bytes a character.
const (
	maxIDLength         = 128 // order, payment, reservation and shipment ids (UUIDs, 36)
	maxSKULength        = 64  // the API's and the stock table's SKU pattern
	maxCustomerIDLength = 64  // the API's customer id pattern
	maxTextLength       = 255 // card tokens, address fields, codes, carriers, tracking numbers
	maxReasonLength     = 1024
	// maxCancelReasonLength bounds OrderCancelled's reason, which the
	// order service composes from its steps' failures: a decline's reason
	// (maxReasonLength) and an inventory rejection listing up to MaxLines
	// short lines (each "SKU (wanted N, M available)", at most 111
	// characters), about 12,400 characters at most.
	maxCancelReasonLength = 16384
	// maxSKUQuantity is the most an order can ask of one SKU, its lines
	// summed (an OrderPlaced may name a SKU on several lines; the
	// inventory's stock lines merge them).
	maxSKUQuantity = MaxLines * MaxQuantity
)

// limitNames are the names event tags may use for a bound instead of a
// number.
var limitNames = map[string]int64{
	"MaxLines":              MaxLines,
	"MaxQuantity":           MaxQuantity,
	"maxIDLength":           maxIDLength,
	"maxSKULength":          maxSKULength,
	"maxCustomerIDLength":   maxCustomerIDLength,
	"maxTextLength":         maxTextLength,
	"maxReasonLength":       maxReasonLength,
	"maxCancelReasonLength": maxCancelReasonLength,
	"maxSKUQuantity":        maxSKUQuantity,
}
