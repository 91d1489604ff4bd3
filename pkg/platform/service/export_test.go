package service

import (
	"testing"
	"time"
)

// SetTopicWatchInterval makes the services t starts look for their topics
// every d, until t ends. t must not run in parallel.
func SetTopicWatchInterval(t testing.TB, d time.Duration) {
	old := topicWatchInterval
	topicWatchInterval = d
	t.Cleanup(func() { topicWatchInterval = old })
}
