package outbox

import (
	"errors"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"
)

func TestSummarizeWriteErrors(t *testing.T) {
	refused := errors.New("refused")
	we := make(kafka.WriteErrors, 256)
	for i := range we {
		we[i] = refused
	}
	we[7] = nil
	we[9] = kafka.MessageSizeTooLarge
	err := summarize(we)
	want := "255 of 256 messages not written: refused (and 1 other errors)"
	if err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
	if got := kafka.WriteErrors(nil); !errors.As(err, &got) || len(got) != 256 {
		t.Error("the summary hides the WriteErrors it stands for from errors.As")
	}
	if other := errors.New("dial"); summarize(other) != other {
		t.Error("an error that is not WriteErrors changed")
	}
	if len(err.Error()) > 100 || strings.Count(err.Error(), "refused") != 1 {
		t.Errorf("not short: %q", err)
	}
}
