// Package kafkatopics creates the topics a service needs, idempotently, at
// start-up. Topics are never auto-created by producing to them: an
// auto-created topic gets the broker's defaults and fresh consumer groups can
// stall on it (kafka-go #585, #800).
package kafkatopics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/segmentio/kafka-go"
)

// DefaultPartitions is the partition count of shopflow's topics.
const DefaultPartitions = 12

// Spec describes one topic.
type Spec struct {
	Name string
	// Partitions; 0 means DefaultPartitions.
	Partitions int
	// ReplicationFactor; 0 leaves it to the broker (its
	// default.replication.factor: 1 on a single-node cluster such as
	// compose's, what the cluster is set up for on a production one).
	ReplicationFactor int
	// Configs are topic-level settings such as retention.ms.
	Configs map[string]string
}

// Ensure creates each topic that does not exist yet and waits until every
// topic named has a leader for each partition. Existing topics are left as
// they are. While no broker answers (they may still be starting) it
// retries until ctx ends.
func Ensure(ctx context.Context, brokers []string, specs ...Spec) error {
	return EnsureWith(ctx, &kafka.Client{Addr: kafka.TCP(brokers...)}, nil, specs...)
}

// EnsureWith is Ensure through a configured client (TLS, SASL), logging
// each retry with its cause on log (nil: silent), as pg.Connect does while
// PostgreSQL starts.
func EnsureWith(ctx context.Context, client *kafka.Client, log *slog.Logger, specs ...Spec) error {
	if len(specs) == 0 {
		return nil
	}
	if _, err := create(ctx, client, log, specs); err != nil {
		return err
	}
	return waitReady(ctx, client, specs)
}

// create asks the brokers to create each topic (retrying while none
// answers) and returns the ones it created: a topic that exists already,
// whatever its partitions, is left as it is and not returned.
func create(ctx context.Context, client *kafka.Client, log *slog.Logger, specs []Spec) ([]Spec, error) {
	req := &kafka.CreateTopicsRequest{}
	for _, s := range specs {
		if s.Name == "" {
			return nil, errors.New("kafkatopics: empty topic name")
		}
		tc := kafka.TopicConfig{Topic: s.Name, NumPartitions: s.partitions(), ReplicationFactor: s.ReplicationFactor}
		if tc.ReplicationFactor <= 0 {
			// -1: the broker's default (CreateTopics v4+, Kafka 2.4+). A
			// fixed 1 gave a production cluster topics without a copy,
			// which refuse every acks=all write where
			// min.insync.replicas is 2.
			tc.ReplicationFactor = -1
		}
		for k, v := range s.Configs {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v})
		}
		req.Topics = append(req.Topics, tc)
	}
	res, err := retry(ctx, client, log, func(ctx context.Context) (*kafka.CreateTopicsResponse, error) {
		return client.CreateTopics(ctx, req)
	})
	if err != nil {
		return nil, fmt.Errorf("kafkatopics: create: %w", err)
	}
	var errs []error
	var created []Spec
	for _, s := range specs {
		terr, answered := res.Errors[s.Name]
		switch {
		case answered && terr == nil:
			created = append(created, s)
		case errors.Is(terr, kafka.TopicAlreadyExists):
		case terr != nil:
			errs = append(errs, fmt.Errorf("kafkatopics: create %s: %w", s.Name, terr))
		}
	}
	return created, errors.Join(errs...)
}

// partitions is the partition count the topic is created with.
func (s Spec) partitions() int {
	if s.Partitions <= 0 {
		return DefaultPartitions
	}
	return s.Partitions
}

// waitReady polls metadata until each topic reports every partition with a
// leader, so readers and writers started next find them.
func waitReady(ctx context.Context, client *kafka.Client, specs []Spec) error {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	delay := 20 * time.Millisecond
	for {
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
		if err == nil {
			ready := len(md.Topics) == len(names)
			for _, t := range md.Topics {
				if t.Error != nil || len(t.Partitions) == 0 {
					ready = false
					continue
				}
				for _, p := range t.Partitions {
					if p.Error != nil || p.Leader.Host == "" {
						ready = false
					}
				}
			}
			if ready {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = errors.New("partitions without a leader")
			}
			return fmt.Errorf("kafkatopics: waiting for %v: %w (%w)", names, ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 500*time.Millisecond)
	}
}

// Delete removes topics, ignoring ones that do not exist.
func Delete(ctx context.Context, brokers []string, names ...string) error {
	client := &kafka.Client{Addr: kafka.TCP(brokers...)}
	res, err := client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: names})
	if err != nil {
		return fmt.Errorf("kafkatopics: delete: %w", err)
	}
	var errs []error
	for name, terr := range res.Errors {
		if terr != nil && !errors.Is(terr, kafka.UnknownTopicOrPartition) {
			errs = append(errs, fmt.Errorf("kafkatopics: delete %s: %w", name, terr))
		}
	}
	return errors.Join(errs...)
}

// retry repeats a request while the brokers are unreachable (they may
// still be starting), until ctx ends. Each failure is logged with its
// cause, and the error after the last one names it.
func retry[T any](ctx context.Context, client *kafka.Client, log *slog.Logger, fn func(context.Context) (T, error)) (T, error) {
	delay := 100 * time.Millisecond
	var last error // the last failure's cause, not ctx's end
	for attempt := 1; ; attempt++ {
		v, err := fn(ctx)
		var netErr net.Error
		if err == nil || !errors.As(err, &netErr) && !errors.Is(err, kafka.BrokerNotAvailable) {
			return v, err
		}
		if ctx.Err() != nil {
			if last == nil {
				last = err
			}
			return v, fmt.Errorf("%w after %d attempts; last error: %w", ctx.Err(), attempt, last)
		}
		last = cause(ctx, client, err)
		if log != nil {
			log.Warn("kafka not ready, retrying", "brokers", client.Addr.String(), "attempt", attempt, "in", delay, "err", last)
		}
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("%w after %d attempts; last error: %w", ctx.Err(), attempt, last)
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
}

// cause returns what is behind err. kafka-go answers a request for the
// controller with BrokerNotAvailable when it knows of none, which is also
// what it says when no broker ever answered; its cached metadata, which a
// Metadata request returns without a round trip, holds why (connection
// refused, no such host, a TLS or SASL failure).
func cause(ctx context.Context, client *kafka.Client, err error) error {
	if !errors.Is(err, kafka.BrokerNotAvailable) {
		return err
	}
	_, merr := client.Metadata(ctx, &kafka.MetadataRequest{})
	if merr == nil || ctx.Err() != nil {
		return err // the brokers answer: the cluster has no controller yet
	}
	// Drop kafka-go's "kafka.(*Client).Metadata: ": this was no metadata
	// request of ours.
	if inner := errors.Unwrap(merr); inner != nil {
		merr = inner
	}
	return fmt.Errorf("no broker reachable: %w", merr)
}
