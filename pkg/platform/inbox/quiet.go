package inbox

import (
	"log/slog"
	"strings"
	"time"

	quietpkg "github.com/shopflow/shopflow/pkg/platform/internal/quiet"
)

// quiet holds back kafka-go's reports during a broker outage (every
// partition reader and the group member each say so at every retry:
// about six lines a second per consumer, two thirds of them the same
// two) so that they do not bury the rest of the log: see quiet.Limiter.
// Only reports of a connection failing (connectionTrouble) or of a topic
// the broker does not know (a broker that lost its data: the group
// member rejoins in a tight loop, each time saying so, 1,500 lines in 5 s
// for the suite, until the topic watch creates the topic again) are held
// back; anything else kafka-go says (offsets skipped, a group left) is
// news each time.
type quiet struct{ *quietpkg.Limiter }

// quietInterval is how often a repeated kafka-go report is logged.
const quietInterval = quietpkg.Interval

func newQuiet(interval time.Duration) quiet { return quiet{quietpkg.New(interval)} }

// pass reports whether msg should be logged now and, if so, how many
// like it were held back since it was last logged, and how long ago
// that was.
func (q quiet) pass(msg string) (ok bool, held int, since time.Duration) {
	// A topic missing, or an offset past a partition's end (a topic
	// the broker lost, see resetStaleOffsets), is reported every second
	// until it is mended: one piece of news too.
	if !connectionTrouble(msg) && !strings.Contains(msg, "Unknown Topic Or Partition") && !strings.Contains(msg, "Offset Out Of Range") {
		return true, 0, 0
	}
	return q.Pass(msg)
}

// drain: see quiet.Limiter.Drain.
func (q quiet) drain() int { return q.Drain() }

// connectionTrouble reports whether msg is kafka-go saying that a
// connection to a broker failed or could not be made.
func connectionTrouble(msg string) bool {
	for _, s := range []string{"dial", "connection refused", "connection reset", "broken pipe", "EOF", "i/o timeout",
		"no such host", "network is unreachable", "coordinator"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// kafkaLevel is the level kafka-go's report msg is logged at: a warning,
// but for a fetch whose answer took longer than ReadBatchTimeout (twice
// MaxWait: a second by default). On a machine whose cores are all busy
// (shop dev under shop load: the broker shares the process) that happens
// now and then; the partition reader reconnects and reads on from its
// offset, losing nothing, so it is no news for a terminal that shows
// warnings. A broker that stopped answering shows otherwise: dial and
// connection failures (warnings), the fetch error count, /readyz.
//
// The same goes for what a normal rebalance makes kafka-go say (a replica
// started or stopped: a trial's rolling restarts logged nothing else at
// WARN): a sync answered "Rebalance In Progress", and the partition
// readers of the generation that ended, cancelled while they started.
func kafkaLevel(msg string) slog.Level {
	switch {
	case strings.Contains(msg, "reading partition") && strings.Contains(msg, "i/o timeout"),
		strings.Contains(msg, "Rebalance In Progress"),
		strings.Contains(msg, "error initializing the kafka reader") && strings.Contains(msg, "context canceled"):
		return slog.LevelInfo
	}
	return slog.LevelWarn
}

// reportedTopics returns the topics among topics that a kafka-go report
// names as its partition readers do ("... partition 0 of shop.orders at
// offset 7: ...", "... partition 0 of shop.orders: ...").
func reportedTopics(msg string, topics []string) []string {
	var out []string
	for _, t := range topics {
		if strings.Contains(msg, " of "+t+" ") || strings.Contains(msg, " of "+t+":") {
			out = append(out, t)
		}
	}
	return out
}
