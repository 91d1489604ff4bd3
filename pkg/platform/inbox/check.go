package inbox

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/shopflow/shopflow/pkg/events"
)

// Checked returns h behind check: a batch whose events all pass goes to
// h; else the first event that fails is named to the inbox (ItemFailed)
// with check's error as Permanent, so the events before it are applied
// without it, it is dead-lettered at once, and the rest follow. For what
// a record's content says once and for all (its order id's form), before
// the handler spends a statement on it.
func Checked(check func(events.Event) error, h BatchHandler) BatchHandler {
	return func(ctx context.Context, tx pgx.Tx, items []Item) error {
		for i, it := range items {
			if err := check(it.Event); err != nil {
				return ItemFailed(i, Permanent(err))
			}
		}
		return h(ctx, tx, items)
	}
}
