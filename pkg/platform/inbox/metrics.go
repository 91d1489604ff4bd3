package inbox

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

// Collector exports the consumer's counters and its lag per partition
// (the topics' high watermarks minus the group's committed offsets, read
// from the broker when scraped) as Prometheus metrics labelled with
// service and group.
func (c *Consumer) Collector(service string) prometheus.Collector {
	labels := prometheus.Labels{"service": service, "group": c.cfg.Group}
	desc := func(name, help string, variable ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, variable, labels)
	}
	return &collector{
		c:            c,
		processed:    desc("shop_consumer_processed_total", "Records applied (handler committed)."),
		duplicates:   desc("shop_consumer_duplicates_total", "Records skipped because the inbox had their event id."),
		retries:      desc("shop_consumer_retries_total", "Failed attempts that were retried."),
		deadLettered: desc("shop_consumer_dead_lettered_total", "Records sent to the dead-letter topic."),
		pruned:       desc("shop_consumer_inbox_pruned_total", "Inbox rows deleted because they were older than the retention."),
		fetchErrors:  desc("shop_consumer_fetch_errors_total", "Errors reported while fetching (broker down, group rejoin, refused credentials); the consumer keeps fetching."),
		outOfGroup: desc("shop_consumer_out_of_group",
			"1 while the replica is out of its consumer group because its database stayed unavailable past LeaveAfter (the other members consume its partitions), else 0."),
		buffered: desc("shop_consumer_buffered_bytes",
			"Bytes (keys, values, headers) of the records fetched and not yet applied; fetching waits while they reach the consumer's MaxBufferedBytes (32 MiB by default)."),
		lag: desc("shop_consumer_lag", "Records on the partition not yet committed by the group.", "topic", "partition"),
	}
}

type collector struct {
	c                                            *Consumer
	processed, duplicates, retries, deadLettered *prometheus.Desc
	pruned, fetchErrors, outOfGroup, buffered    *prometheus.Desc
	lag                                          *prometheus.Desc
}

func (k *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{k.processed, k.duplicates, k.retries, k.deadLettered, k.pruned, k.fetchErrors, k.outOfGroup, k.buffered, k.lag} {
		ch <- d
	}
}

func (k *collector) Collect(ch chan<- prometheus.Metric) {
	s := k.c.Stats()
	for d, v := range map[*prometheus.Desc]int64{k.processed: s.Processed, k.duplicates: s.Duplicates,
		k.retries: s.Retries, k.deadLettered: s.DeadLettered, k.pruned: s.Pruned, k.fetchErrors: s.FetchErrors} {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	out := 0.0
	if s.OutOfGroup {
		out = 1
	}
	ch <- prometheus.MustNewConstMetric(k.outOfGroup, prometheus.GaugeValue, out)
	ch <- prometheus.MustNewConstMetric(k.buffered, prometheus.GaugeValue, float64(s.Buffered))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	lags, err := k.c.Lag(ctx)
	if err != nil {
		k.c.log.Warn("consumer metrics: read lag", "err", err)
		return
	}
	for tp, n := range lags {
		ch <- prometheus.MustNewConstMetric(k.lag, prometheus.GaugeValue, float64(n), tp.Topic, strconv.Itoa(tp.Partition))
	}
}

// TopicPartition names one partition.
type TopicPartition struct {
	Topic     string
	Partition int
}

// groupOffsets is what the broker says of the consumed topics'
// partitions: their ids by topic, each one's end (the next offset to be
// written) and the group's committed offset there (-1: none yet), and
// the first error it gave for a topic or a partition (Lag, a metric,
// shows what it can without them; ReadUpTo cannot).
type groupOffsets struct {
	parts          map[string][]int
	end, committed map[TopicPartition]int64
	err            error
}

// offsets asks client for the consumed topics' groupOffsets: a metadata
// request, then the partitions' ends and the group's offsets.
func (c *Consumer) offsets(ctx context.Context, client *kafka.Client) (groupOffsets, error) {
	g := groupOffsets{parts: map[string][]int{}, end: map[TopicPartition]int64{}, committed: map[TopicPartition]int64{}}
	keep := func(err error) {
		if g.err == nil {
			g.err = err
		}
	}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: c.cfg.Topics})
	if err != nil {
		return g, err
	}
	latest := map[string][]kafka.OffsetRequest{}
	for _, t := range md.Topics {
		if t.Error != nil {
			keep(fmt.Errorf("topic %s: %w", t.Name, t.Error))
		}
		for _, p := range t.Partitions {
			g.parts[t.Name] = append(g.parts[t.Name], p.ID)
			latest[t.Name] = append(latest[t.Name], kafka.LastOffsetOf(p.ID))
		}
	}
	committed, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: c.cfg.Group, Topics: g.parts})
	if err != nil {
		return g, err
	}
	ends, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: latest})
	if err != nil {
		return g, err
	}
	for topic, ps := range ends.Topics {
		for _, p := range ps {
			if p.Error != nil {
				keep(fmt.Errorf("end of %s/%d: %w", topic, p.Partition, p.Error))
				continue
			}
			g.end[TopicPartition{topic, p.Partition}] = p.LastOffset
		}
	}
	for topic, ps := range committed.Topics {
		for _, p := range ps {
			if p.Error != nil {
				keep(fmt.Errorf("committed offset of %s/%d: %w", topic, p.Partition, p.Error))
			}
			g.committed[TopicPartition{topic, p.Partition}] = p.CommittedOffset
		}
	}
	return g, nil
}

// pastEnd returns an error naming the partitions whose committed offset
// is past their end, nil if none. The consumer reads such a partition
// only once it has grown past the offset, skipping every record below
// it: no count of records not read yet is true, and the group has not
// read up to any time. It comes of a topic the broker lost: the group's
// offset of the old topic committed to the one created again (see
// resetStaleOffsets, which mends it when the consumer rejoins).
func (g groupOffsets) pastEnd() error {
	var past []string
	for tp, committed := range g.committed {
		if end, ok := g.end[tp]; ok && committed > end {
			past = append(past, fmt.Sprintf("%s/%d at %d, its end at %d", tp.Topic, tp.Partition, committed, end))
		}
	}
	if len(past) == 0 {
		return nil
	}
	slices.Sort(past)
	return fmt.Errorf("the group's offsets are past their partition's end, the records below them would be skipped (a topic the broker lost? "+
		"the consumer resets them as it rejoins for the topic, or kafka-consumer-groups --reset-offsets --to-earliest does): %s",
		strings.Join(past, "; "))
}

// Lag returns, per partition of the consumed topics, how many records the
// group has not committed yet; an error if the group's offset of one is
// past its end (pastEnd).
func (c *Consumer) Lag(ctx context.Context) (map[TopicPartition]int64, error) {
	g, err := c.offsets(ctx, &kafka.Client{Addr: kafka.TCP(c.cfg.Brokers...), Transport: c.cfg.Transport})
	if err == nil {
		err = g.pastEnd()
	}
	if err != nil {
		return nil, err
	}
	out := maps.Clone(g.end)
	for tp, committed := range g.committed {
		if end, ok := out[tp]; ok && committed >= 0 {
			out[tp] = end - committed
		}
	}
	return out, nil
}

// ReadUpTo reports whether the group has committed every record of its
// topics written before t (by the records' timestamps): what a caller
// needs before it acts on an answer not having come, e.g. before it gives
// up waiting for one. An offset past its partition's end is an error
// (pastEnd): the records below it would be skipped, not read. A record is written before t when the broker's
// first offset at or after t (ListOffsets by time) is past it, or, where
// no record is that new, when it is in the partition at all.
func (c *Consumer) ReadUpTo(ctx context.Context, t time.Time) (bool, error) {
	client := &kafka.Client{Addr: kafka.TCP(c.cfg.Brokers...), Transport: c.cfg.Transport}
	g, err := c.offsets(ctx, client)
	if err == nil {
		err = cmp.Or(g.err, g.pastEnd())
	}
	if err != nil {
		return false, err
	}
	// Where each partition's records written before t end: the first
	// offset at or after t, else (none that new) the partition's end.
	need := maps.Clone(g.end)
	atT := map[string][]kafka.OffsetRequest{}
	for topic, ids := range g.parts {
		for _, id := range ids {
			atT[topic] = append(atT[topic], kafka.TimeOffsetOf(id, t))
		}
	}
	atRes, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: atT})
	if err != nil {
		return false, err
	}
	for topic, ps := range atRes.Topics {
		for _, p := range ps {
			if p.Error != nil {
				return false, fmt.Errorf("offset of %s/%d at %s: %w", topic, p.Partition, t.Format(time.RFC3339), p.Error)
			}
			for off := range p.Offsets { // one entry: the offset found, or -1 for none
				if off >= 0 {
					need[TopicPartition{topic, p.Partition}] = off
				}
			}
		}
	}
	for tp, n := range need {
		if n > 0 && g.committed[tp] < n { // committed -1: none yet
			return false, nil
		}
	}
	return true, nil
}
