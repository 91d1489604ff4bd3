// Package suitetest runs the whole suite in-process for a test and stops
// it when the test ends: the start and stop the tests of cmd/shop and e2e
// share.
package suitetest

import (
	"context"
	"testing"

	"github.com/shopflow/shopflow/cmd/shop/suite"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// Start starts the suite under ctx with o, filling what o leaves unset
// from the test environment: the brokers (testenv.Kafka), the topic
// prefix (testenv.Prefix) and a free port for every HTTP API. o's
// DatabaseURL is required. When the test ends the suite is stopped and
// the test fails if it did not stop cleanly.
func Start(tb testing.TB, ctx context.Context, o suite.Options) *suite.Suite {
	tb.Helper()
	if o.KafkaBrokers == nil {
		o.KafkaBrokers = testenv.Kafka(tb)
	}
	if o.TopicPrefix == "" {
		o.TopicPrefix = testenv.Prefix(tb)
	}
	if o.HTTPAddrs == nil {
		o.HTTPAddrs = map[string]string{}
		for _, name := range suite.Names {
			o.HTTPAddrs[name] = "127.0.0.1:0"
		}
	}
	ctx, stop := context.WithCancel(ctx)
	s, err := suite.Start(ctx, o)
	if err != nil {
		stop()
		tb.Fatalf("start the suite: %v", err)
	}
	tb.Cleanup(func() {
		stop()
		if err := s.Wait(); err != nil {
			tb.Errorf("the suite stopped with: %v", err)
		}
	})
	return s
}
