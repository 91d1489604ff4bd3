package inbox_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/inbox"
)

// Checked names the first event its check refuses, as permanent, and
// hands the handler only batches that pass.
func TestCheckedNamesTheFirstEventItsCheckRefuses(t *testing.T) {
	refused := errors.New("refused")
	check := func(ev events.Event) error {
		if ev.Subject == "bad" {
			return refused
		}
		return nil
	}
	var handled int
	h := inbox.Checked(check, func(_ context.Context, _ pgx.Tx, items []inbox.Item) error {
		handled += len(items)
		return nil
	})
	item := func(subject string) inbox.Item { return inbox.Item{Event: events.Event{Subject: subject}} }
	err := h(context.Background(), nil, []inbox.Item{item("a"), item("b"), item("bad"), item("c"), item("bad")})
	if i, ok := inbox.FailedItem(err); !ok || i != 2 || !inbox.IsPermanent(err) || !errors.Is(err, refused) {
		t.Errorf("a batch with refused events: %v, want item 2 failed, permanent, with the check's error", err)
	}
	if handled != 0 {
		t.Errorf("the handler got %d events of a refused batch", handled)
	}
	if err := h(context.Background(), nil, []inbox.Item{item("a"), item("c")}); err != nil || handled != 2 {
		t.Errorf("a batch that passes: %v, %d events handled; want nil, 2", err, handled)
	}
}
