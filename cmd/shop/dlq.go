package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shopflow/shopflow/cmd/shop/dlq"
	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/pkg/platform/config"
	"github.com/shopflow/shopflow/pkg/platform/kafkasec"
)

const dlqUsage = `usage:
  shop dlq list   [--group G] [--brokers ADDRS] [--prefix P] [--data-dir DIR] [--json]
  shop dlq replay --group G (--offset N | --all) [--brokers ADDRS] [--prefix P] [--data-dir DIR] [--json]
  shop dlq poison [--topic T] [--key K] [--value V] [--brokers ADDRS] [--prefix P] [--data-dir DIR] [--json]

Dead letters are the records a consumer group (order, payment, inventory,
shipping) gave up on, kept on shop.dlq.<group> with the reason.

The brokers are --brokers', else $KAFKA_BROKERS', else those of the shop
dev running with --data-dir (with its topic prefix, unless --prefix or
$KAFKA_TOPIC_PREFIX says otherwise), else 127.0.0.1:9092; the last two are
said on stderr.

list     prints every dead letter (of one group with --group): group, DLQ
         offset, when it failed, source topic/partition/offset, event type,
         key (order id), attempts, the letter it is a replay of (REPLAYED
         FROM), what is known of its own replays (REPLAYED: "--all" once
         replay --all has passed it, "failed again as <topic>/<offset>"
         for a later letter that is a replay of it; a replay by --offset
         that went through shows no sign) and the error. Reads without a
         consumer group; commits nothing.
replay   re-publishes dead letters to their source topic (same key, value
         and CloudEvents headers; dlq_* headers dropped; dlq_replayed_from
         added), acks=all, partitioned by key as the services do. --offset N
         replays one record; --all replays every record not replayed by an
         earlier --all (progress kept in consumer group
         <prefix>shop.dlq-replay.<group>); a letter that can never be
         replayed (without its record, or its dlq_source_topic header)
         is skipped with a warning and counted in the summary. Fix the
         cause first: a record that fails again is dead-lettered again.
poison   (for trying the above on a development suite) publishes a record
         that is no event to --topic (default shop.orders; the prefix is
         added): --key (default poison-<random>) and --value (default
         "this is not an event"), no headers, partitioned by key as the
         services publish. Every group reading the topic dead-letters it
         at its first attempt (shop.orders: payment, inventory and
         shipping), for list to show. Prints the topic, partition and
         offset it landed at.

Exit status: 0 done, 2 error (unknown group or topic, missing
--offset/--all, an offset the DLQ does not hold, no dead-letter topic
with the --prefix on the cluster, broker unreachable). The services create their dead-letter
topics when they start: with none under the prefix it is most likely
mistyped (or --brokers names another cluster), not an empty queue.

flags:
`

// cmdDLQ lists and replays dead letters.
func cmdDLQ(ctx context.Context, args []string, stdout, stderr io.Writer, _ *slog.Logger) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, strings.TrimSuffix(dlqUsage, "\nflags:\n"))
		if len(args) == 0 {
			return errors.New("dlq: want a subcommand: list, replay or poison")
		}
		return flag.ErrHelp
	}
	sub := args[0]
	if sub != "list" && sub != "replay" && sub != "poison" {
		fmt.Fprint(stderr, strings.TrimSuffix(dlqUsage, "\nflags:\n"))
		return fmt.Errorf("dlq: unknown subcommand %q: want list, replay or poison", sub)
	}
	fs := flag.NewFlagSet("shop dlq "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), dlqUsage)
		fs.PrintDefaults()
	}
	group := new(string)
	if sub != "poison" {
		group = fs.String("group", "", "consumer group: "+strings.Join(dlq.Groups, ", ")+" (list: default all)")
	}
	brokers := fs.String("brokers", "", "Kafka bootstrap addresses, comma-separated (default $KAFKA_BROKERS, else the running shop dev's, else "+defaultBrokers+")")
	prefix := fs.String("prefix", envOr("KAFKA_TOPIC_PREFIX", ""), "the services' KAFKA_TOPIC_PREFIX (default $KAFKA_TOPIC_PREFIX, else the running shop dev's when its brokers are used)")
	dataDir := fs.String("data-dir", defaultDataDir, dataDirUsage)
	asJSON := fs.Bool("json", false, "print JSON")
	var offset *int64
	var all *bool
	if sub == "replay" {
		offset = fs.Int64("offset", -1, "replay the record at this DLQ offset")
		all = fs.Bool("all", false, "replay every record not replayed by an earlier --all")
	}
	var topic, key, value *string
	if sub == "poison" {
		topic = fs.String("topic", events.TopicOrders, "the topic to publish to, without the prefix: "+strings.Join(dlq.SourceTopics, ", "))
		key = fs.String("key", "", "the record's key (default poison-<random>, a new one each time)")
		value = fs.String("value", "this is not an event", "the record's value")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("dlq %s: unexpected argument %q", sub, fs.Arg(0))
	}
	offsetSet := flagSet(fs, "offset")
	if sub == "replay" {
		switch {
		case *group == "":
			return fmt.Errorf("dlq replay: --group is required: one of %s (shop dlq list shows which have letters)", strings.Join(dlq.Groups, ", "))
		case offsetSet == *all:
			return errors.New("dlq replay: give exactly one of --offset N and --all")
		case offsetSet && *offset < 0:
			return fmt.Errorf("dlq replay: --offset %d: must not be negative", *offset)
		}
	}
	prefixSet := os.Getenv("KAFKA_TOPIC_PREFIX") != "" || flagSet(fs, "prefix")
	if !flagSet(fs, "brokers") {
		*brokers = os.Getenv("KAFKA_BROKERS")
	}
	if !flagSet(fs, "brokers") && *brokers == "" {
		dev, err := runningDev(fs, *dataDir, "--brokers or KAFKA_BROKERS")
		if err != nil {
			return fmt.Errorf("dlq %s: %w", sub, err)
		}
		*brokers = defaultBrokers
		if dev != nil {
			*brokers = strings.Join(dev.KafkaBrokers, ",")
			if !prefixSet && dev.KafkaTopicPrefix != "" {
				*prefix, prefixSet = dev.KafkaTopicPrefix, true
			}
		}
		what := "broker " + *brokers
		if *prefix != "" {
			what += ", topic prefix " + strconv.Quote(*prefix)
		}
		sayTarget(stderr, "dlq "+sub, what, dev, *dataDir)
	}
	// The same KAFKA_SASL_* / KAFKA_TLS* settings as the services.
	sec, err := config.Load[struct{ Kafka kafkasec.Config }]()
	if err != nil {
		return fmt.Errorf("dlq %s: %w", sub, err)
	}
	cfg := dlq.Config{Prefix: *prefix}
	if cfg.Transport, err = sec.Kafka.Transport(); err != nil {
		return fmt.Errorf("dlq %s: %w", sub, err)
	}
	if cfg.Dialer, err = sec.Kafka.Dialer(); err != nil {
		return fmt.Errorf("dlq %s: %w", sub, err)
	}
	for b := range strings.SplitSeq(*brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			cfg.Brokers = append(cfg.Brokers, b)
		}
	}
	if len(cfg.Brokers) == 0 {
		return fmt.Errorf("dlq %s: --brokers: no address", sub)
	}
	if *group != "" {
		g, p, err := prefixedGroup(*group, cfg.Prefix, prefixSet)
		if err != nil {
			return fmt.Errorf("dlq %s: --group: %w", sub, err)
		}
		*group, cfg.Prefix = g, p
	}
	// A mistyped prefix finds no topic, which read as "no dead letters"
	// (or "0 records replayed"). Checked once the flags are.
	checkPrefix := func() error {
		prefixes, err := dlq.Prefixes(ctx, cfg)
		if err != nil {
			return fmt.Errorf("dlq %s: %w", sub, err)
		}
		if !slices.Contains(prefixes, cfg.Prefix) {
			return fmt.Errorf("dlq %s: %w", sub, noDLQTopics(cfg, prefixes))
		}
		return nil
	}

	if sub == "poison" {
		if !flagSet(fs, "key") {
			*key = "poison-" + rand.Text()[:8]
		}
		if err := checkPrefix(); err != nil {
			return err
		}
		p, err := dlq.Poison(ctx, cfg, *topic, *key, []byte(*value))
		if err != nil {
			return fmt.Errorf("dlq poison: %w", err)
		}
		if *asJSON {
			return writeJSON(stdout, p)
		}
		fmt.Fprintf(stdout, "published %s partition %d offset %d: key %s, value %q, no headers (no event)\n",
			p.Topic, p.Partition, p.Offset, p.Key, p.Value)
		fmt.Fprintf(stdout, "every group reading %s dead-letters it at its first attempt; shop dlq list shows the letters\n", p.Topic)
		return nil
	}

	if sub == "list" {
		var groups []string
		if *group != "" {
			groups = []string{*group}
		}
		if err := checkPrefix(); err != nil {
			return err
		}
		ls, warnings, err := dlq.List(ctx, cfg, groups...)
		if err != nil {
			return fmt.Errorf("dlq list: %w", err)
		}
		for _, w := range warnings {
			fmt.Fprintf(stderr, "warning: %s\n", w)
		}
		if *asJSON {
			return writeJSON(stdout, nonNil(ls))
		}
		printLetters(stdout, ls)
		return nil
	}

	if err := checkPrefix(); err != nil {
		return err
	}
	var done []dlq.Replayed
	if *all {
		done, err = dlq.ReplayAll(ctx, cfg, *group)
	} else {
		var r dlq.Replayed
		r, err = dlq.Replay(ctx, cfg, *group, *offset)
		if err == nil {
			done = []dlq.Replayed{r}
		}
	}
	// What was replayed before an error is still reported.
	if *asJSON {
		if jerr := writeJSON(stdout, nonNil(done)); jerr != nil && err == nil {
			err = jerr
		}
		for _, r := range done { // in the JSON too ("skipped"); said where a person sees it
			if r.Skipped != "" {
				fmt.Fprintf(stderr, "warning: skipped %s\n", r.Skipped)
			}
		}
	} else {
		replayed, skipped := 0, 0
		for _, r := range done {
			if r.Skipped != "" {
				skipped++
				fmt.Fprintf(stdout, "warning: skipped %s\n", r.Skipped)
				continue
			}
			replayed++
			fmt.Fprintf(stdout, "replayed %s/%d (%s, failed: %s) to %s partition %d offset %d\n",
				r.Topic, r.Offset, typeAndKey(r.Letter), r.Error, r.ToTopic, r.ToPartition, r.ToOffset)
		}
		if err == nil {
			more := ""
			if skipped > 0 {
				more = fmt.Sprintf(", %d skipped (never replayable: see above; --all will not meet them again)", skipped)
			}
			fmt.Fprintf(stdout, "%s replayed from %s%s\n", count(replayed, "record", "records"), cfg.Topic(*group), more)
		}
	}
	if err != nil {
		return fmt.Errorf("dlq replay: %w", err)
	}
	return nil
}

// defaultBrokers is the embedded broker's address under shop dev.
const defaultBrokers = "127.0.0.1:9092"

// prefixedGroup returns the group and prefix --group and --prefix name.
// The metrics' group label, which the alerts put in the shop dlq command
// they suggest, is the group with the services' KAFKA_TOPIC_PREFIX
// before it ("nu.payment"): such a --group is taken for the group under
// that prefix when it is --prefix's, or when no prefix was given (neither
// --prefix nor $KAFKA_TOPIC_PREFIX). It used to be refused as an unknown
// group.
func prefixedGroup(group, prefix string, prefixSet bool) (string, string, error) {
	err := dlq.CheckGroup(group)
	if err == nil {
		return group, prefix, nil
	}
	for _, g := range dlq.Groups {
		p, ok := strings.CutSuffix(group, g)
		if !ok || p == "" {
			continue
		}
		switch {
		case p == prefix || !prefixSet:
			return g, p, nil
		default:
			return "", "", fmt.Errorf("%q is group %s under prefix %q, but --prefix is %q: give the group alone (%s) or the prefix it was named with", group, g, p, prefix, g)
		}
	}
	return "", "", err
}

// noDLQTopics says that the cluster has no dead-letter topic under
// cfg.Prefix, naming the prefixes that have some (prefixes).
func noDLQTopics(cfg dlq.Config, prefixes []string) error {
	brokers := strings.Join(cfg.Brokers, ",")
	if len(prefixes) == 0 {
		return fmt.Errorf("no dead-letter topics (%s) on %s, nor with any other --prefix: "+
			"the services create them when they start; check --brokers", cfg.Topic("<group>"), brokers)
	}
	const most = 10
	quoted := make([]string, 0, most)
	for _, p := range prefixes[:min(len(prefixes), most)] {
		quoted = append(quoted, strconv.Quote(p))
	}
	more := ""
	if len(prefixes) > most {
		more = fmt.Sprintf(" and %d more", len(prefixes)-most)
	}
	return fmt.Errorf("--prefix %q: no dead-letter topics (%s) on %s; there are some with --prefix %s%s",
		cfg.Prefix, cfg.Topic("<group>"), brokers, strings.Join(quoted, ", "), more)
}

// printLetters writes the dead letters as a table, or says there are none.
func printLetters(w io.Writer, ls []dlq.Letter) {
	if len(ls) == 0 {
		fmt.Fprintln(w, "no dead letters")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tOFFSET\tFAILED AT\tSOURCE\tTYPE\tKEY\tATTEMPTS\tREPLAYED FROM\tREPLAYED\tERROR")
	for _, l := range ls {
		failed := "-"
		if !l.FailedAt.IsZero() {
			failed = l.FailedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s/%d/%d\t%s\t%s\t%d\t%s\t%s\t%s\n", l.Group, l.Offset, failed,
			cmp.Or(l.SourceTopic, "-"), l.SourcePartition, l.SourceOffset, cmp.Or(l.Type, "-"), cmp.Or(l.Key, "-"), l.Attempts, cmp.Or(l.ReplayedFrom, "-"), replayed(l),
			oneLine(l.Error)+omitted(l))
	}
	tw.Flush()
	fmt.Fprintln(w, count(len(ls), "dead letter", "dead letters"))
}

// typeAndKey names a letter's event type and key for replay's report,
// saying so when it has none (a record that was not an event: "no type,
// key garbage-1"), rather than leaving a blank ("(, key garbage-1").
func typeAndKey(l dlq.Letter) string {
	key := "no key"
	if l.Key != "" {
		key = "key " + l.Key
	}
	return cmp.Or(l.Type, "no type") + ", " + key
}

// replayed says what is known of a letter's replays, for the REPLAYED
// column: "--all" (replay --all has replayed it), "skipped by --all" (it
// cannot be replayed), "unknown" (replay --all's progress could not be
// read), "failed again as <topic>/<offset>", or "-" when
// there is no sign of one (a replay by --offset that went through leaves
// none in the dead-letter topics).
func replayed(l dlq.Letter) string {
	var s []string
	switch {
	case l.ReplayUnknown:
		s = append(s, "unknown (see the warning)")
	case l.DoneByAll && l.Replayable():
		s = append(s, "--all")
	case l.DoneByAll:
		s = append(s, "skipped by --all")
	}
	if len(l.FailedAgainAs) > 0 {
		s = append(s, "failed again as "+strings.Join(l.FailedAgainAs, ", "))
	}
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, "; ")
}

// omitted notes a dead letter that carries none of its record.
func omitted(l dlq.Letter) string {
	if l.Omitted == "" {
		return ""
	}
	return " (not kept: " + l.Omitted + ")"
}

// oneLine keeps a multi-line error in its table cell.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// nonNil makes an empty result print as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
