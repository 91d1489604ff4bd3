package kafkaerr

import (
	"errors"
	"fmt"
	"testing"

	"github.com/segmentio/kafka-go"
)

func TestIs(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"the code", kafka.UnknownTopicOrPartition, true},
		{"wrapped", fmt.Errorf("publish: %w", kafka.UnknownTopicOrPartition), true},
		{"kafka-go's too-large error", kafka.MessageTooLargeError{}, false},
		{"among WriteErrors", fmt.Errorf("publish: %w", kafka.WriteErrors{nil, kafka.UnknownTopicOrPartition}), true},
		{"another code among WriteErrors", kafka.WriteErrors{kafka.NotEnoughReplicas, nil}, false},
		{"another error", errors.New("unknown topic or partition"), false},
		{"nil", nil, false},
	} {
		if got := Is(tt.err, kafka.UnknownTopicOrPartition); got != tt.want {
			t.Errorf("%s: Is(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
	if !Is(kafka.MessageTooLargeError{}, kafka.MessageSizeTooLarge) {
		t.Error("kafka-go's MessageTooLargeError is not MessageSizeTooLarge")
	}
}
