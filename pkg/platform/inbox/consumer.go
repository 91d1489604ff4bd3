package inbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/internal/kafkaerr"
	"github.com/shopflow/shopflow/pkg/platform/kafkatopics"
	"github.com/shopflow/shopflow/pkg/platform/pg"
	"github.com/shopflow/shopflow/pkg/platform/tracing"
)

// Config configures a Consumer. Zero values take the defaults noted.
type Config struct {
	// Brokers are the Kafka bootstrap addresses.
	Brokers []string
	// Dialer carries TLS/SASL for the reader; Transport for the DLQ writer
	// and topic creation. Nil means plaintext.
	Dialer    *kafka.Dialer
	Transport kafka.RoundTripper
	// Group is the consumer group and the inbox's consumer name.
	Group string
	// Topics to consume.
	Topics []string
	// Handler applies one event; or set BatchHandler, which applies the
	// events of a transaction in one call. Exactly one is required.
	Handler      Handler
	BatchHandler BatchHandler
	// OnCommit, if set, is called after each transaction that applied
	// records commits (service.Run passes the outbox relay's Wake, so
	// the events the handlers wrote are published at once).
	OnCommit func()
	// DLQTopic defaults to events.DLQTopic(Group); it is created if missing.
	DLQTopic string
	// BatchSize bounds the records applied in one transaction; default 100.
	// 1 disables batching.
	BatchSize int
	// Parallelism is how many workers apply records at once; partition p
	// goes to worker p % Parallelism, so records of one partition (and,
	// with equally partitioned topics, of one key across topics) stay in
	// order on one worker, while a record being retried holds up only its
	// worker's partitions, until MaxBuffered records wait behind it: then
	// fetching, and so every worker, waits too (kafka-go's group reader
	// cannot pause one partition, and buffering more costs memory).
	// Default 4; 1 applies everything in one line.
	Parallelism int
	// Linger is how long a worker that finds fewer than BatchSize records
	// waiting waits for more before applying them: at moderate rates it
	// turns a transaction, offset commit and relay round per record into
	// one per several, for at most Linger of added latency per hop. A
	// worker that finds a full batch applies it at once. 0 applies what
	// is there at once.
	Linger time.Duration
	// MaxBuffered bounds the records fetched but not yet applied per
	// worker; when a worker's queue is full, fetching waits. Default
	// 20 × BatchSize.
	MaxBuffered int
	// MaxBufferedBytes bounds the bytes (keys, values, headers) of the
	// records fetched and not yet settled (applied, skipped or
	// dead-lettered), all workers together, from when they are fetched
	// until their transaction is over: fetching waits while they hold
	// that much. A record larger than the whole of it is still taken,
	// alone. Default 32 MiB: ordinary events (about 1 KB) never reach it
	// before MaxBuffered does, while records near the broker's limit (1
	// MiB by default) are held a few dozen at a time rather than
	// MaxBuffered per worker (8,000 records: 8 GiB).
	MaxBufferedBytes int
	// MaxAttempts is how often a failing handler runs before the record is
	// dead-lettered; default 5.
	MaxAttempts int
	// RetryBase and RetryMax bound the exponential backoff; defaults 100 ms
	// and 5 s.
	RetryBase, RetryMax time.Duration
	// OutageFor is how long a record failing with an OutageError (a
	// system outside the database not answering) is retried before it is
	// dead-lettered, counted from its first such failure; default 5 min.
	// Its partition's records wait meanwhile, as they would fail alike.
	OutageFor time.Duration
	// SessionTimeout and HeartbeatInterval: defaults 6 s and 1 s, so a
	// killed member's partitions move within seconds (KAFKA-GO.md).
	SessionTimeout, HeartbeatInterval time.Duration
	// RebalanceTimeout default 10 s; JoinGroupBackoff default 500 ms.
	RebalanceTimeout, JoinGroupBackoff time.Duration
	// MaxWait bounds a fetch long-poll; default 500 ms. A fetch returns as
	// soon as a record arrives, so it adds no latency; it sets what an
	// idle consumer costs, a fetch per partition per MaxWait (the suite's
	// 72 partition readers idle: 46-51 ms of CPU a second at 250 ms, 24-29
	// at 500 ms), and how long a stop or a rebalance may wait for the
	// fetches in flight to end (kafka-go does not cancel them).
	MaxWait time.Duration
	// LeaveAfter is how long the database may stay unavailable (every
	// attempt failing as pg.Unavailable, nothing applied meanwhile)
	// before the consumer leaves its group, so that the other members,
	// whose databases answer, take its partitions: retrying the record
	// in hand for as long as the outage lasts held them, and every
	// record on them waited. It joins again once the database answers
	// and takes writes (pg.Writable, polled with RetryBase..RetryMax
	// backoff). It leaves only if the database fails a check of its own
	// too: a failure that is not the database's (a handler's request
	// timing out) does not take it out. Default 20 s, past a PostgreSQL
	// restart, so that a short outage costs the group no rebalance;
	// negative never leaves.
	LeaveAfter time.Duration
	// Retention, if positive, is how long an applied event's inbox row is
	// kept: a pruner deletes older rows at start and every PruneInterval
	// (default 10 min). Zero keeps every row. A redelivery of an event
	// whose row is gone is applied again. Redeliveries come from offsets
	// not yet committed and from a relay republishing after a crash,
	// within seconds or minutes, but also from a group whose offsets were
	// reset or expired reading a topic again: keep rows at least as long
	// as the topics can keep a record (retention.ms plus segment.ms, as
	// Kafka deletes whole segments: 7 + 7 days by default).
	Retention, PruneInterval time.Duration
	// Tracer, if set, records a span per applied record, continuing the
	// event's traceparent, so the handler's outbox writes carry the trace
	// on. Nil means no tracing.
	Tracer trace.Tracer
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Stats counts what a Consumer did since it started.
type Stats struct {
	Processed    int64 // records applied (handler committed)
	Duplicates   int64 // records skipped because the inbox had them
	Retries      int64 // failed attempts that were retried
	DeadLettered int64 // records sent to the DLQ
	Pruned       int64 // inbox rows deleted by retention
	FetchErrors  int64 // errors kafka-go reported while fetching (a broker down, a group rejoin); fetching goes on
	// Buffered is the bytes of the records fetched and not yet settled
	// now (see Config.MaxBufferedBytes).
	Buffered int64
	// OutOfGroup is true while the consumer is out of its group because
	// its database stayed unavailable past LeaveAfter; it joins again
	// when the database answers.
	OutOfGroup bool
}

// Consumer is an idempotent consumer-group member.
type Consumer struct {
	pool *pgxpool.Pool
	cfg  Config
	log  *slog.Logger
	dlq  *kafka.Writer

	processed, duplicates, retries, deadLettered, pruned, fetchErrors atomic.Int64
	buffered                                                          atomic.Int64 // the running member's budget in use

	// dieBeforeOffsetCommit, set by tests, makes the consumer stop dead
	// after a database commit and before the offset commit when it
	// returns true: the crash window the inbox exists for.
	dieBeforeOffsetCommit func() bool
	// failOffsetCommit, set by tests, fails an offset commit (before
	// sending it) when it returns true.
	failOffsetCommit func() bool
	// betweenMembers, set by tests, is called when Rejoin has ended a
	// member, before resetStaleOffsets and the next member.
	betweenMembers func()

	// commitMu orders this member's offset commits, so that a retry of an
	// older one never lands after a newer one; unsent holds, per partition, the
	// last record whose offset commit failed and that no later commit
	// has covered (retryCommits retries them).
	commitMu sync.Mutex
	unsent   map[TopicPartition]kafka.Message

	// rejoinMu guards the running member's cancel, whether Rejoin asked
	// for another, and the topics the broker lost while it ran.
	rejoinMu sync.Mutex
	leave    context.CancelFunc
	again    bool
	restored []string // topics whose stale offsets the next member's start resets
	// lost holds the topics the broker lost since the member joined
	// (kafka-go reported them unknown, or Rejoin named them): the
	// member's records of them came from a topic that is gone, and their
	// offsets, committed to the topic created again, would skip its
	// first records. None of them is committed or kept from then on.
	lost map[string]bool
	// downSince is when the database became unavailable, set when the
	// running member left for it (leaveForDatabase): Run waits for the
	// database before the next member. out is true while it waits.
	downSince time.Time
	out       bool

	// unavailableSince is when the first of the attempts failing as
	// pg.Unavailable since the database last answered started, in
	// UnixNano; 0 while it answers (see LeaveAfter).
	unavailableSince atomic.Int64
}

// New checks cfg and returns a Consumer; Run starts it.
func New(pool *pgxpool.Pool, cfg Config) (*Consumer, error) {
	switch {
	case pool == nil:
		return nil, errors.New("inbox: nil pool")
	case cfg.Group == "":
		return nil, errors.New("inbox: empty group")
	case len(cfg.Topics) == 0:
		return nil, errors.New("inbox: no topics")
	case (cfg.Handler == nil) == (cfg.BatchHandler == nil):
		return nil, errors.New("inbox: set exactly one of Handler and BatchHandler")
	case len(cfg.Brokers) == 0:
		return nil, errors.New("inbox: no brokers")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if cfg.DLQTopic == "" {
		cfg.DLQTopic = events.DLQTopic(cfg.Group)
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 100
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.Parallelism <= 0 {
		cfg.Parallelism = 4
	}
	if cfg.MaxBuffered <= 0 {
		cfg.MaxBuffered = 20 * cfg.BatchSize
	}
	if cfg.MaxBufferedBytes <= 0 {
		cfg.MaxBufferedBytes = 32 << 20
	}
	def(&cfg.RetryBase, 100*time.Millisecond)
	def(&cfg.RetryMax, 5*time.Second)
	def(&cfg.OutageFor, 5*time.Minute)
	def(&cfg.SessionTimeout, 6*time.Second)
	def(&cfg.HeartbeatInterval, time.Second)
	def(&cfg.RebalanceTimeout, 10*time.Second)
	def(&cfg.JoinGroupBackoff, 500*time.Millisecond)
	def(&cfg.MaxWait, 500*time.Millisecond)
	def(&cfg.PruneInterval, 10*time.Minute)
	if cfg.LeaveAfter == 0 {
		cfg.LeaveAfter = 20 * time.Second
	}
	if cfg.Retention < 0 {
		return nil, fmt.Errorf("inbox: negative retention %s", cfg.Retention)
	}
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider().Tracer("")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &Consumer{pool: pool, cfg: cfg, log: log.With("component", "inbox", "group", cfg.Group),
		unsent: map[TopicPartition]kafka.Message{}}
	c.dlq = &kafka.Writer{
		Addr: kafka.TCP(cfg.Brokers...), Topic: cfg.DLQTopic, Transport: cfg.Transport,
		RequiredAcks: kafka.RequireAll, Balancer: &kafka.Murmur2Balancer{},
		BatchTimeout: time.Millisecond, MaxAttempts: 5,
	}
	return c, nil
}

// Stats returns the counters so far.
func (c *Consumer) Stats() Stats {
	c.rejoinMu.Lock()
	out := c.out
	c.rejoinMu.Unlock()
	return Stats{Processed: c.processed.Load(), Duplicates: c.duplicates.Load(), Retries: c.retries.Load(),
		DeadLettered: c.deadLettered.Load(), Pruned: c.pruned.Load(), FetchErrors: c.fetchErrors.Load(), Buffered: c.buffered.Load(),
		OutOfGroup: out}
}

type record struct {
	msg kafka.Message
	ev  events.Event
	err error // decode error: goes to the DLQ
}

// Run consumes until ctx ends, then finishes the records in hand, commits
// their offsets, leaves the group and returns nil. It returns an error only
// if it cannot start.
func (c *Consumer) Run(ctx context.Context) error {
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := kafkatopics.EnsureWith(tctx, &kafka.Client{Addr: kafka.TCP(c.cfg.Brokers...), Transport: c.cfg.Transport}, c.log,
		DLQTopicSpec(c.cfg.DLQTopic))
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("inbox %s: %w", c.cfg.Group, err)
	}
	defer c.dlq.Close()
	for {
		sctx, cancel := context.WithCancel(ctx)
		c.rejoinMu.Lock()
		c.leave, c.again, c.lost = cancel, false, nil
		c.rejoinMu.Unlock()
		c.member(sctx)
		c.rejoinMu.Lock()
		c.leave = nil
		again, restored, lost, downSince := c.again, c.restored, c.lost, c.downSince
		c.restored, c.lost, c.downSince = nil, nil, time.Time{}
		c.out = again && !downSince.IsZero()
		c.rejoinMu.Unlock()
		cancel()
		// The member kept none of the lost topics' offsets since it
		// learned of the loss; one kept before is dropped here, before
		// the next member (from the topic created again) could retry it.
		c.dropUnsent(lost)
		if ctx.Err() != nil || !again {
			return nil
		}
		if !downSince.IsZero() {
			back := c.waitForDatabase(ctx, downSince)
			c.rejoinMu.Lock()
			restored = append(restored, c.restored...) // topics back meanwhile
			c.restored, c.out = nil, false
			c.rejoinMu.Unlock()
			if !back {
				return nil
			}
		}
		if c.betweenMembers != nil {
			c.betweenMembers()
		}
		c.resetStaleOffsets(ctx, restored)
		if downSince.IsZero() || len(restored) > 0 {
			c.log.Info("joining the group again", "topics_restored", restored)
		}
	}
}

// probeTimeout bounds one check of the database by leaveWhenTheDatabaseIsGone
// and waitForDatabase.
const probeTimeout = 5 * time.Second

// databaseAnswered notes that the database answered: the outage
// LeaveAfter measures, if one had begun, is over.
func (c *Consumer) databaseAnswered() { c.unavailableSince.Store(0) }

// noteAttempt notes how an attempt started at start ended: if err says
// the database is unavailable, an outage began then, unless one had
// begun already; otherwise the database answered.
func (c *Consumer) noteAttempt(start time.Time, err error) {
	if !pg.Unavailable(err) || IsPermanent(err) {
		c.databaseAnswered()
		return
	}
	c.unavailableSince.CompareAndSwap(0, start.UnixNano())
}

// leaveWhenTheDatabaseIsGone ends the member, until ctx ends, once the
// database has been unavailable for LeaveAfter and fails a check of its
// own: the member held its partitions while it could apply none of their
// records, and the other members, whose databases answer, could. The
// records in hand are left uncommitted: another member gets them again
// (and the inbox skips any that were applied after all).
func (c *Consumer) leaveWhenTheDatabaseIsGone(ctx context.Context) {
	if c.cfg.LeaveAfter < 0 {
		return
	}
	t := time.NewTicker(min(max(c.cfg.LeaveAfter/4, 10*time.Millisecond), time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		since := c.unavailableSince.Load()
		if since == 0 || time.Since(time.Unix(0, since)) < c.cfg.LeaveAfter {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		err := pg.Writable(pctx, c.pool)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			// It answers: what failed was not the database (a handler's
			// request timing out), or it is back. Measure afresh.
			c.databaseAnswered()
			continue
		}
		down := time.Unix(0, since)
		c.log.Warn("the database has been unavailable too long; leaving the group, so that the other members take this one's partitions, until it answers again",
			"unavailable_for", time.Since(down).Round(time.Second).String(), "leave_after", c.cfg.LeaveAfter.String(), "err", err)
		c.leaveForDatabase(down)
		return
	}
}

// leaveForDatabase ends the running member and has Run start another
// once the database, unavailable since down, answers again.
func (c *Consumer) leaveForDatabase(down time.Time) {
	c.rejoinMu.Lock()
	defer c.rejoinMu.Unlock()
	if c.leave != nil {
		c.again = true
		c.downSince = down
		c.leave()
	}
}

// waitForDatabase polls pg.Writable, with the records' retry backoff,
// until the database, unavailable since down, answers and takes writes;
// false if ctx ended first. The jitter spreads the replicas' checks and
// joins after an outage of the whole database, which all of them left.
func (c *Consumer) waitForDatabase(ctx context.Context, down time.Time) bool {
	left := time.Now()
	for attempt := 1; ; attempt++ {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff(c.cfg.RetryBase, c.cfg.RetryMax, attempt)):
		}
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		err := pg.Writable(pctx, c.pool)
		cancel()
		if err == nil {
			c.databaseAnswered()
			c.log.Info("the database answers again; joining the group",
				"unavailable_for", time.Since(down).Round(time.Second).String(), "out_of_the_group_for", time.Since(left).Round(time.Second).String())
			return true
		}
	}
}

// rejoinWhenTopicsAreBack waits for kafka-go to report a topic missing,
// then for every topic the consumer reads to exist, and calls Rejoin for
// them, once per member.
func (c *Consumer) rejoinWhenTopicsAreBack(ctx context.Context, missing <-chan struct{}) {
	select {
	case <-ctx.Done():
		return
	case <-missing:
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		// Asked uncached (not conn.ReadPartitions either: it lets a
		// broker create the topic, with the broker's settings).
		client, done := c.uncachedClient()
		mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		md, err := client.Metadata(mctx, &kafka.MetadataRequest{Topics: c.cfg.Topics})
		cancel()
		done()
		there := 0
		if err == nil {
			for _, t := range md.Topics {
				if t.Error == nil && len(t.Partitions) > 0 {
					there++
				}
			}
		}
		if there == len(c.cfg.Topics) {
			c.log.Info("the topics kafka-go found missing are there; joining the group again", "topics", c.cfg.Topics)
			// Not Rejoin: the topics kafka-go named are marked lost
			// already, and the others' records in hand are committed.
			c.rejoin(c.cfg.Topics)
			return
		}
	}
}

// uncachedClient returns a client on a Transport of its own, with the
// shared one's TLS, SASL and dialer, and a func that closes its
// connections. The shared Transport answers metadata requests from its
// cache, refreshed every MetadataTTL (and after a CreateTopics through
// it): a topic lost or created again since is still there, or still
// missing, in its answers.
func (c *Consumer) uncachedClient() (*kafka.Client, func()) {
	tr := &kafka.Transport{}
	if shared, ok := c.cfg.Transport.(*kafka.Transport); ok && shared != nil {
		tr.TLS, tr.SASL, tr.Dial, tr.ClientID = shared.TLS, shared.SASL, shared.Dial, shared.ClientID
	}
	return &kafka.Client{Addr: kafka.TCP(c.cfg.Brokers...), Transport: tr}, tr.CloseIdleConnections
}

// resetStaleOffsets moves the group's committed offset of each partition
// of topics that is past the partition's end back to its first record.
// Such an offset counts records of a topic the broker lost: committed
// while it was gone (kafka-go sends a commit it was handed before the
// loss once a broker answers; brokers take commits for unknown topics),
// it would make the reader fail with Offset Out Of Range until the topic
// caught up, then skip what lies below it. Reading from the start
// instead redelivers what was applied, which the inbox skips. A broker
// that refuses the commit (the group has other members) is logged: their
// own rejoin resets it, or kafka-consumer-groups --reset-offsets does.
func (c *Consumer) resetStaleOffsets(ctx context.Context, topics []string) {
	// Only the topics it reads, each once (the watch reports others).
	topics = slices.DeleteFunc(slices.Clone(topics), func(t string) bool { return !slices.Contains(c.cfg.Topics, t) })
	slices.Sort(topics)
	topics = slices.Compact(topics)
	if len(topics) == 0 {
		return
	}
	// A few tries: the first request on a connection the broker's
	// restart cut fails (unexpected EOF), and one failed try left the
	// offsets past the end in place.
	for try := 1; ; try++ {
		err := c.resetStaleOffsetsOnce(ctx, topics)
		if err == nil {
			return
		}
		if try == 5 || ctx.Err() != nil {
			c.log.Warn("could not check the group's offsets of the topics the broker lost", "topics", topics, "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// resetStaleOffsetsOnce is one try of resetStaleOffsets; it returns an
// error when it could not read the offsets, a topic's or a partition's
// included (a refused reset is logged: trying again would not change
// the broker's mind).
func (c *Consumer) resetStaleOffsetsOnce(ctx context.Context, topics []string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	client, done := c.uncachedClient() // the topics were just lost and created again
	defer done()
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return err
	}
	parts := map[string][]int{}
	ends := map[string][]kafka.OffsetRequest{}
	for _, t := range md.Topics {
		if t.Error == nil && len(t.Partitions) == 0 {
			t.Error = errors.New("no partitions")
		}
		if t.Error != nil {
			return fmt.Errorf("topic %s: %w", t.Name, t.Error)
		}
		for _, p := range t.Partitions {
			parts[t.Name] = append(parts[t.Name], p.ID)
			ends[t.Name] = append(ends[t.Name], kafka.LastOffsetOf(p.ID), kafka.FirstOffsetOf(p.ID))
		}
	}
	committed, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: c.cfg.Group, Topics: parts})
	if err == nil {
		err = committed.Error
	}
	var listed *kafka.ListOffsetsResponse
	if err == nil {
		listed, err = client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: ends})
	}
	if err != nil {
		return err
	}
	reset := map[string][]kafka.OffsetCommit{}
	for topic, ps := range committed.Topics {
		for _, p := range ps {
			if p.Error != nil {
				return fmt.Errorf("committed offset of %s/%d: %w", topic, p.Partition, p.Error)
			}
			i := slices.IndexFunc(listed.Topics[topic], func(o kafka.PartitionOffsets) bool { return o.Partition == p.Partition })
			if i < 0 {
				return fmt.Errorf("no end of %s/%d", topic, p.Partition)
			}
			o := listed.Topics[topic][i]
			if o.Error != nil {
				return fmt.Errorf("end of %s/%d: %w", topic, p.Partition, o.Error)
			}
			if p.CommittedOffset > o.LastOffset {
				reset[topic] = append(reset[topic], kafka.OffsetCommit{Partition: p.Partition, Offset: o.FirstOffset})
			}
		}
	}
	if len(reset) == 0 {
		return nil
	}
	res, err := client.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: c.cfg.Group, GenerationID: -1, Topics: reset})
	if err == nil {
		for _, ps := range res.Topics {
			for _, p := range ps {
				err = cmp.Or(err, p.Error)
			}
		}
	}
	if err != nil {
		c.log.Error("the group's offsets are past the end of topics the broker lost; reset them to the earliest (kafka-consumer-groups --reset-offsets --to-earliest) or records will be skipped",
			"partitions", fmt.Sprint(reset), "err", err)
		return nil
	}
	c.log.Warn("the group's offsets were past the end of topics the broker lost; reset to their first record (what was applied is skipped by the inbox)",
		"partitions", fmt.Sprint(reset))
	return nil
}

// dropUnsent forgets the offsets kept for a retried commit on topics.
func (c *Consumer) dropUnsent(topics map[string]bool) {
	if len(topics) == 0 {
		return
	}
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	c.dropUnsentLocked(topics)
}

// dropUnsentLocked is dropUnsent with commitMu held.
func (c *Consumer) dropUnsentLocked(topics map[string]bool) {
	for tp := range c.unsent {
		if topics[tp.Topic] {
			delete(c.unsent, tp)
		}
	}
}

// Rejoin makes the consumer leave its group and join it again, as at a
// start (the records in hand are finished first), for topics a broker
// lost and has again (kafkatopics.Watch.OnRestored): kafka-go's member
// could be left with no partition of a topic that appeared between its
// leader's assignment and its partition watcher's start. The leaving
// member's records of those topics came from the lost topic: their
// offsets are neither committed nor kept for a retry, as committed to
// the new topic they would skip its first records. (A commit kafka-go
// itself was handed before the loss is out of reach; see the README.)
func (c *Consumer) Rejoin(topics ...string) {
	c.markLost(topics)
	c.rejoin(topics)
}

// rejoin ends the running member and has Run start another, resetting
// the group's offsets of restored past their partitions' end first.
func (c *Consumer) rejoin(restored []string) {
	c.rejoinMu.Lock()
	defer c.rejoinMu.Unlock()
	switch {
	case c.leave != nil:
		c.again = true
		c.restored = append(c.restored, restored...)
		c.leave()
	case c.out: // out until the database answers: the next member resets them
		c.restored = append(c.restored, restored...)
	}
}

// markLost notes that the broker lost topics (those of them the consumer
// reads) while the running member read them: from now on the member
// commits no offset of theirs, and keeps none for a retry.
func (c *Consumer) markLost(topics []string) {
	c.rejoinMu.Lock()
	defer c.rejoinMu.Unlock()
	if c.leave == nil {
		return // between members: the next one reads the topics as they are now
	}
	var fresh []string
	for _, t := range topics {
		if slices.Contains(c.cfg.Topics, t) && !c.lost[t] {
			if c.lost == nil {
				c.lost = map[string]bool{}
			}
			c.lost[t] = true
			fresh = append(fresh, t)
		}
	}
	if len(fresh) > 0 {
		c.log.Warn("the broker lost topics this member reads; the offsets of their records in hand are not committed (the topics created again would skip their first records)",
			"topics", fresh)
	}
}

// lostTopics returns the topics the running member learned were lost,
// nil if none.
func (c *Consumer) lostTopics() map[string]bool {
	c.rejoinMu.Lock()
	defer c.rejoinMu.Unlock()
	if len(c.lost) == 0 {
		return nil
	}
	return maps.Clone(c.lost)
}

// member is one membership of the group: it reads and applies records
// until ctx ends, then finishes what is in hand and leaves.
func (c *Consumer) member(ctx context.Context) {
	kafkaLog := newQuiet(quietInterval)
	// kafka-go's member that joins while a topic it reads is missing
	// ("Problem getting partitions during startup ... Unknown Topic Or
	// Partition") keeps no partition of it once it exists: it rejoins
	// then. Not left to the service's topic watch alone, which sees only
	// what it finds missing itself (another service may create the topic
	// first).
	topicMissing := make(chan struct{}, 1)
	reader := kafka.NewReader(kafka.ReaderConfig{
		Brokers:               c.cfg.Brokers,
		Dialer:                c.cfg.Dialer,
		GroupID:               c.cfg.Group,
		GroupTopics:           c.cfg.Topics,
		StartOffset:           kafka.FirstOffset,
		CommitInterval:        0, // synchronous commits, after the DB commit
		QueueCapacity:         max(2*c.cfg.BatchSize, 100),
		MinBytes:              1,
		MaxBytes:              fetchMaxBytes,
		MaxWait:               c.cfg.MaxWait,
		ReadBatchTimeout:      2 * c.cfg.MaxWait,
		SessionTimeout:        c.cfg.SessionTimeout,
		HeartbeatInterval:     c.cfg.HeartbeatInterval,
		RebalanceTimeout:      c.cfg.RebalanceTimeout,
		JoinGroupBackoff:      c.cfg.JoinGroupBackoff,
		WatchPartitionChanges: true,
		ErrorLogger: kafka.LoggerFunc(func(f string, a ...any) {
			// Stopping cancels every partition reader's dial and fetch,
			// and kafka-go reports each: noise, not news. Anything else
			// (leaving the group, say) is still said.
			msg := fmt.Sprintf(f, a...)
			if ctx.Err() != nil && (strings.Contains(msg, "context canceled") || strings.Contains(msg, "operation was canceled")) {
				return
			}
			if strings.Contains(msg, "Unknown Topic Or Partition") {
				if ctx.Err() == nil { // not a late report of a member that has ended
					c.markLost(reportedTopics(msg, c.cfg.Topics))
				}
				select {
				case topicMissing <- struct{}{}:
				default:
				}
			}
			level := kafkaLevel(msg)
			switch ok, held, since := kafkaLog.pass(msg); {
			case !ok:
			case held > 0:
				c.log.Log(ctx, level, msg, "like_it_not_logged", held, "since", since.Round(time.Second).String())
			default:
				c.log.Log(ctx, level, msg)
			}
		}),
	})

	fetched := make(chan kafka.Message, c.cfg.BatchSize)
	buf := newBudget(int64(c.cfg.MaxBufferedBytes), &c.buffered)
	defer c.buffered.Store(0) // what the member held is dropped with it
	var wg sync.WaitGroup
	wg.Go(func() { c.rejoinWhenTopicsAreBack(ctx, topicMissing) })
	wg.Go(func() { c.leaveWhenTheDatabaseIsGone(ctx) })
	// The pruner stops with the consumer, also when the reader stops on
	// its own.
	pruneCtx, stopPruning := context.WithCancel(ctx)
	if c.cfg.Retention > 0 {
		wg.Go(func() { c.pruneLoop(pruneCtx) })
	}
	wg.Go(func() {
		defer close(fetched)
		failures := 0
		for {
			m, err := reader.FetchMessage(ctx)
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, io.EOF) {
					return // stopping, or the reader was closed
				}
				// kafka-go reports what its partition readers and group
				// member fail at (a broker down, a leader moving, a
				// group rejoin) and keeps retrying underneath, so a
				// broker restart must not stop the consumer: it would
				// take the whole service down with it. Keep fetching,
				// backing off, and say so once in a while.
				failures++
				c.fetchErrors.Add(1)
				d := backoff(c.cfg.RetryBase, c.cfg.RetryMax, failures)
				if failures == 1 || failures%10 == 0 {
					c.log.Warn("fetch failed; retrying", "failures", failures, "in", d, "err", err)
				}
				select {
				case <-ctx.Done():
					return
				case <-time.After(d):
				}
				continue
			}
			if failures > 0 {
				c.log.Info("fetching again", "after_failures", failures, "kafka_reports_not_logged", kafkaLog.drain())
				failures = 0
			}
			if !buf.take(ctx, recordBytes(m)) {
				return
			}
			select {
			case fetched <- m:
			case <-ctx.Done():
				return
			}
		}
	})

	wg.Go(func() { c.retryCommits(pruneCtx, reader) })

	stopped, endCommits := afterEnd(ctx, stopGrace)
	defer endCommits()
	c.loop(ctx, &session{reader: reader, stopped: stopped}, fetched, buf)
	stopPruning()
	wg.Wait()
	// Once more on the way out, within the same bound: a broker that
	// does not answer must not hold the shutdown (what is left is
	// redelivered, skipped).
	_, err := c.retryUnsent(stopped, reader)
	if err != nil {
		c.log.Warn("offset commit failed on the way out; the records will be redelivered and skipped", "err", err)
	}
	if n := kafkaLog.drain(); n > 0 {
		c.log.Info("kafka-go reports not logged", "count", n)
	}
	if err := reader.Close(); err != nil {
		c.log.Warn("close reader", "err", err)
	}
}

// fetchMaxBytes bounds what one fetch brings per partition: the records
// each partition reader streams into kafka-go's queue, which lie in the
// connection's socket buffer until read (10 MiB a fetch a partition
// before; the order service reads 36 partitions). A fetch brings at
// least the partition's next record whatever its size (Kafka's fetch v3
// on, KIP-74), so the bound holds up no record. Twice the largest
// payload the contract allows (events.MaxPayloadBytes) is still some
// 2,000 ordinary events a partition a fetch.
const fetchMaxBytes = 2 * events.MaxPayloadBytes

// stopGrace is how long a member told to stop gives its last offset
// commits (the records in hand, then the way-out retry), all together.
const stopGrace = 5 * time.Second

// session is what a member's workers commit their offsets through.
type session struct {
	reader *kafka.Reader
	// stopped ends stopGrace after the member is told to stop, and with
	// it every offset commit still waiting, whichever worker's: kafka-go
	// keeps a commit for a generation that is gone (the broker down)
	// until the next one, and each worker waited out its own 30 s, one
	// after the other as commits take commitMu in turn.
	stopped context.Context
}

// afterEnd returns a context that ends d after ctx does (or when its
// cancel is called).
func afterEnd(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	out, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(d, cancel)
		context.AfterFunc(out, func() { t.Stop() })
	})
	return out, func() {
		stop()
		cancel()
	}
}

// loop deals fetched records out to the workers by partition and waits
// for them. Each worker applies its records in fetch order (offset order
// within a partition), up to BatchSize at a time, commits their offsets
// itself, and gives their bytes back to buf.
func (c *Consumer) loop(ctx context.Context, s *session, fetched <-chan kafka.Message, buf *budget) {
	queues := make([]*queue, c.cfg.Parallelism)
	var wg sync.WaitGroup
	for i := range queues {
		q := newQueue(c.cfg.MaxBuffered)
		queues[i] = q
		wg.Go(func() {
			for {
				msgs := q.take(ctx, c.cfg.BatchSize, c.cfg.Linger)
				if msgs == nil {
					return
				}
				// Decoding happens here, on the workers, not in the
				// dispatcher: it is the one CPU-heavy step per record.
				batch := make([]record, len(msgs))
				for i, m := range msgs {
					batch[i] = c.decode(m)
				}
				if err := c.apply(ctx, s, batch); err != nil {
					return // stopping mid-retry: uncommitted records are redelivered
				}
				buf.give(messagesBytes(msgs))
			}
		})
	}
	defer func() {
		for _, q := range queues {
			q.close()
		}
		wg.Wait()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-fetched:
			if !ok {
				return
			}
			if !queues[m.Partition%len(queues)].push(ctx, m) {
				return
			}
		}
	}
}

// queue is one worker's records, fetched and waiting, at most max.
type queue struct {
	mu     sync.Mutex
	items  []kafka.Message
	max    int
	closed bool
	more   chan struct{} // signalled when items arrive or the queue closes
	room   chan struct{} // signalled when items leave
}

func newQueue(max int) *queue {
	return &queue{max: max, more: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// push adds r, waiting while the queue is full; false if ctx ended.
func (q *queue) push(ctx context.Context, r kafka.Message) bool {
	for {
		q.mu.Lock()
		if len(q.items) < q.max {
			q.items = append(q.items, r)
			q.mu.Unlock()
			signal(q.more)
			return true
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return false
		case <-q.room:
		}
	}
}

// take returns up to n records, waiting for at least one, and then, if
// fewer than n are there, up to linger for more; nil once ctx ended or
// the queue is closed (what is left is redelivered later).
func (q *queue) take(ctx context.Context, n int, linger time.Duration) []kafka.Message {
	var deadline <-chan time.Time // set once the first record is there
	for {
		if ctx.Err() != nil {
			return nil
		}
		q.mu.Lock()
		// A batch is full at n records, or at what the queue can hold.
		if len(q.items) > 0 && len(q.items) < min(n, q.max) && linger > 0 && !q.closed {
			if deadline == nil {
				t := time.NewTimer(linger)
				defer t.Stop()
				deadline = t.C
			}
			q.mu.Unlock()
			select {
			case <-ctx.Done():
				return nil
			case <-q.more:
				continue
			case <-deadline:
				linger = 0 // take what is there
				continue
			}
		}
		if len(q.items) > 0 {
			k := min(n, len(q.items))
			batch := make([]kafka.Message, k)
			copy(batch, q.items)
			q.items = q.items[k:]
			q.mu.Unlock()
			signal(q.room)
			return batch
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-q.more:
		}
	}
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	signal(q.more)
}

func (c *Consumer) decode(m kafka.Message) record {
	hs := make([]events.Header, len(m.Headers))
	for i, h := range m.Headers {
		hs[i] = events.Header(h)
	}
	ev, err := events.Decode(hs, m.Value)
	return record{msg: m, ev: ev, err: err}
}

var errStopping = errors.New("inbox: stopping")

// apply handles a batch: runs of decodable records go through applyRun;
// an undecodable record is dead-lettered in its place.
func (c *Consumer) apply(ctx context.Context, s *session, batch []record) error {
	for i := 0; i < len(batch); {
		j := i
		for j < len(batch) && batch[j].err == nil {
			j++
		}
		if j > i {
			if err := c.applyRun(ctx, s, batch[i:j]); err != nil {
				return err
			}
		}
		if j < len(batch) {
			if err := c.deadLetter(ctx, batch[j], batch[j].err, 1); err != nil {
				return err
			}
			if err := c.commit(s, batch[j:j+1]); err != nil {
				return err
			}
		}
		i = j + 1
	}
	return nil
}

// applyRun applies decodable records: all in one transaction when that
// works. When a handler fails, the records before it are applied again as
// a batch, the failing one alone (with retries, or to the DLQ), and the
// rest as a batch again, so one bad record does not cost its neighbours
// a transaction each. Any other failure applies them one by one.
func (c *Consumer) applyRun(ctx context.Context, s *session, recs []record) error {
	for len(recs) > 0 {
		if len(recs) == 1 {
			if err := c.applyOne(ctx, recs[0]); err != nil {
				return err
			}
			return c.commit(s, recs)
		}
		applied, dups, failedAt, err := c.applyBatch(ctx, recs)
		if err == nil {
			c.processed.Add(int64(applied))
			c.duplicates.Add(int64(dups))
			return c.commit(s, recs)
		}
		c.log.Debug("batch failed", "records", len(recs), "failed_at", failedAt, "err", err)
		if failedAt == unknownRecord {
			// A batch handler failed without saying for which event:
			// apply the halves, so the bad one ends up alone.
			half := len(recs) / 2
			if err := c.applyRun(ctx, s, recs[:half]); err != nil {
				return err
			}
			recs = recs[half:]
			continue
		}
		if failedAt < 0 {
			for i := range recs {
				if err := c.applyOne(ctx, recs[i]); err != nil {
					return err
				}
				if err := c.commit(s, recs[i:i+1]); err != nil {
					return err
				}
			}
			return nil
		}
		if failedAt > 0 {
			if err := c.applyRun(ctx, s, recs[:failedAt]); err != nil {
				return err
			}
		}
		if err := c.applyOne(ctx, recs[failedAt]); err != nil {
			return err
		}
		if err := c.commit(s, recs[failedAt:failedAt+1]); err != nil {
			return err
		}
		recs = recs[failedAt+1:]
	}
	return nil
}

// work is the context for work already started: stopping does not cut a
// transaction or a dead letter's publish short. (An offset commit's is
// session.stopped.)
func work(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}

// unknownRecord is applyBatch's failedAt when a BatchHandler failed.
const unknownRecord = -2

// applyBatch applies recs in one transaction. On a handler error, failedAt
// is the index of the record whose handler failed, or unknownRecord when
// a BatchHandler failed; on any other error it is -1.
func (c *Consumer) applyBatch(ctx context.Context, recs []record) (applied, dups, failedAt int, err error) {
	wctx, cancel := work(ctx)
	defer cancel()
	tx, err := c.pool.Begin(wctx)
	if err != nil {
		return 0, 0, -1, err
	}
	defer tx.Rollback(wctx) //nolint:errcheck // no-op after commit

	ids := make([]string, len(recs))
	types := make([]string, len(recs))
	topics := make([]string, len(recs))
	parts := make([]int32, len(recs))
	offs := make([]int64, len(recs))
	for i, r := range recs {
		ids[i], types[i], topics[i] = r.ev.ID, string(r.ev.Type), r.msg.Topic
		parts[i], offs[i] = int32(r.msg.Partition), r.msg.Offset
	}
	const q = `
INSERT INTO inbox (consumer, event_id, event_type, topic, kpartition, koffset)
SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::int[], $6::bigint[])
ON CONFLICT DO NOTHING
RETURNING event_id`
	rows, err := tx.Query(wctx, q, c.cfg.Group, ids, types, topics, parts, offs)
	if err != nil {
		return 0, 0, -1, err
	}
	fresh, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, 0, -1, err
	}
	isNew := make(map[string]bool, len(fresh))
	for _, id := range fresh {
		isNew[id] = true
	}
	todo := make([]record, 0, len(fresh))
	index := make([]int, 0, len(fresh)) // todo[k] is recs[index[k]]
	for i, r := range recs {
		if !isNew[r.ev.ID] {
			dups++
			continue
		}
		delete(isNew, r.ev.ID) // a duplicate within the batch applies once
		todo = append(todo, r)
		index = append(index, i)
	}
	if err := c.handle(wctx, tx, todo); err != nil {
		var re *recordError
		if errors.As(err, &re) {
			return 0, 0, index[re.index], re.err
		}
		return 0, 0, unknownRecord, err
	}
	applied = len(todo)
	if err := tx.Commit(wctx); err != nil {
		return 0, 0, -1, err
	}
	c.databaseAnswered()
	c.committed(applied)
	return applied, dups, -1, nil
}

// committed calls OnCommit after a commit that applied records.
func (c *Consumer) committed(applied int) {
	if applied > 0 && c.cfg.OnCommit != nil {
		c.cfg.OnCommit()
	}
}

// applyOne applies one record in its own transaction, retrying transient
// failures, and dead-letters it when it cannot be applied. It returns an
// error only when ctx ends before the record is settled.
func (c *Consumer) applyOne(ctx context.Context, r record) error {
	handlerFailures := 0
	var outageSince time.Time // the first of the attempts failing with an OutageError
	for attempt := 1; ; attempt++ {
		start := time.Now()
		dup, err := c.tryOne(ctx, r)
		c.noteAttempt(start, err)
		if err == nil {
			if dup {
				c.duplicates.Add(1)
			} else {
				c.processed.Add(1)
			}
			return nil
		}
		infra := pg.Transient(err) && !IsPermanent(err)
		outage := IsOutage(err) && !IsPermanent(err)
		switch {
		case outage && outageSince.IsZero():
			outageSince = start
		case outage && time.Since(outageSince) >= c.cfg.OutageFor:
			err = fmt.Errorf("still failing %s after the first attempt (OutageFor %s): %w",
				time.Since(outageSince).Round(time.Second), c.cfg.OutageFor, err)
			handlerFailures = c.cfg.MaxAttempts
		case !infra && !outage:
			handlerFailures++
		}
		if IsPermanent(err) || handlerFailures >= c.cfg.MaxAttempts {
			c.log.Error("dead-lettering record", "topic", r.msg.Topic, "partition", r.msg.Partition,
				"offset", r.msg.Offset, "type", r.ev.Type, "attempts", attempt, "err", err)
			return c.deadLetter(ctx, r, err, attempt)
		}
		c.retries.Add(1)
		d := backoff(c.cfg.RetryBase, c.cfg.RetryMax, attempt)
		c.log.Warn("record failed; retrying", "topic", r.msg.Topic, "partition", r.msg.Partition,
			"offset", r.msg.Offset, "type", r.ev.Type, "attempt", attempt, "in", d, "err", err)
		select {
		case <-ctx.Done():
			return errStopping
		case <-time.After(d):
		}
	}
}

func (c *Consumer) tryOne(ctx context.Context, r record) (dup bool, err error) {
	wctx, cancel := work(ctx)
	defer cancel()
	tx, err := c.pool.Begin(wctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(wctx) //nolint:errcheck // no-op after commit
	const q = `
INSERT INTO inbox (consumer, event_id, event_type, topic, kpartition, koffset)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT DO NOTHING`
	tag, err := tx.Exec(wctx, q, c.cfg.Group, r.ev.ID, string(r.ev.Type), r.msg.Topic, r.msg.Partition, r.msg.Offset)
	if err != nil {
		return false, err
	}
	if tag.RowsAffected() == 0 {
		return true, nil // applied before: nothing to do, nothing to commit
	}
	if err := c.handle(wctx, tx, []record{r}); err != nil {
		var re *recordError
		if errors.As(err, &re) {
			err = re.err
		}
		return false, err
	}
	if err := tx.Commit(wctx); err != nil {
		return false, err
	}
	c.committed(1)
	return false, nil
}

// recordError is a Handler's error for recs[index] of a handle call.
type recordError struct {
	index int
	err   error
}

func (e *recordError) Error() string { return e.err.Error() }
func (e *recordError) Unwrap() error { return e.err }

// handle applies recs inside tx, each in a span that continues its
// event's trace: one BatchHandler call, or the Handler once per record
// (its error then says which record failed).
func (c *Consumer) handle(ctx context.Context, tx pgx.Tx, recs []record) error {
	if len(recs) == 0 {
		return nil
	}
	items := make([]Item, len(recs))
	spans := make([]trace.Span, len(recs))
	for i, r := range recs {
		items[i].Ctx, spans[i] = c.cfg.Tracer.Start(tracing.FromTraceParent(ctx, r.ev.TraceParent), "consume "+string(r.ev.Type),
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(
				attribute.String("messaging.system", "kafka"),
				attribute.String("messaging.destination.name", r.msg.Topic),
				attribute.String("messaging.consumer.group.name", c.cfg.Group),
				attribute.Int("messaging.destination.partition.id", r.msg.Partition),
				attribute.Int64("messaging.kafka.offset", r.msg.Offset),
				attribute.String("messaging.message.id", r.ev.ID),
				attribute.Int("messaging.batch.message_count", len(recs)),
			))
		items[i].Event = r.ev
	}
	var err error
	failed := -1 // the record an error is recorded on; -1: all of them
	if c.cfg.BatchHandler != nil {
		err = c.cfg.BatchHandler(ctx, tx, items)
		var re *recordError
		if errors.As(err, &re) {
			if re.index >= 0 && re.index < len(items) {
				failed = re.index
			} else { // not one of these: as if it named none
				err = fmt.Errorf("batch handler named item %d of %d: %w", re.index, len(items), re.err)
			}
		}
	} else {
		for i, it := range items {
			if err = c.cfg.Handler(it.Ctx, tx, it.Event); err != nil {
				failed = i
				err = &recordError{index: i, err: err}
				break
			}
		}
	}
	for i, sp := range spans {
		if err != nil && (failed < 0 || failed == i) {
			sp.RecordError(err)
			sp.SetStatus(codes.Error, err.Error())
		}
		sp.End()
	}
	return err
}

// deadLetter publishes the record to the DLQ topic, retrying until the
// broker acknowledges it or ctx ends (then it is redelivered later).
func (c *Consumer) deadLetter(ctx context.Context, r record, cause error, attempts int) error {
	reason := cause.Error()
	dlqHeaders := func(reason string) []kafka.Header {
		return []kafka.Header{
			{Key: HeaderError, Value: []byte(reason)},
			{Key: HeaderTopic, Value: []byte(r.msg.Topic)},
			{Key: HeaderPartition, Value: []byte(strconv.Itoa(r.msg.Partition))},
			{Key: HeaderOffset, Value: []byte(strconv.FormatInt(r.msg.Offset, 10))},
			{Key: HeaderGroup, Value: []byte(c.cfg.Group)},
			{Key: HeaderAttempts, Value: []byte(strconv.Itoa(attempts))},
			{Key: HeaderFailedAt, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
		}
	}
	m := kafka.Message{Key: r.msg.Key, Value: r.msg.Value, Headers: append(slices.Clone(r.msg.Headers), dlqHeaders(reason)...)}
	whole := true
	for attempt := 1; ; attempt++ {
		wctx, cancel := work(ctx)
		err := c.dlq.WriteMessages(wctx, m)
		cancel()
		if err == nil {
			c.deadLettered.Add(1)
			c.log.Warn("record dead-lettered", "dlq", c.cfg.DLQTopic, "topic", r.msg.Topic,
				"partition", r.msg.Partition, "offset", r.msg.Offset, "reason", reason, "whole", whole)
			return nil
		}
		if whole && kafkaerr.Is(err, kafka.MessageSizeTooLarge) { // kafka-go's own limit or the broker's
			// It fit its topic, but not with the dlq_* headers (or not the
			// dead-letter topic's limit), and retrying cannot change that:
			// it would hold the partition for good. The dead letter says
			// where the record is instead.
			whole = false
			var hbytes int
			for _, h := range r.msg.Headers {
				hbytes += len(h.Key) + len(h.Value)
			}
			omitted := fmt.Sprintf("key (%d bytes), value (%d bytes) and %d original headers (%d bytes): too large for %s",
				len(r.msg.Key), len(r.msg.Value), len(r.msg.Headers), hbytes, c.cfg.DLQTopic)
			m = kafka.Message{Headers: append(dlqHeaders(truncate(reason, 1024)), kafka.Header{Key: HeaderOmitted, Value: []byte(omitted)})}
			c.log.Warn("record too large to dead-letter whole; its dead letter says where it is", "dlq", c.cfg.DLQTopic,
				"topic", r.msg.Topic, "partition", r.msg.Partition, "offset", r.msg.Offset, "omitted", omitted)
			continue
		}
		d := backoff(c.cfg.RetryBase, c.cfg.RetryMax, attempt)
		c.log.Error("dead-letter publish failed; retrying", "dlq", c.cfg.DLQTopic, "in", d, "err", err)
		select {
		case <-ctx.Done():
			return errStopping
		case <-time.After(d):
		}
	}
}

// truncate cuts s to at most n bytes, at a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// commit commits the records' offsets. A failed commit loses nothing:
// a later commit on the partition covers it, or retryCommits retries it,
// and until then a rebalance or a restart redelivers the
// records, which the inbox skips.
func (c *Consumer) commit(s *session, recs []record) error {
	if c.dieBeforeOffsetCommit != nil && c.dieBeforeOffsetCommit() {
		return errStopping
	}
	msgs := make([]kafka.Message, len(recs))
	for i, r := range recs {
		msgs[i] = r.msg
	}
	if err := c.commitOffsets(s, msgs); err != nil {
		c.log.Warn("offset commit failed; it is retried", "records", len(msgs), "err", err)
	}
	return nil
}

// commitOffsets commits msgs' offsets; if that fails, it keeps the last
// of each partition for retryUnsent. One that succeeds covers the failed
// ones before it on its partitions.
//
// Records of a topic the broker lost meanwhile are left out (see lost).
func (c *Consumer) commitOffsets(s *session, msgs []kafka.Message) error {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	if lost := c.lostTopics(); lost != nil {
		c.dropUnsentLocked(lost)
		msgs = slices.DeleteFunc(slices.Clone(msgs), func(m kafka.Message) bool { return lost[m.Topic] })
		if len(msgs) == 0 {
			return nil
		}
	}
	err := c.send(s, msgs)
	// A loss learned during the send: keep nothing of it for a retry.
	lost := c.lostTopics()
	for _, m := range msgs {
		tp := TopicPartition{m.Topic, m.Partition}
		u, ok := c.unsent[tp]
		switch {
		case lost[m.Topic]:
		case err != nil && (!ok || m.Offset > u.Offset):
			c.unsent[tp] = m
		case err == nil && ok && m.Offset >= u.Offset:
			delete(c.unsent, tp)
		}
	}
	return err
}

// send commits msgs' offsets (kafka-go commits the highest per partition)
// as work already started: stopping does not cut it short, but bounds it
// (session.stopped).
func (c *Consumer) send(s *session, msgs []kafka.Message) error {
	ctx, cancel := context.WithTimeout(s.stopped, 30*time.Second)
	defer cancel()
	return c.sendWithin(ctx, s.reader, msgs)
}

// sendWithin commits msgs' offsets within ctx.
func (c *Consumer) sendWithin(ctx context.Context, reader *kafka.Reader, msgs []kafka.Message) error {
	if c.failOffsetCommit != nil && c.failOffsetCommit() {
		return errors.New("offset commit failed (test)")
	}
	if err := ctx.Err(); err != nil {
		return err // kafka-go might still queue it, for a generation to come
	}
	return reader.CommitMessages(ctx, msgs...)
}

// retryUnsent commits the offsets whose commit failed and that no later
// commit has covered: those the group has not committed since (another
// member may have taken the partition over and gone further). It returns
// how many partitions were waiting. ctx bounds it, the stopping included:
// a retry that does not finish is tried again, or the records are
// redelivered and skipped.
//
// The group's offsets are read without commitMu, so a worker's commit
// does not wait on that request; a commit of this member meanwhile is
// seen under the lock. Another member's, between the read and the
// commit, can still be moved back: its records then come again (the
// inbox skips them) and the lag shows them until that member commits
// once more.
func (c *Consumer) retryUnsent(ctx context.Context, reader *kafka.Reader) (int, error) {
	c.commitMu.Lock()
	c.dropUnsentLocked(c.lostTopics())
	parts := map[string][]int{}
	for tp := range c.unsent {
		parts[tp.Topic] = append(parts[tp.Topic], tp.Partition)
	}
	c.commitMu.Unlock()
	if len(parts) == 0 {
		return 0, nil
	}
	client := &kafka.Client{Addr: kafka.TCP(c.cfg.Brokers...), Transport: c.cfg.Transport}
	res, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: c.cfg.Group, Topics: parts})
	if err == nil {
		err = res.Error
	}

	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	c.dropUnsentLocked(c.lostTopics()) // a loss learned meanwhile
	waiting := len(c.unsent)
	if err != nil {
		return waiting, fmt.Errorf("read the group's offsets: %w", err)
	}
	for topic, ps := range res.Topics {
		for _, p := range ps {
			tp := TopicPartition{topic, p.Partition}
			if m, ok := c.unsent[tp]; ok && p.Error == nil && p.CommittedOffset > m.Offset {
				delete(c.unsent, tp) // committed since, by this member or another
			}
		}
	}
	msgs := make([]kafka.Message, 0, len(c.unsent))
	for _, m := range c.unsent {
		msgs = append(msgs, m)
	}
	if len(msgs) == 0 {
		return waiting, nil
	}
	if err := c.sendWithin(ctx, reader, msgs); err != nil {
		return waiting, err
	}
	clear(c.unsent)
	return waiting, nil
}

// retryCommits runs retryUnsent every RetryMax until ctx ends: on a
// partition with no new records nothing else would commit the offsets
// whose commit failed, and its lag (shop_consumer_lag, ReadUpTo) would
// show records long applied as waiting until a rebalance.
func (c *Consumer) retryCommits(ctx context.Context, reader *kafka.Reader) {
	t := time.NewTicker(c.cfg.RetryMax)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Bounded by the period and cut by the stopping: a broker that
		// hangs delays the next try, not the shutdown.
		rctx, cancel := context.WithTimeout(ctx, c.cfg.RetryMax)
		waiting, err := c.retryUnsent(rctx, reader)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			failures++
			if failures%10 == 0 {
				c.log.Warn("offset commit still failing; retrying", "partitions", waiting, "failures", failures, "err", err)
			}
		default:
			if waiting > 0 {
				c.log.Info("offset commit retried", "partitions", waiting)
			}
			failures = 0
		}
	}
}

// backoff is capped exponential backoff with full jitter in [d/2, d].
func backoff(base, ceiling time.Duration, attempt int) time.Duration {
	d := base << min(attempt-1, 20)
	if d <= 0 || d > ceiling {
		d = ceiling
	}
	return d/2 + rand.N(d/2+1)
}
