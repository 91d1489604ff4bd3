package inbox

import (
	"context"
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
