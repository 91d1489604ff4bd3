// Package broker runs the embedded Kafka-protocol broker used for
// development and tests: github.com/twmb/franz-go/pkg/kfake, a single node
// that speaks the real wire protocol, optionally persisting topics, records
// and committed group offsets under a data directory so a restart resumes
// where it stopped.
//
// It is not a production broker: docker-compose runs Apache Kafka for that.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Config configures the embedded broker.
type Config struct {
	// Addr is the host:port to listen on; the port may be 0 for any free
	// port. Empty means 127.0.0.1:9092.
	Addr string
	// DataDir, when set, persists topics, records and committed offsets
	// there; a broker started again on the same directory resumes.
	DataDir string
	// SyncWrites fsyncs every produced batch (slower, survives power loss;
	// without it data survives a process kill but not an OS crash).
	SyncWrites bool
	// DefaultPartitions is used for topics created with -1 partitions.
	DefaultPartitions int
	// Logger receives the broker's warnings and errors; nil discards them.
	Logger *slog.Logger
}

// Broker is a running embedded broker.
type Broker struct {
	cluster *kfake.Cluster
	addr    string
}

// Start starts the broker and returns once it accepts connections.
func Start(cfg Config) (*Broker, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:9092"
	}
	host, portStr, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("broker: address %q: %w", cfg.Addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("broker: address %q: bad port", cfg.Addr)
	}
	if cfg.DefaultPartitions <= 0 {
		cfg.DefaultPartitions = 12
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.ClusterID("shopflow-dev"),
		kfake.DefaultNumPartitions(cfg.DefaultPartitions),
		// Allow short sessions so a killed consumer's partitions move
		// within seconds (see KAFKA-GO.md), as tests and crash tests need.
		kfake.GroupMinSessionTimeout(time.Second),
		// kfake always binds 127.0.0.1; honour the configured host.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(host, strconv.Itoa(port)))
		}),
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	if cfg.SyncWrites {
		opts = append(opts, kfake.SyncWrites())
	}
	if cfg.Logger != nil {
		opts = append(opts, kfake.WithLogger(slogLogger{cfg.Logger}))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("broker: start on %s: %w", cfg.Addr, err)
	}
	addrs := c.ListenAddrs()
	if len(addrs) == 0 {
		c.Close()
		return nil, errors.New("broker: no listener")
	}
	return &Broker{cluster: c, addr: addrs[0]}, nil
}

// Addr is the host:port clients connect to.
func (b *Broker) Addr() string { return b.addr }

// Close stops the broker, flushing persisted state first.
func (b *Broker) Close() { b.cluster.Close() }

type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Logf(level kfake.LogLevel, msg string, args ...any) {
	var lv slog.Level
	switch level {
	case kfake.LogLevelError:
		lv = slog.LevelError
	case kfake.LogLevelWarn:
		lv = slog.LevelWarn
	case kfake.LogLevelInfo:
		lv = slog.LevelInfo
	default:
		lv = slog.LevelDebug
	}
	s.l.Log(context.Background(), lv, fmt.Sprintf(msg, args...), "component", "broker")
}
