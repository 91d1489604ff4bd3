// Package dlq lists and replays dead letters: the records a consumer group
// gave up on, which its inbox published to shop.dlq.<group> with the
// original key, value and CloudEvents headers plus dlq_* headers naming the
// error and the source topic, partition and offset (pkg/events).
//
// Listing reads the DLQ topics from their first offset to their end without
// a consumer group, so it commits nothing and changes nothing; it reads
// ReplayAll's committed offsets too, to say which letters it has replayed.
//
// Replaying re-publishes a record to its source topic with its key, value
// and original headers (the dlq_* headers dropped, dlq_replayed_from added
// naming "<dlq topic>/<offset>"), with acks=all and the murmur2 partitioner
// the services use, so it lands on the partition of its order and is read
// after the events already there. Every consumer group of the source topic
// sees it again: groups that applied it skip it (their inbox holds its
// ce_id), and the group that dead-lettered it applies it, because a record
// is dead-lettered only after its transaction, inbox row included, rolled
// back. A replay that fails again is dead-lettered again.
//
// ReplayAll remembers what it replayed in the consumer group
// "<prefix>shop.dlq-replay.<group>", committing the DLQ offset after each
// record, so running it twice replays nothing the second time. The group
// is committed to as a simple consumer (no member joins it); two ReplayAll
// for one group must not run at the same time (a record might be replayed
// twice, which the inboxes would absorb).
//
// Poison publishes a record that is no event to a topic the services
// read, for a developer to watch the consumers dead-letter it.
package dlq

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/events"
)

// Groups are the consumer groups that have a dead-letter topic.
var Groups = []string{"order", "payment", "inventory", "shipping"}

// HeaderReplayedFrom names the DLQ record a replayed record came from:
// "<dlq topic>/<offset>".
const HeaderReplayedFrom = "dlq_replayed_from"

// ErrUnknownGroup is returned for a group not in Groups.
var ErrUnknownGroup = errors.New("unknown group")

// ErrNoSuchOffset is returned by Replay for an offset the DLQ does not hold.
var ErrNoSuchOffset = errors.New("offset not in the dead-letter topic")

// Config says where the dead letters are.
type Config struct {
	// Brokers are the Kafka bootstrap addresses.
	Brokers []string
	// Prefix is the services' KAFKA_TOPIC_PREFIX (topics and groups).
	Prefix string
	// Timeout bounds each broker request; default 10s.
	Timeout time.Duration
	// Transport and Dialer carry SASL/TLS (kafkasec.Config); nil means
	// plaintext.
	Transport kafka.RoundTripper
	Dialer    *kafka.Dialer
}

// Letter is one dead-lettered record.
type Letter struct {
	Group           string    `json:"group"`
	Topic           string    `json:"dlq_topic"`
	Partition       int       `json:"dlq_partition"`
	Offset          int64     `json:"dlq_offset"`
	FailedAt        time.Time `json:"failed_at"`
	SourceTopic     string    `json:"source_topic"`
	SourcePartition int       `json:"source_partition"`
	SourceOffset    int64     `json:"source_offset"`
	Type            string    `json:"ce_type"`
	ID              string    `json:"ce_id"`
	// Key is the record key: the order id.
	Key      string `json:"key"`
	Attempts int    `json:"attempts"`
	Error    string `json:"error"`
	// ReplayedFrom is set when the record had itself been replayed from a
	// DLQ and failed again.
	ReplayedFrom string `json:"replayed_from,omitempty"`
	// Omitted is set when the record was too large to dead-letter whole:
	// the dead letter carries none of it (dlq_omitted says what was left
	// out), so it cannot be replayed; read it at its source offset.
	Omitted string `json:"omitted,omitempty"`
	// DoneByAll, set by List, says ReplayAll has dealt with the letter
	// (its offset is below ReplayGroup's committed one): replayed it, or
	// skipped it if it can never be (Replayable says).
	DoneByAll bool `json:"done_by_all"`
	// ReplayUnknown, set by List, says ReplayAll's progress could not be
	// read: DoneByAll is false for want of knowing.
	ReplayUnknown bool `json:"replay_unknown,omitempty"`
	// FailedAgainAs, set by List, names the later dead letters listed
	// with it that were replays of it ("<dlq topic>/<offset>"): replayed,
	// by --all or --offset, and dead-lettered again. A replay by --offset
	// that went through leaves no sign List reads: its only trace is the
	// copy on the source topic, which List does not scan.
	FailedAgainAs []string `json:"failed_again_as,omitempty"`

	msg kafka.Message
}

// Ref names the letter as HeaderReplayedFrom does: "<dlq topic>/<offset>".
func (l Letter) Ref() string { return l.Topic + "/" + strconv.FormatInt(l.Offset, 10) }

// Replayable reports whether the letter can be replayed: it carries its
// record and says where it came from.
func (l Letter) Replayable() bool { return l.Omitted == "" && l.SourceTopic != "" }

// Replayed is a record re-published to its source topic.
type Replayed struct {
	Letter
	// To is where the copy landed (partition and offset -1 if the broker
	// did not say).
	ToTopic     string `json:"to_topic"`
	ToPartition int    `json:"to_partition"`
	ToOffset    int64  `json:"to_offset"`
	// Skipped, set by ReplayAll instead of a copy, says why a dead letter
	// was passed over: one without its record (Letter.Omitted), or
	// without its source topic (ErrNoSourceTopic).
	Skipped string `json:"skipped,omitempty"`
}

// ErrWithoutRecord is a dead letter that carries none of its record (it
// was too large to dead-letter whole): there is nothing to replay.
var ErrWithoutRecord = errors.New("dead letter without its record")

// ErrNoSourceTopic is a dead letter without the dlq_source_topic header
// (written by hand, or by another tool): there is nowhere to replay it.
var ErrNoSourceTopic = errors.New("cannot tell where to replay it")

// Topic returns the dead-letter topic of group under cfg's prefix.
func (cfg Config) Topic(group string) string { return cfg.Prefix + events.DLQTopic(group) }

// ReplayGroup returns the consumer group that tracks ReplayAll's progress
// for group.
func (cfg Config) ReplayGroup(group string) string { return cfg.Prefix + "shop.dlq-replay." + group }

func (cfg Config) client() *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: cmp.Or(cfg.Timeout, 10*time.Second), Transport: cfg.Transport}
}

// CheckGroup returns ErrUnknownGroup (wrapped, naming the valid ones) for
// a group without a DLQ.
func CheckGroup(group string) error {
	if !slices.Contains(Groups, group) {
		return fmt.Errorf("%w %q: want one of %s", ErrUnknownGroup, group, strings.Join(Groups, ", "))
	}
	return nil
}

// List returns the dead letters of the given groups (all when none are
// given), by group, then partition and offset, each with what is known
// cheaply of its replays: whether ReplayAll has dealt with it (one
// offset fetch per group) and which of the letters listed are replays of
// it that failed again. A group whose DLQ topic does not exist yet has
// none. When ReplayAll's progress of a group cannot be read (the replay
// group's offsets refused or unanswered), its letters are still listed,
// with ReplayUnknown set, and warnings says why.
func List(ctx context.Context, cfg Config, groups ...string) (letters []Letter, warnings []string, err error) {
	if len(groups) == 0 {
		groups = Groups
	}
	var out []Letter
	for _, g := range groups {
		if err := CheckGroup(g); err != nil {
			return nil, nil, err
		}
		ls, err := read(ctx, cfg, g, nil, nil)
		if err != nil {
			return nil, nil, err
		}
		if len(ls) == 0 {
			continue
		}
		parts := map[int]bool{}
		for _, l := range ls {
			parts[l.Partition] = true
		}
		done, err := progress(ctx, cfg, g, slices.Sorted(maps.Keys(parts)))
		if err != nil {
			// The letters are what the operator came for; which of them
			// replay --all has dealt with is extra.
			warnings = append(warnings, fmt.Sprintf("%v: which of %s's letters replay --all has dealt with is unknown", err, g))
		}
		for i := range ls {
			if err != nil {
				ls[i].ReplayUnknown = true
			} else if o, ok := done[ls[i].Partition]; ok && ls[i].Offset < o {
				ls[i].DoneByAll = true
			}
		}
		out = append(out, ls...)
	}
	at := map[string]int{}
	for i, l := range out {
		at[l.Ref()] = i
	}
	for _, l := range out {
		if i, ok := at[l.ReplayedFrom]; ok {
			out[i].FailedAgainAs = append(out[i].FailedAgainAs, l.Ref())
		}
	}
	return out, warnings, nil
}

// progress returns the DLQ offsets ReplayAll has committed for group, by
// partition of its topic (none for a partition, or a group, without
// any).
func progress(ctx context.Context, cfg Config, group string, parts []int) (map[int]int64, error) {
	topic := cfg.Topic(group)
	fetched, err := cfg.client().OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: cfg.ReplayGroup(group), Topics: map[string][]int{topic: parts}})
	if err == nil {
		err = fetched.Error
	}
	// A group that never committed has no progress yet; some brokers say
	// so with offset -1, others (kfake) with "group id not found".
	if errors.Is(err, kafka.GroupIdNotFound) {
		return map[int]int64{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("replay progress of %s: %w", cfg.ReplayGroup(group), err)
	}
	from := map[int]int64{}
	for _, p := range fetched.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("replay progress of %s partition %d: %w", cfg.ReplayGroup(group), p.Partition, p.Error)
		}
		if p.CommittedOffset >= 0 {
			from[p.Partition] = p.CommittedOffset
		}
	}
	return from, nil
}

// Prefixes returns the topic prefixes (KAFKA_TOPIC_PREFIX) under which
// the cluster holds dead-letter topics, <prefix>shop.dlq.<group> for a
// group in Groups, sorted; "" is the empty prefix. The services create
// their group's topic when they start, so a prefix not among them is
// most likely mistyped: List and ReplayAll would find nothing under it.
func Prefixes(ctx context.Context, cfg Config) ([]string, error) {
	md, err := cfg.client().Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	seen := map[string]bool{}
	for _, t := range md.Topics {
		for _, g := range Groups {
			if p, ok := strings.CutSuffix(t.Name, events.DLQTopic(g)); ok {
				seen[p] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(seen)), nil
}

// Replay re-publishes the dead letter at offset of group's DLQ (partition
// 0, the only one the inbox creates) to its source topic. It does not
// touch ReplayAll's progress.
func Replay(ctx context.Context, cfg Config, group string, offset int64) (Replayed, error) {
	if err := CheckGroup(group); err != nil {
		return Replayed{}, err
	}
	topic := cfg.Topic(group)
	ends, err := bounds(ctx, cfg, topic)
	if err != nil {
		return Replayed{}, err
	}
	b, ok := ends[0]
	if !ok || offset < b.first || offset >= b.last {
		held := "nothing"
		if ok && b.last > b.first {
			held = fmt.Sprintf("offsets %d to %d", b.first, b.last-1)
		}
		return Replayed{}, fmt.Errorf("%w: %s has no offset %d (it holds %s)", ErrNoSuchOffset, topic, offset, held)
	}
	ls, err := read(ctx, cfg, group, map[int]int64{0: offset}, map[int]int64{0: offset + 1})
	if err != nil {
		return Replayed{}, err
	}
	if len(ls) != 1 || ls[0].Offset != offset {
		return Replayed{}, fmt.Errorf("%w: %s offset %d is gone (compacted or deleted)", ErrNoSuchOffset, topic, offset)
	}
	w := writer(cfg)
	defer w.Close()
	r, err := publish(ctx, w, ls[0])
	if err != nil {
		return Replayed{}, err
	}
	return r, nil
}

// ReplayAll re-publishes every dead letter of group not replayed by an
// earlier ReplayAll, committing each DLQ offset to ReplayGroup(group) once
// the copy is acknowledged. A letter that can never be replayed (without
// its record, or its source topic) is passed over and committed too,
// returned with Skipped saying why. It returns what it replayed, also
// when it stops early with an error.
func ReplayAll(ctx context.Context, cfg Config, group string) ([]Replayed, error) {
	if err := CheckGroup(group); err != nil {
		return nil, err
	}
	topic := cfg.Topic(group)
	ends, err := bounds(ctx, cfg, topic)
	if err != nil || len(ends) == 0 {
		return nil, err
	}
	from, err := progress(ctx, cfg, group, slices.Sorted(maps.Keys(ends)))
	if err != nil {
		return nil, err
	}
	c := cfg.client()
	ls, err := read(ctx, cfg, group, from, nil)
	if err != nil {
		return nil, err
	}
	w := writer(cfg)
	defer w.Close()
	var done []Replayed
	for _, l := range ls {
		r, err := publish(ctx, w, l)
		if errors.Is(err, ErrWithoutRecord) || errors.Is(err, ErrNoSourceTopic) {
			// Not replayable, ever: passed over (and recorded as done), so
			// it does not stop every later --all at the same place (one
			// without a source topic did: every --all ended there, exit
			// status 2, the letters after it never replayed).
			r, err = Replayed{Letter: l, ToPartition: -1, ToOffset: -1, Skipped: err.Error()}, nil
		}
		if err != nil {
			return done, err
		}
		// Committed per record: a crash between the copy and the commit
		// replays one record twice, which the inboxes absorb (same ce_id).
		res, err := c.OffsetCommit(ctx, &kafka.OffsetCommitRequest{
			GroupID: cfg.ReplayGroup(group), GenerationID: -1,
			Topics: map[string][]kafka.OffsetCommit{topic: {{Partition: l.Partition, Offset: l.Offset + 1}}},
		})
		if err == nil {
			for _, ps := range res.Topics {
				for _, p := range ps {
					err = cmp.Or(err, p.Error)
				}
			}
		}
		if err != nil {
			return done, fmt.Errorf("replayed %s/%d but could not record it in %s: %w", l.Topic, l.Offset, cfg.ReplayGroup(group), err)
		}
		done = append(done, r)
	}
	return done, nil
}

type span struct{ first, last int64 } // last is the next offset to be written

// bounds returns the offsets each partition of topic holds; none when the
// topic does not exist.
func bounds(ctx context.Context, cfg Config, topic string) (map[int]span, error) {
	c := cfg.client()
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	var reqs []kafka.OffsetRequest
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
			return nil, nil
		}
		if t.Error != nil {
			return nil, fmt.Errorf("metadata of %s: %w", topic, t.Error)
		}
		for _, p := range t.Partitions {
			reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
		}
	}
	if len(reqs) == 0 {
		return nil, nil
	}
	res, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("offsets of %s: %w", topic, err)
	}
	out := map[int]span{}
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("offsets of %s partition %d: %w", topic, p.Partition, p.Error)
		}
		out[p.Partition] = span{p.FirstOffset, p.LastOffset}
	}
	return out, nil
}

// read returns group's dead letters from the offsets in from (default: the
// first held) up to those in to (default: the end as of now).
func read(ctx context.Context, cfg Config, group string, from, to map[int]int64) ([]Letter, error) {
	topic := cfg.Topic(group)
	ends, err := bounds(ctx, cfg, topic)
	if err != nil {
		return nil, err
	}
	parts := make([]int, 0, len(ends))
	for p := range ends {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	var out []Letter
	for _, p := range parts {
		b := ends[p]
		start, stop := b.first, b.last
		if o, ok := from[p]; ok {
			start = max(start, o)
		}
		if o, ok := to[p]; ok {
			stop = min(stop, o)
		}
		if start >= stop {
			continue
		}
		if err := readPartition(ctx, cfg, topic, p, start, stop, func(m kafka.Message) {
			out = append(out, letter(group, m))
		}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// readPartition reads [start, stop) of one partition with a reader bound
// to the partition (no group: nothing is committed).
func readPartition(ctx context.Context, cfg Config, topic string, partition int, start, stop int64, f func(kafka.Message)) error {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: cfg.Brokers, Topic: topic, Partition: partition, Dialer: cfg.Dialer,
		MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 250 * time.Millisecond, ReadBatchTimeout: 500 * time.Millisecond,
	})
	defer r.Close()
	if err := r.SetOffset(start); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, cmp.Or(cfg.Timeout, 10*time.Second)+time.Duration(stop-start)*10*time.Millisecond)
	defer cancel()
	for {
		m, err := r.ReadMessage(rctx)
		if err != nil {
			return fmt.Errorf("read %s partition %d at %d (want up to %d): %w", topic, partition, r.Offset(), stop-1, err)
		}
		if m.Offset >= stop {
			return nil
		}
		f(m)
		if m.Offset >= stop-1 {
			return nil
		}
	}
}

func letter(group string, m kafka.Message) Letter {
	l := Letter{Group: group, Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: string(m.Key), msg: m}
	for _, h := range m.Headers {
		v := string(h.Value)
		switch h.Key {
		case events.HeaderDLQError:
			l.Error = v
		case events.HeaderDLQSourceTopic:
			l.SourceTopic = v
		case events.HeaderDLQSourcePartition:
			l.SourcePartition, _ = strconv.Atoi(v)
		case events.HeaderDLQSourceOffset:
			l.SourceOffset, _ = strconv.ParseInt(v, 10, 64)
		case events.HeaderDLQAttempts:
			l.Attempts, _ = strconv.Atoi(v)
		case events.HeaderDLQFailedAt:
			l.FailedAt, _ = time.Parse(time.RFC3339Nano, v)
		case events.HeaderDLQOmitted:
			l.Omitted = v
		case events.HeaderType:
			l.Type = v
		case events.HeaderID:
			l.ID = v
		case HeaderReplayedFrom:
			l.ReplayedFrom = v
		}
	}
	return l
}

// SourceTopics are the topics the services' consumers read (without the
// prefix), where Poison publishes.
var SourceTopics = []string{events.TopicOrders, events.TopicPayments, events.TopicInventory, events.TopicShipments}

// ErrUnknownTopic is returned by Poison for a topic not in SourceTopics,
// or one the cluster does not have.
var ErrUnknownTopic = errors.New("unknown topic")

// Poisoned is the record Poison published, and where it landed
// (partition and offset -1 if the broker did not say).
type Poisoned struct {
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	Offset    int64  `json:"offset"`
	Key       string `json:"key"`
	Value     string `json:"value"`
}

// Poison publishes a record that is no event to topic (one of
// SourceTopics, under cfg's prefix), partitioned by key as the services
// publish: key and value as given, and no headers, so no CloudEvents
// envelope. Every consumer group reading the topic fails to decode it
// and dead-letters it at its first attempt, naming the missing header:
// a developer's way to see the dead-letter path (list, replay) work on
// a running suite.
func Poison(ctx context.Context, cfg Config, topic, key string, value []byte) (Poisoned, error) {
	if !slices.Contains(SourceTopics, topic) {
		return Poisoned{}, fmt.Errorf("%w %q: want one of %s (without the prefix)", ErrUnknownTopic, topic, strings.Join(SourceTopics, ", "))
	}
	topic = cfg.Prefix + topic
	// A missing topic would be retried for seconds before the writer
	// gave up with a broker error code; say what is wrong at once.
	ends, err := bounds(ctx, cfg, topic)
	if err != nil {
		return Poisoned{}, err
	}
	if len(ends) == 0 {
		return Poisoned{}, fmt.Errorf("%w: no topic %s on %s: the services create it when they start", ErrUnknownTopic, topic, strings.Join(cfg.Brokers, ","))
	}
	var (
		mu sync.Mutex
		at []kafka.Message
	)
	w := newWriter(cfg, func(ms []kafka.Message) {
		mu.Lock()
		defer mu.Unlock()
		at = append(at, ms...)
	})
	defer w.Close()
	if err := w.WriteMessages(ctx, kafka.Message{Topic: topic, Key: []byte(key), Value: value}); err != nil {
		return Poisoned{}, fmt.Errorf("publish to %s: %w", topic, err)
	}
	p := Poisoned{Topic: topic, Partition: -1, Offset: -1, Key: key, Value: string(value)}
	mu.Lock()
	defer mu.Unlock()
	if len(at) == 1 {
		p.Partition, p.Offset = at[0].Partition, at[0].Offset
	}
	return p, nil
}

// replayWriter publishes copies and learns where each landed.
type replayWriter struct {
	w      *kafka.Writer
	mu     sync.Mutex
	landed map[string]kafka.Message // by dlq_replayed_from
}

func writer(cfg Config) *replayWriter {
	rw := &replayWriter{landed: map[string]kafka.Message{}}
	rw.w = newWriter(cfg, func(ms []kafka.Message) {
		rw.mu.Lock()
		defer rw.mu.Unlock()
		for _, m := range ms {
			for _, h := range m.Headers {
				if h.Key == HeaderReplayedFrom {
					rw.landed[string(h.Value)] = m
				}
			}
		}
	})
	return rw
}

// newWriter returns a writer that publishes as the services do (acks=all,
// murmur2 on the key) and gives landed the records each write stored,
// their partition and offset set from the broker's answer, before
// WriteMessages returns.
func newWriter(cfg Config, landed func([]kafka.Message)) *kafka.Writer {
	return &kafka.Writer{
		Addr: kafka.TCP(cfg.Brokers...), Transport: cfg.Transport, RequiredAcks: kafka.RequireAll, Balancer: &kafka.Murmur2Balancer{},
		BatchTimeout: time.Millisecond, MaxAttempts: 5,
		WriteTimeout: cmp.Or(cfg.Timeout, 10*time.Second), ReadTimeout: cmp.Or(cfg.Timeout, 10*time.Second),
		Completion: func(ms []kafka.Message, err error) {
			if err == nil {
				landed(ms)
			}
		},
	}
}

func (rw *replayWriter) Close() error { return rw.w.Close() }

// publish copies l to its source topic.
func publish(ctx context.Context, rw *replayWriter, l Letter) (Replayed, error) {
	if l.SourceTopic == "" {
		return Replayed{}, fmt.Errorf("%s/%d has no %s header: %w", l.Topic, l.Offset, events.HeaderDLQSourceTopic, ErrNoSourceTopic)
	}
	if l.Omitted != "" {
		return Replayed{}, fmt.Errorf("%w: %s/%d left out the %s; the record is at %s partition %d offset %d until that topic's retention removes it",
			ErrWithoutRecord, l.Topic, l.Offset, l.Omitted, l.SourceTopic, l.SourcePartition, l.SourceOffset)
	}
	hs := make([]kafka.Header, 0, len(l.msg.Headers)+1)
	for _, h := range l.msg.Headers {
		// dlq_* (including an earlier dlq_replayed_from) describe the
		// failure, not the event.
		if !strings.HasPrefix(h.Key, "dlq_") {
			hs = append(hs, h)
		}
	}
	from := l.Ref()
	hs = append(hs, kafka.Header{Key: HeaderReplayedFrom, Value: []byte(from)})
	m := kafka.Message{Topic: l.SourceTopic, Key: l.msg.Key, Value: l.msg.Value, Headers: hs}
	if err := rw.w.WriteMessages(ctx, m); err != nil {
		return Replayed{}, fmt.Errorf("replay %s to %s: %w", from, l.SourceTopic, err)
	}
	rw.mu.Lock()
	at, ok := rw.landed[from]
	delete(rw.landed, from)
	rw.mu.Unlock()
	r := Replayed{Letter: l, ToTopic: l.SourceTopic, ToPartition: -1, ToOffset: -1}
	if ok {
		r.ToPartition, r.ToOffset = at.Partition, at.Offset
	}
	return r, nil
}
