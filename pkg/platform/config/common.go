package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shopflow/shopflow/pkg/platform/internal/hostlist"
	"github.com/shopflow/shopflow/pkg/platform/kafkasec"
	"github.com/shopflow/shopflow/pkg/platform/logging"
	"github.com/shopflow/shopflow/pkg/platform/tracing"
)

// Common is the configuration every service shares; service configurations
// embed it. HTTP_ADDR has no default here: each service supplies its own
// with WithDefault (order :8080, payment :8081, inventory :8082, shipping
// :8083).
type Common struct {
	// DatabaseURL is the service's PostgreSQL, as a postgres:// URL. Its
	// password is masked by Redacted.
	DatabaseURL string `env:"DATABASE_URL"`
	// KafkaBrokers are the bootstrap brokers, host:port each.
	KafkaBrokers []string `env:"KAFKA_BROKERS" envSeparator:"," envDefault:"127.0.0.1:9092"`
	// HTTPAddr is where the HTTP API listens (host:port; the host may be
	// empty for all interfaces).
	HTTPAddr string `env:"HTTP_ADDR"`
	// HTTPRequestTimeout bounds each HTTP request's handler
	// (httpserver.Config.RequestTimeout), below the server's 30 s write
	// timeout so that a request held up by the database is still
	// answered (503); 0 in code means httpserver's default.
	HTTPRequestTimeout time.Duration `env:"HTTP_REQUEST_TIMEOUT" envDefault:"25s"`
	// HTTPTrustedProxies are the proxies (IP addresses or CIDR blocks)
	// whose X-Forwarded-For names the client (httpserver.Config.
	// TrustedProxies, through TrustedProxies); empty: the TCP peer is the
	// client, whatever the header says.
	HTTPTrustedProxies []string `env:"HTTP_TRUSTED_PROXIES" envSeparator:","`
	// HTTPAllowedHosts are the host names (and IP addresses, and
	// *.suffix wildcards) the service answers for (httpserver.Config.
	// AllowedHosts): a request for another Host is refused, against DNS
	// rebinding. Empty: every host.
	HTTPAllowedHosts []string `env:"HTTP_ALLOWED_HOSTS" envSeparator:","`
	// LogLevel is debug, info, warn or error.
	LogLevel string `env:"LOG_LEVEL" envDefault:"info"`
	// ShutdownTimeout bounds graceful shutdown.
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`
	// ShutdownDrainDelay is how long a stopping service keeps serving
	// everything with /readyz answering 503 before its graceful shutdown
	// begins (on top of ShutdownTimeout): time for a load balancer to
	// notice and send no more requests to a port about to close.
	ShutdownDrainDelay time.Duration `env:"SHUTDOWN_DRAIN_DELAY" envDefault:"0s"`
	// KafkaTopicPrefix is put before every topic and consumer group name
	// (e.g. "staging." gives staging.shop.orders); empty by default. It
	// lets several suites share one cluster, and each test its own.
	KafkaTopicPrefix string `env:"KAFKA_TOPIC_PREFIX"`
	// DBMaxConns bounds the service's PostgreSQL pool (0 in code means
	// pgx's default, max(4, CPUs)).
	DBMaxConns int32 `env:"DB_MAX_CONNS" envDefault:"10"`
	// ConsumerParallelism is how many workers apply consumed records at
	// once, each owning a share of the partitions (inbox.Config.Parallelism;
	// 0 in code means its default).
	ConsumerParallelism int `env:"CONSUMER_PARALLELISM" envDefault:"4"`
	// ConsumerLinger is how long a consumer worker with less than a full
	// batch waits for more records (inbox.Config.Linger): at moderate
	// rates, fewer and larger transactions for a little latency per hop.
	ConsumerLinger time.Duration `env:"CONSUMER_LINGER" envDefault:"20ms"`
	// InboxRetention is how long the consumer's inbox keeps an applied
	// event's row (inbox.Config.Retention); 0 keeps every row. It must
	// cover how long the topics can keep a record (retention.ms plus
	// segment.ms; 21 days covers Kafka's defaults): a record Kafka
	// redelivers after its row is pruned is applied again.
	InboxRetention time.Duration `env:"INBOX_RETENTION" envDefault:"504h"`
	// GOGC is the garbage collector's target as the Go runtime reads it
	// (an integer percentage, or off), before any of this code runs: a
	// value it cannot parse, it silently replaces with 100. It is read
	// here only so that such a value fails start-up; unset or empty, the
	// binaries use service.DefaultGCPercent (service.TuneGC), which the
	// default here repeats so that -h and the start-up log show it (a
	// test in package service holds the two together).
	GOGC string `env:"GOGC" envDefault:"400"`
	// TracingEndpoint turns tracing on (see package tracing). It is read
	// here so that a value the exporter cannot use fails start-up with the
	// rest; the exporter reads it, and the other OTEL_* variables, itself.
	TracingEndpoint string `env:"OTEL_EXPORTER_OTLP_ENDPOINT"`
	// TracesEndpoint is the per-signal OTEL_EXPORTER_OTLP_TRACES_ENDPOINT:
	// it turns tracing on too and takes precedence, used as written (the
	// full URL, path included). Read here for the same reason, and so
	// that the start log shows it.
	TracesEndpoint string `env:"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"`
	// Kafka holds the SASL and TLS settings for the brokers
	// (KAFKA_SASL_*, KAFKA_TLS*); plaintext when unset.
	Kafka kafkasec.Config
}

// MaxHTTPRequestTimeout is HTTP_REQUEST_TIMEOUT's default and largest
// value: the HTTP server's write timeout (30 s) less 5 s to write the
// answer.
const MaxHTTPRequestTimeout = 25 * time.Second

// MaxShutdownDrainDelay is SHUTDOWN_DRAIN_DELAY's largest value: a load
// balancer's health checks notice a failing target within seconds to a
// minute; more is more likely a unit mistaken.
const MaxShutdownDrainDelay = 5 * time.Minute

var topicPrefix = regexp.MustCompile(`^[A-Za-z0-9._-]{0,100}$`)

// Validate checks every field and reports all problems, each a *VarError
// naming its variable. Load calls it; it is exported for configurations
// built in code (tests, cmd/shop running services in-process).
func (c Common) Validate() error {
	var errs []error
	bad := func(name string, err error) { errs = append(errs, &VarError{Var: name, Err: err}) }

	if err := checkDatabaseURL(c.DatabaseURL); err != nil {
		bad("DATABASE_URL", err)
	}
	if len(c.KafkaBrokers) == 0 {
		bad("KAFKA_BROKERS", errMissing)
	} else if err := checkList(c.KafkaBrokers, "host:port", func(b string) error { return checkHostPort(b, true) }); err != nil {
		bad("KAFKA_BROKERS", err)
	}
	if c.HTTPAddr == "" {
		bad("HTTP_ADDR", errMissing)
	} else if err := checkHostPort(c.HTTPAddr, false); err != nil {
		bad("HTTP_ADDR", err)
	}
	if c.HTTPRequestTimeout < 0 || c.HTTPRequestTimeout > MaxHTTPRequestTimeout {
		bad("HTTP_REQUEST_TIMEOUT", fmt.Errorf("%s is not in 0s..%s (below the HTTP server's 30s write timeout, leaving 5s to answer; 0: %s)",
			c.HTTPRequestTimeout, MaxHTTPRequestTimeout, MaxHTTPRequestTimeout))
	}
	if err := checkList(c.HTTPTrustedProxies, "IP addresses or CIDR blocks", checkProxy); err != nil {
		bad("HTTP_TRUSTED_PROXIES", err)
	}
	if err := checkList(c.HTTPAllowedHosts, "host names, IP addresses or *.suffix wildcards", hostlist.Check); err != nil {
		bad("HTTP_ALLOWED_HOSTS", err)
	}
	if _, err := logging.ParseLevel(c.LogLevel); err != nil {
		bad("LOG_LEVEL", err)
	}
	if !topicPrefix.MatchString(c.KafkaTopicPrefix) {
		bad("KAFKA_TOPIC_PREFIX", fmt.Errorf("%q: want at most 100 of A-Z a-z 0-9 . _ -", c.KafkaTopicPrefix))
	}
	if c.DBMaxConns < 0 || c.DBMaxConns > 1000 {
		bad("DB_MAX_CONNS", fmt.Errorf("%d is not in 0..1000 (0: pgx's default, max(4, CPUs))", c.DBMaxConns))
	}
	if c.ConsumerParallelism < 0 || c.ConsumerParallelism > 256 {
		bad("CONSUMER_PARALLELISM", fmt.Errorf("%d is not in 0..256 (0: the consumer's default)", c.ConsumerParallelism))
	}
	if c.ConsumerLinger < 0 || c.ConsumerLinger > time.Second {
		bad("CONSUMER_LINGER", fmt.Errorf("%s is not in 0s..1s", c.ConsumerLinger))
	}
	if c.InboxRetention < 0 || (c.InboxRetention > 0 && c.InboxRetention < time.Hour) {
		bad("INBOX_RETENTION", fmt.Errorf("%s: want 0 (keep every row) or at least 1h", c.InboxRetention))
	}
	if c.ShutdownTimeout <= 0 {
		bad("SHUTDOWN_TIMEOUT", fmt.Errorf("%s is not a positive duration", c.ShutdownTimeout))
	}
	if c.ShutdownDrainDelay < 0 || c.ShutdownDrainDelay > MaxShutdownDrainDelay {
		bad("SHUTDOWN_DRAIN_DELAY", fmt.Errorf("%s is not in 0s..%s (0: none)", c.ShutdownDrainDelay, MaxShutdownDrainDelay))
	}
	if err := checkGOGC(c.GOGC); err != nil {
		bad("GOGC", err)
	}
	if err := tracing.CheckEndpoint(c.TracingEndpoint); err != nil {
		bad(tracing.EndpointVar, err)
	}
	if err := tracing.CheckTracesEndpoint(c.TracesEndpoint); err != nil {
		bad(tracing.TracesEndpointVar, err)
	}
	return errors.Join(errs...)
}

// TrustedProxies are HTTP_TRUSTED_PROXIES as networks: an address is a
// network of its own (/32, /128). Entries Validate refuses are left out.
func (c Common) TrustedProxies() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range c.HTTPTrustedProxies {
		if p, err := parseProxy(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// parseProxy reads one HTTP_TRUSTED_PROXIES entry: an IP address or a
// CIDR block.
func parseProxy(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.WithZone("").Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// checkProxy accepts an HTTP_TRUSTED_PROXIES entry.
func checkProxy(s string) error {
	if _, err := parseProxy(s); err != nil {
		return fmt.Errorf("%q is not an IP address or a CIDR block (like 10.0.0.7 or 10.0.0.0/8)", s)
	}
	return nil
}

// checkList reports the problems of a comma-separated list's entries,
// each problem once: "k1:9092,," has two empty entries, one mistake
// (said twice, it read as a stutter). An empty entry is a stray comma;
// check judges the others, and what names them.
func checkList(entries []string, what string, check func(string) error) error {
	var problems []string
	for _, e := range entries {
		msg := ""
		if e == "" {
			msg = EmptyEntry(what)
		} else if err := check(e); err != nil {
			msg = err.Error()
		}
		if msg != "" && !slices.Contains(problems, msg) {
			problems = append(problems, msg)
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// checkGOGC accepts what the runtime's readGOGC does, "off" or an
// integer that fits 32 bits, but for a negative integer: the runtime
// turns collection off for one as for "off", and a sign typed by mistake
// (GOGC=-5) would run the service without a collector until it ran out
// of memory.
func checkGOGC(s string) error {
	if s == "" || s == "off" {
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return fmt.Errorf("%q is not a percentage like 100, or off (the Go runtime would use 100)", s)
	}
	if n < 0 {
		return fmt.Errorf("%q is negative, which turns the garbage collector off: write off if that is meant", s)
	}
	return nil
}

// EmptyEntry is the problem of an empty entry in a comma-separated list
// of what (a stray comma, or the list itself only commas).
func EmptyEntry(what string) string {
	return "an empty entry (a stray comma?): want " + what + ", comma-separated"
}

// checkHostPort accepts host:port with a numeric port; a broker needs a
// host and a port above zero, a listen address may leave the host empty
// and use port 0 (any free port).
func checkHostPort(s string, broker bool) error {
	notHostPort := fmt.Errorf("%q is not host:port", MaskURL(s))
	host, port, err := net.SplitHostPort(s)
	if err != nil || strings.ContainsAny(host, " \t\r\n") || (broker && host == "") {
		return notHostPort
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 || (broker && n == 0) {
		return fmt.Errorf("%q is not host:port (port %q is not a number in 1..65535)", MaskURL(s), port)
	}
	return nil
}

// checkDatabaseURL accepts what pgx accepts, in URL form. Messages never
// show the password.
func checkDatabaseURL(s string) error {
	if s == "" {
		return errMissing
	}
	// url.Parse's errors quote the input, password included: say only
	// what shape is expected.
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return errors.New("is not a URL like postgres://user:password@host:5432/dbname")
	}
	if _, err := pgconn.ParseConfig(s); err != nil {
		msg := err.Error()
		// pgx prefixes its own (best-effort redacted) copy of the string.
		if _, after, ok := strings.Cut(msg, "`: "); ok {
			msg = after
		}
		return fmt.Errorf("%q is not a valid PostgreSQL URL: %s", maskSecrets(s), msg)
	}
	return nil
}

// CheckBaseURL accepts the base URL of an HTTP service, which paths are
// put after: http:// or https://, a host, and no query or fragment (both
// would end up before the path). Its message masks a password (MaskURL).
func CheckBaseURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q is not a base URL: want http:// or https://, a host, and no query or fragment", MaskURL(s))
	}
	return nil
}
