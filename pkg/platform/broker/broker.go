// Package broker runs the embedded Kafka-protocol broker used for
// development and tests: github.com/twmb/franz-go/pkg/kfake, a single node
// that speaks the real wire protocol, optionally persisting topics, records
// and committed group offsets under a data directory so a restart resumes
// where it stopped.
//
// It can require SASL authentication (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)
// and listen with TLS, so the clients' security settings
// (pkg/platform/kafkasec) are exercised against the real protocol in tests
// and in development.
//
// It is not a production broker: docker-compose runs Apache Kafka for that.
package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
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
	// SASL, when not empty, makes every client authenticate as one of
	// these users before any other request (Kafka's SASL_PLAINTEXT, or
	// SASL_SSL with TLS). These are exactly the broker's users: with
	// DataDir, users persisted by an earlier run are replaced by these.
	SASL []SASLUser
	// TLS, when set, makes the listener TLS-only with this server
	// configuration: Certificates, and ClientCAs with ClientAuth for
	// mutual TLS. ServerTLS builds one from PEM files.
	TLS *tls.Config
}

// The SASL mechanisms the broker offers (Kafka's names).
const (
	MechanismPlain       = "PLAIN"
	MechanismSCRAMSHA256 = "SCRAM-SHA-256"
	MechanismSCRAMSHA512 = "SCRAM-SHA-512"
)

// SASLUser is a user the broker accepts.
type SASLUser struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512: the user can
	// authenticate with this mechanism only (list the user again for
	// another).
	Mechanism string
	User      string
	Password  string
}

// ServerTLS builds a broker TLS configuration from PEM files: the server
// certificate (chain first) and its key and, when clientCAFile is not
// empty, the CAs client certificates must chain to (mutual TLS: clients
// without a valid certificate are refused).
func ServerTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("broker: TLS needs both a certificate and a key file")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("broker: TLS certificate %s, key %s: %w", certFile, keyFile, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("broker: TLS client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("broker: TLS client CA %s: no PEM certificate", clientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
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
	for i, u := range cfg.SASL {
		switch {
		case u.Mechanism != MechanismPlain && u.Mechanism != MechanismSCRAMSHA256 && u.Mechanism != MechanismSCRAMSHA512:
			return nil, fmt.Errorf("broker: SASL user %d: mechanism %q is not one of %s, %s, %s",
				i+1, u.Mechanism, MechanismSCRAMSHA256, MechanismSCRAMSHA512, MechanismPlain)
		case u.User == "" || u.Password == "":
			return nil, fmt.Errorf("broker: SASL user %d (%s): needs a user name and a password", i+1, u.Mechanism)
		}
	}
	if cfg.TLS != nil && len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetCertificate == nil {
		return nil, errors.New("broker: TLS configuration has no server certificate")
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
	if len(cfg.SASL) > 0 {
		opts = append(opts, kfake.EnableSASL())
		for _, u := range cfg.SASL {
			// Superusers: with kfake's ACLs off (as here) any user may do
			// anything; as superusers they still would if ACLs were on.
			opts = append(opts, kfake.Superuser(u.Mechanism, u.User, u.Password))
		}
		if cfg.DataDir != "" {
			// kfake saves its users in the data directory at shutdown
			// and, on the next start, lets the saved ones replace the
			// configured ones: a changed password would not take
			// effect, and a directory first used without SASL would
			// leave no user at all. The configured users are the truth.
			err := os.Remove(filepath.Join(cfg.DataDir, "sasl.json"))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("broker: reset persisted SASL users: %w", err)
			}
		}
	}
	if cfg.TLS != nil {
		opts = append(opts, kfake.TLS(cfg.TLS))
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
