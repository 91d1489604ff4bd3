// Package kafkaerr tells which Kafka error a kafka-go call failed with.
package kafkaerr

import (
	"errors"
	"slices"

	"github.com/segmentio/kafka-go"
)

// Is reports whether err is, or holds, the broker error code: kafka-go's
// Writer.WriteMessages returns it either alone (or wrapped, as its
// MessageTooLargeError wraps MessageSizeTooLarge) or as one of the
// per-message errors of a kafka.WriteErrors, which errors.Is does not
// look into.
func Is(err error, code kafka.Error) bool {
	if errors.Is(err, code) {
		return true
	}
	var we kafka.WriteErrors
	return errors.As(err, &we) && slices.ContainsFunc(we, func(e error) bool { return errors.Is(e, code) })
}
