package inbox

import (
	"context"
	"fmt"
	"strconv"
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
		lag:          desc("shop_consumer_lag", "Records on the partition not yet committed by the group.", "topic", "partition"),
	}
}

type collector struct {
	c                                            *Consumer
	processed, duplicates, retries, deadLettered *prometheus.Desc
	pruned, fetchErrors                          *prometheus.Desc
	lag                                          *prometheus.Desc
}

func (k *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{k.processed, k.duplicates, k.retries, k.deadLettered, k.pruned, k.fetchErrors, k.lag} {
		ch <- d
	}
}

func (k *collector) Collect(ch chan<- prometheus.Metric) {
	s := k.c.Stats()
	for d, v := range map[*prometheus.Desc]int64{k.processed: s.Processed, k.duplicates: s.Duplicates,
		k.retries: s.Retries, k.deadLettered: s.DeadLettered, k.pruned: s.Pruned, k.fetchErrors: s.FetchErrors} {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
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

// Lag returns, per partition of the consumed topics, how many records the
// group has not committed yet.
func (c *Consumer) Lag(ctx context.Context) (map[TopicPartition]int64, error) {
	client := &kafka.Client{Addr: kafka.TCP(c.cfg.Brokers...), Transport: c.cfg.Transport}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: c.cfg.Topics})
	if err != nil {
		return nil, err
	}
	parts := map[string][]int{}
	latest := map[string][]kafka.OffsetRequest{}
	for _, t := range md.Topics {
		for _, p := range t.Partitions {
			parts[t.Name] = append(parts[t.Name], p.ID)
			latest[t.Name] = append(latest[t.Name], kafka.LastOffsetOf(p.ID))
		}
	}
	committed, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: c.cfg.Group, Topics: parts})
	if err != nil {
		return nil, err
	}
	ends, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: latest})
	if err != nil {
		return nil, err
	}
	out := map[TopicPartition]int64{}
	for topic, ps := range ends.Topics {
		for _, p := range ps {
			out[TopicPartition{topic, p.Partition}] = p.LastOffset
		}
	}
	for topic, ps := range committed.Topics {
		for _, p := range ps {
			tp := TopicPartition{topic, p.Partition}
			if end, ok := out[tp]; ok && p.CommittedOffset >= 0 {
				out[tp] = max(end-p.CommittedOffset, 0)
			}
		}
	}
	return out, nil
}

// ReadUpTo reports whether the group has committed every record of its
// topics written before t (by the records' timestamps): what a caller
// needs before it acts on an answer not having come, e.g. before it gives
// up waiting for one. A record is written before t when the broker's
// first offset at or after t (ListOffsets by time) is past it, or, where
// no record is that new, when it is in the partition at all.
func (c *Consumer) ReadUpTo(ctx context.Context, t time.Time) (bool, error) {
	client := &kafka.Client{Addr: kafka.TCP(c.cfg.Brokers...), Transport: c.cfg.Transport}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: c.cfg.Topics})
	if err != nil {
		return false, err
	}
	parts := map[string][]int{}
	atT, ends := map[string][]kafka.OffsetRequest{}, map[string][]kafka.OffsetRequest{}
	for _, tp := range md.Topics {
		if tp.Error != nil {
			return false, fmt.Errorf("topic %s: %w", tp.Name, tp.Error)
		}
		for _, p := range tp.Partitions {
			parts[tp.Name] = append(parts[tp.Name], p.ID)
			atT[tp.Name] = append(atT[tp.Name], kafka.TimeOffsetOf(p.ID, t))
			ends[tp.Name] = append(ends[tp.Name], kafka.LastOffsetOf(p.ID))
		}
	}
	// Where each partition's records written before t end: the first
	// offset at or after t, else (none that new) the partition's end.
	need := map[TopicPartition]int64{}
	endRes, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: ends})
	if err != nil {
		return false, err
	}
	for topic, ps := range endRes.Topics {
		for _, p := range ps {
			if p.Error != nil {
				return false, fmt.Errorf("end of %s/%d: %w", topic, p.Partition, p.Error)
			}
			need[TopicPartition{topic, p.Partition}] = p.LastOffset
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
	committed, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: c.cfg.Group, Topics: parts})
	if err != nil {
		return false, err
	}
	have := map[TopicPartition]int64{}
	for topic, ps := range committed.Topics {
		for _, p := range ps {
			if p.Error != nil {
				return false, fmt.Errorf("committed offset of %s/%d: %w", topic, p.Partition, p.Error)
			}
			have[TopicPartition{topic, p.Partition}] = p.CommittedOffset // -1: none yet
		}
	}
	for tp, n := range need {
		if n > 0 && have[tp] < n {
			return false, nil
		}
	}
	return true, nil
}
