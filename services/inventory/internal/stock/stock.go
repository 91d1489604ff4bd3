// Package stock holds the inventory's rules in plain Go: what a valid SKU
// and stock level are, how an order's lines are merged and checked against
// the stock on hand (all or nothing), and what a reservation does when its
// order is cancelled or confirmed. It knows nothing of Kafka, HTTP or SQL;
// the store and app packages apply its decisions inside one transaction.
package stock

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"
)

// MaxOnHand bounds the on-hand quantity of one SKU. It keeps every sum the
// service computes far from integer overflow and rejects typos such as an
// extra ten zeros at the admin API.
const MaxOnHand = 1_000_000_000

// skuPattern is the catalog's SKU format ("SKU-0001"): upper-case letters,
// digits and dashes, starting with a letter or digit, at most 64 long. The
// migration checks the same pattern on the stock table.
var skuPattern = regexp.MustCompile(`^[A-Z0-9][A-Z0-9-]{0,63}$`)

// ValidSKU reports whether s is a well-formed SKU.
func ValidSKU(s string) bool { return skuPattern.MatchString(s) }

// Errors callers branch on. Each names the rule that was broken; the
// adapters map them to a 4xx answer or a dead-lettered event.
var (
	// ErrInvalid: the input breaks a rule no retry can fix (bad SKU,
	// quantity out of range, an order without lines).
	ErrInvalid = errors.New("invalid")
	// ErrBelowReserved: on hand would drop below what is reserved.
	ErrBelowReserved = errors.New("on hand below reserved")
	// ErrNotFound: no stock row (or reservation) exists.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the event contradicts what this service recorded for
	// the order (confirming a reservation that was never made or was
	// released), so applying it again cannot succeed.
	ErrConflict = errors.New("conflict")
)

// Level is the stock of one SKU. Available is derived, never stored apart
// from on hand and reserved, so the three cannot disagree.
type Level struct {
	SKU       string
	OnHand    int64
	Reserved  int64
	UpdatedAt time.Time
	// Version changes whenever the level does (orders reserve, release
	// and sell, admins set it), so a client that read one version can ask
	// to change the level only if it is still that one.
	Version uint32
}

// Available is what new orders can still reserve.
func (l Level) Available() int64 { return l.OnHand - l.Reserved }

// CheckOnHand reports whether an admin may set the on-hand quantity of a
// SKU whose current level is l to n: n must be in 0..MaxOnHand and not
// below what is reserved, or reserved orders could not be filled.
func CheckOnHand(l Level, n int64) error {
	if n < 0 || n > MaxOnHand {
		return fmt.Errorf("%w: on_hand %d is outside 0..%d", ErrInvalid, n, MaxOnHand)
	}
	if n < l.Reserved {
		return fmt.Errorf("%w: on_hand %d is below the %d units reserved for open orders", ErrBelowReserved, n, l.Reserved)
	}
	return nil
}

// Precondition is what a conditional change demands of a SKU's level
// as it is when the change is made: HTTP's If-Match and If-None-Match.
// The zero Precondition demands nothing.
type Precondition struct {
	// IfMatch, if set, must match the level; IfNoneMatch, if set, must
	// not.
	IfMatch, IfNoneMatch *Versions
}

// Versions is a set of versions of a level, or any version (Any): an
// HTTP entity-tag list or "*".
type Versions struct {
	Any  bool
	List []uint32
}

// matches reports whether the level l (found, or not) is in v.
func (v *Versions) matches(l Level, found bool) bool {
	return found && (v.Any || slices.Contains(v.List, l.Version))
}

// Conditional reports whether p demands anything.
func (p Precondition) Conditional() bool { return p.IfMatch != nil || p.IfNoneMatch != nil }

// Check returns nil when the level cur of sku (found, or not) meets p,
// and a *PreconditionError otherwise.
func (p Precondition) Check(sku string, cur Level, found bool) error {
	if (p.IfMatch != nil && !p.IfMatch.matches(cur, found)) || (p.IfNoneMatch != nil && p.IfNoneMatch.matches(cur, found)) {
		return &PreconditionError{SKU: sku, Current: cur, Found: found}
	}
	return nil
}

// PreconditionError says a conditional change was not made, and what
// the level is now.
type PreconditionError struct {
	SKU     string
	Current Level // when Found
	Found   bool
}

func (e *PreconditionError) Error() string {
	if !e.Found {
		return fmt.Sprintf("no stock is recorded for SKU %s", e.SKU)
	}
	return fmt.Sprintf("the stock of SKU %s is now at version %d (on hand %d, reserved %d)",
		e.SKU, e.Current.Version, e.Current.OnHand, e.Current.Reserved)
}

// Line is a quantity of one SKU in an order or a reservation.
type Line struct {
	SKU      string
	Quantity int64
}

// Merge folds an order's lines into one line per SKU, sorted by SKU. The
// order service may send the same SKU twice; reserving it once with the
// summed quantity keeps the check honest (two lines of 3 against 5 in stock
// must fail) and the sorted order is the lock order. Quantities must be
// positive; a sum beyond MaxOnHand is kept as MaxOnHand+1, which no stock
// can fill, rather than risking overflow.
func Merge(lines []Line) ([]Line, error) {
	if len(lines) == 0 {
		return nil, fmt.Errorf("%w: order has no lines", ErrInvalid)
	}
	sums := make(map[string]int64, len(lines))
	for i, l := range lines {
		if l.SKU == "" {
			return nil, fmt.Errorf("%w: line %d has no SKU", ErrInvalid, i)
		}
		if l.Quantity < 1 {
			return nil, fmt.Errorf("%w: line %d (%s) has quantity %d, want at least 1", ErrInvalid, i, l.SKU, l.Quantity)
		}
		sums[l.SKU] = min(sums[l.SKU]+min(l.Quantity, MaxOnHand+1), MaxOnHand+1)
	}
	out := make([]Line, 0, len(sums))
	for sku, q := range sums {
		out = append(out, Line{SKU: sku, Quantity: q})
	}
	slices.SortFunc(out, func(a, b Line) int { return cmp.Compare(a.SKU, b.SKU) })
	return out, nil
}

// Short is a line the stock cannot fill.
type Short struct {
	SKU       string
	Requested int64
	Available int64
}

// Plan decides whether merged lines (from Merge) can all be reserved from
// levels (the locked stock rows, by SKU). It returns the lines that cannot
// be filled, in SKU order; none means reserve them all. A SKU without a
// stock row is short with nothing available: an unknown product is a
// business outcome (StockRejected), not an error.
func Plan(lines []Line, levels map[string]Level) []Short {
	var short []Short
	for _, l := range lines {
		lv, ok := levels[l.SKU]
		avail := int64(0)
		if ok {
			avail = max(lv.Available(), 0)
		}
		if l.Quantity > avail {
			short = append(short, Short{SKU: l.SKU, Requested: l.Quantity, Available: avail})
		}
	}
	return short
}
