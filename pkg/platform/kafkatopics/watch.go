package kafkatopics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/platform/internal/kafkaerr"
)

// DefaultWatchInterval is how often a Watch looks for its topics when
// nothing asks it to sooner.
const DefaultWatchInterval = 10 * time.Second

// Watch keeps a running service's topics on the broker. Ensure creates
// them at start-up, but a broker that loses its data (its disk wiped, a
// volume replaced) comes back without them, and nothing would create them
// again: kafka-go's writer does not (topics are never auto-created, see
// the package doc) and its group reader retries "Unknown Topic Or
// Partition" for ever. A Watch looks every interval, and at once when
// Check is called (a publish refused because the topic is unknown), and
// creates each missing topic again with its Spec, warning once per
// topic. A topic that exists is never touched, whatever its partitions.
//
// It looks through the client's kafka.Transport, which keeps the
// cluster's metadata and refreshes it in the background (every
// Transport.MetadataTTL, 6 s by default, or kafkasec.MetadataTTL): a look
// costs no round trip, and a lost topic is seen within the TTL.
type Watch struct {
	client   *kafka.Client
	log      *slog.Logger
	specs    []Spec
	interval time.Duration
	kick     chan struct{}
	restored func(topics []string)

	mu    sync.Mutex
	looks uint64            // looks so far
	lost  map[string]uint64 // seen missing (at that look), not seen back yet
}

// OnRestored sets f to be called, from Run, with the topics a look finds
// back (created by this watch or anyone else) after one had found them
// missing. A consumer group rejoins then: kafka-go's group member could
// be left with no partition of a topic that appeared between its
// leader's assignment and its partition watcher's start. Call it before
// Run.
func (w *Watch) OnRestored(f func(topics []string)) { w.restored = f }

// NewWatch returns a Watch over specs, looking every interval (0:
// DefaultWatchInterval) through client; Run starts it.
func NewWatch(client *kafka.Client, log *slog.Logger, interval time.Duration, specs ...Spec) *Watch {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Watch{client: client, log: log.With("component", "topics"), specs: specs, interval: interval,
		kick: make(chan struct{}, 1)}
}

// Check asks the watch to look now, without waiting for it. It never
// blocks; calls while a look is pending make one look.
func (w *Watch) Check() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// minGap spaces looks asked for by Check: kafka-go's readers report a
// missing topic hundreds of times a second, and one look per second
// serves them all.
const minGap = time.Second

// Run looks for the topics every interval, and when Check asks, until
// ctx ends; it then returns nil at once, abandoning a creation in
// progress (the next start, or the next look, finishes it).
func (w *Watch) Run(ctx context.Context) error {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-w.kick:
		}
		w.restore(ctx)
		select { // a burst of Check calls makes one more look, a second on
		case <-ctx.Done():
			return nil
		case <-time.After(minGap):
		}
	}
}

// restore creates again the topics the broker does not know, and says
// which are back (OnRestored).
func (w *Watch) restore(ctx context.Context) {
	lost, look, err := w.missing(ctx)
	if err != nil {
		return // broker unreachable: readiness and the clients say so
	}
	if len(lost) == 0 {
		w.back(look)
		return
	}
	// Bounded so a broker that hangs delays the next look, not for ever.
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	created, err := create(cctx, w.client, nil, lost)
	for _, s := range created {
		w.log.Warn(fmt.Sprintf("topic %s was missing on the broker (its data lost?); created it again with %d partitions",
			s.Name, s.partitions()), "topic", s.Name, "partitions", s.partitions())
	}
	if err == nil {
		err = waitReady(cctx, w.client, lost)
	}
	if err == nil {
		w.back(look)
		return
	}
	if ctx.Err() == nil {
		w.log.Warn("topics missing on the broker; creating them failed, retrying", "topics", names(lost), "err", err)
		w.Check()
	}
}

// Missing returns an error naming the topics the broker does not know, nil
// when it knows them all, or why it could not be asked. It is a readiness
// check: a service whose topics are missing cannot publish or consume.
func (w *Watch) Missing(ctx context.Context) error {
	lost, _, err := w.missing(ctx)
	if err != nil {
		return fmt.Errorf("topics: %w", err)
	}
	if len(lost) == 0 {
		return nil
	}
	w.Check()
	return &MissingError{Topics: names(lost)}
}

// MissingError names topics the broker does not know.
type MissingError struct{ Topics []string }

func (e *MissingError) Error() string {
	return "topics missing on the broker: " + strings.Join(e.Topics, ", ")
}

// back calls OnRestored with the topics seen missing up to look, which
// look (or the creation after it) found there. One seen missing by a
// later look (/readyz, meanwhile) waits for a look after that.
func (w *Watch) back(look uint64) {
	w.mu.Lock()
	var topics []string
	for name, at := range w.lost {
		if at <= look {
			topics = append(topics, name)
			delete(w.lost, name)
		}
	}
	w.mu.Unlock()
	slices.Sort(topics)
	if len(topics) > 0 && w.restored != nil {
		w.restored(topics)
	}
}

// missing returns the topics the broker does not know, marking them lost,
// and the number of this look.
func (w *Watch) missing(ctx context.Context) ([]Spec, uint64, error) {
	md, err := w.client.Metadata(ctx, &kafka.MetadataRequest{Topics: names(w.specs)})
	if err != nil {
		return nil, 0, err
	}
	known := make(map[string]bool, len(md.Topics))
	for _, t := range md.Topics {
		if t.Error == nil || !errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
			known[t.Name] = true
		}
	}
	var lost []Spec
	w.mu.Lock()
	defer w.mu.Unlock()
	w.looks++
	for _, s := range w.specs {
		if !known[s.Name] {
			lost = append(lost, s)
			if w.lost == nil {
				w.lost = map[string]uint64{}
			}
			w.lost[s.Name] = w.looks
		}
	}
	return lost, w.looks, nil
}

// IsMissing reports whether err says a topic does not exist on the broker
// (Unknown Topic Or Partition), as kafka-go's Writer.WriteMessages returns
// it: a kafka.Error when its metadata lacks the topic, a kafka.WriteErrors
// holding it when the broker refused the produce.
func IsMissing(err error) bool { return kafkaerr.Is(err, kafka.UnknownTopicOrPartition) }

func names(specs []Spec) []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.Name
	}
	return out
}
