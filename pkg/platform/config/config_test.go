package config

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shopflow/shopflow/pkg/platform/kafkasec"
)

// serviceConfig is what a service's configuration looks like.
type serviceConfig struct {
	Common
	CaptureDelay time.Duration     `env:"PAYMENT_CAPTURE_DELAY" envDefault:"1s"`
	MaxAmount    int64             `env:"PAYMENT_MAX_AMOUNT" envDefault:"1000000"`
	APIKey       string            `env:"PAYMENT_API_KEY" secret:"true"`
	Peers        map[string]string `env:"OPS_PEERS" envSeparator:"," envKeyValSeparator:"="`
}

// Validate adds a cross-field rule; Common's checks must still run.
func (c serviceConfig) Validate() error {
	if c.MaxAmount <= 0 {
		return &VarError{Var: "PAYMENT_MAX_AMOUNT", Err: errors.New("must be positive")}
	}
	return nil
}

// onlyCommon gets Common.Validate by promotion.
type onlyCommon struct {
	Common
}

const goodURL = "postgres://shop:s3cret@127.0.0.1:5432/shop?sslmode=disable"

func TestLoad(t *testing.T) {
	t.Parallel()
	base := map[string]string{"DATABASE_URL": goodURL}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name     string
		environ  map[string]string
		defaults []string // name, value pairs for WithDefault
		want     func(t *testing.T, c serviceConfig)
		wantErrs []string // exact lines of the joined error
	}{
		{
			name:     "defaults",
			environ:  base,
			defaults: []string{"HTTP_ADDR", ":8081"},
			want: func(t *testing.T, c serviceConfig) {
				want := Common{DatabaseURL: goodURL, KafkaBrokers: []string{"127.0.0.1:9092"},
					HTTPAddr: ":8081", HTTPRequestTimeout: 25 * time.Second, LogLevel: "info", ShutdownTimeout: 20 * time.Second, DBMaxConns: 10, ConsumerParallelism: 4,
					ConsumerLinger: 20 * time.Millisecond, InboxRetention: 21 * 24 * time.Hour, GOGC: "400"}
				if !reflect.DeepEqual(c.Common, want) {
					t.Errorf("Common = %+v, want %+v", c.Common, want)
				}
				if c.CaptureDelay != time.Second || c.MaxAmount != 1000000 {
					t.Errorf("service fields = %v, %v", c.CaptureDelay, c.MaxAmount)
				}
			},
		},
		{
			name: "environment beats defaults",
			environ: with("KAFKA_BROKERS", "k1:9092,k2:9093", "HTTP_ADDR", "127.0.0.1:0",
				"LOG_LEVEL", "debug", "SHUTDOWN_TIMEOUT", "5s", "PAYMENT_API_KEY", "k"),
			defaults: []string{"HTTP_ADDR", ":8081"},
			want: func(t *testing.T, c serviceConfig) {
				if !reflect.DeepEqual(c.KafkaBrokers, []string{"k1:9092", "k2:9093"}) || c.HTTPAddr != "127.0.0.1:0" ||
					c.LogLevel != "debug" || c.ShutdownTimeout != 5*time.Second || c.APIKey != "k" {
					t.Errorf("got %+v", c)
				}
			},
		},
		{
			name:     "empty variable takes the default",
			environ:  with("HTTP_ADDR", "", "KAFKA_BROKERS", ""),
			defaults: []string{"HTTP_ADDR", ":8080"},
			want: func(t *testing.T, c serviceConfig) {
				if c.HTTPAddr != ":8080" || !reflect.DeepEqual(c.KafkaBrokers, []string{"127.0.0.1:9092"}) {
					t.Errorf("got %+v", c)
				}
			},
		},
		{
			name:     "caller default for DATABASE_URL",
			environ:  map[string]string{"HTTP_ADDR": ":1"},
			defaults: []string{"DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"},
			want: func(t *testing.T, c serviceConfig) {
				if c.DatabaseURL != "postgres://postgres@127.0.0.1:5432/postgres" {
					t.Errorf("DatabaseURL = %q", c.DatabaseURL)
				}
			},
		},
		{
			name:     "missing variables are all reported",
			environ:  map[string]string{"KAFKA_BROKERS": ","},
			wantErrs: []string{"config: DATABASE_URL: missing", `config: KAFKA_BROKERS: an empty entry (a stray comma?): want host:port, comma-separated`, "config: HTTP_ADDR: missing"},
		},
		{
			name: "every malformed value, one line each, in declaration order",
			environ: with("HTTP_ADDR", "abc", "KAFKA_BROKERS", "k1:9092,k2,k3:x", "LOG_LEVEL", "loud",
				"SHUTDOWN_TIMEOUT", "soon", "INBOX_RETENTION", "14d", "PAYMENT_MAX_AMOUNT", "lots", "DATABASE_URL", "mysql://u:pw@h/db",
				"GOGC", "abc", "OTEL_EXPORTER_OTLP_ENDPOINT", "::::"),
			wantErrs: []string{
				"config: DATABASE_URL: is not a URL like postgres://user:password@host:5432/dbname",
				`config: KAFKA_BROKERS: "k2" is not host:port; "k3:x" is not host:port (port "x" is not a number in 1..65535)`,
				`config: HTTP_ADDR: "abc" is not host:port`,
				`config: LOG_LEVEL: "loud" is not one of debug, info, warn, error`,
				`config: SHUTDOWN_TIMEOUT: "soon" is not a valid duration (like 20s or 1m30s)`,
				`config: INBOX_RETENTION: "14d" is not a valid duration (like 20s or 1m30s)`,
				`config: GOGC: "abc" is not a percentage like 100, or off (the Go runtime would use 100)`,
				`config: OTEL_EXPORTER_OTLP_ENDPOINT: "::::" is not a URL like http://otel-collector:4318 (http or https, a host, optionally a port and a base path)`,
				`config: PAYMENT_MAX_AMOUNT: "lots" is not a valid integer`,
			},
		},
		{
			name:     "a map that does not parse is described by its separators, not its Go type",
			environ:  with("OPS_PEERS", "garbage"),
			defaults: []string{"HTTP_ADDR", ":8081"},
			wantErrs: []string{`config: OPS_PEERS: "garbage" is not a valid list of key=value pairs separated by ","`},
		},
		{
			name:     "Kafka security settings are checked, naming the variable",
			environ:  with("KAFKA_SASL_MECHANISM", "SCRAM-SHA-1"),
			defaults: []string{"HTTP_ADDR", ":8081"},
			wantErrs: []string{`config: KAFKA_SASL_MECHANISM: "SCRAM-SHA-1" is not one of SCRAM-SHA-256, SCRAM-SHA-512, PLAIN`},
		},
		{
			name:     "service Validate runs beside Common's",
			environ:  with("PAYMENT_MAX_AMOUNT", "-1", "SHUTDOWN_TIMEOUT", "0s"),
			defaults: []string{"HTTP_ADDR", ":8081"},
			wantErrs: []string{
				"config: SHUTDOWN_TIMEOUT: 0s is not a positive duration",
				"config: PAYMENT_MAX_AMOUNT: must be positive",
			},
		},
		{
			name:     "bad DATABASE_URL parameters are reported without the password",
			environ:  with("DATABASE_URL", "postgres://shop:s3cret@h:5432/db?sslmode=sometimes"),
			defaults: []string{"HTTP_ADDR", ":8081"},
			wantErrs: []string{`config: DATABASE_URL: "postgres://shop:***@h:5432/db?sslmode=sometimes" is not a valid PostgreSQL URL: failed to configure TLS (sslmode is invalid)`},
		},
		{
			name:     "unparseable DATABASE_URL does not echo it",
			environ:  with("DATABASE_URL", "postgres://shop:s3%zzcret@h/db"),
			defaults: []string{"HTTP_ADDR", ":8081"},
			wantErrs: []string{"config: DATABASE_URL: is not a URL like postgres://user:password@host:5432/dbname"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := []Option{WithEnvironment(tt.environ)}
			for i := 0; i < len(tt.defaults); i += 2 {
				opts = append(opts, WithDefault(tt.defaults[i], tt.defaults[i+1]))
			}
			got, err := Load[serviceConfig](opts...)
			if tt.wantErrs != nil {
				if err == nil {
					t.Fatalf("Load succeeded with %+v, want errors", got)
				}
				if lines := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(lines, tt.wantErrs) {
					t.Fatalf("Load error lines:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(tt.wantErrs, "\n"))
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error leaks the password: %v", err)
				}
				var ve *VarError
				if !errors.As(err, &ve) {
					t.Errorf("error %v holds no *VarError", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			tt.want(t, got)
		})
	}
}

func TestLoadPromotedValidateReportsOnce(t *testing.T) {
	t.Parallel()
	_, err := Load[onlyCommon](WithEnvironment(map[string]string{"DATABASE_URL": goodURL, "HTTP_ADDR": "nope"}))
	want := `config: HTTP_ADDR: "nope" is not host:port`
	if err == nil || err.Error() != want {
		t.Fatalf("Load error = %v, want %q", err, want)
	}
}

func TestLoadSecretValueNotEchoed(t *testing.T) {
	t.Parallel()
	type cfg struct {
		Token int `env:"TOKEN" secret:"true"`
	}
	_, err := Load[cfg](WithEnvironment(map[string]string{"TOKEN": "hunter2"}))
	want := "config: TOKEN: the value is not a valid integer"
	if err == nil || err.Error() != want {
		t.Fatalf("Load error = %v, want %q", err, want)
	}
}

// A number too large for its field is said to be out of range, with the
// range: "not a valid integer" sent people looking for a typo.
func TestLoadNumberOutOfRange(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ value, want string }{
		{"99999999999", `config: DB_MAX_CONNS: "99999999999" is out of range (-2147483648..2147483647)`},
		{"-99999999999", `config: DB_MAX_CONNS: "-99999999999" is out of range (-2147483648..2147483647)`},
		{"12x", `config: DB_MAX_CONNS: "12x" is not a valid integer`},
	} {
		_, err := Load[onlyCommon](WithEnvironment(map[string]string{"DATABASE_URL": goodURL, "HTTP_ADDR": ":0", "DB_MAX_CONNS": tc.value}))
		if err == nil || err.Error() != tc.want {
			t.Errorf("DB_MAX_CONNS=%s: Load error = %v, want %q", tc.value, err, tc.want)
		}
	}
	type small struct {
		Port uint16 `env:"PORT"`
	}
	_, err := Load[small](WithEnvironment(map[string]string{"PORT": "70000"}))
	if want := `config: PORT: "70000" is out of range (0..65535)`; err == nil || err.Error() != want {
		t.Errorf("PORT=70000: Load error = %v, want %q", err, want)
	}
}

func TestLoadRequiredTag(t *testing.T) {
	t.Parallel()
	type cfg struct {
		Nested struct {
			Name string `env:"NAME,required"`
		} `envPrefix:"SVC_"`
		Note string `env:"NOTE,notEmpty"`
	}
	_, err := Load[cfg](WithEnvironment(map[string]string{"NOTE": ""}))
	want := "config: SVC_NAME: missing\nconfig: NOTE: missing"
	if err == nil || err.Error() != want {
		t.Fatalf("Load error = %v, want %q", err, want)
	}
}

func TestLoadNotAStruct(t *testing.T) {
	t.Parallel()
	if _, err := Load[string](); err == nil {
		t.Fatal("Load[string] succeeded")
	}
}

func TestCommonValidate(t *testing.T) {
	t.Parallel()
	ok := Common{DatabaseURL: goodURL, KafkaBrokers: []string{"127.0.0.1:9092"}, HTTPAddr: ":8080",
		LogLevel: "info", ShutdownTimeout: time.Second}
	tests := []struct {
		name    string
		change  func(c *Common)
		wantErr string
	}{
		{name: "valid", change: func(*Common) {}},
		{name: "postgresql scheme", change: func(c *Common) { c.DatabaseURL = "postgresql://u@h/db" }},
		{name: "unix socket", change: func(c *Common) { c.DatabaseURL = "postgres:///db?host=/var/run/postgresql" }},
		{name: "ipv6 broker", change: func(c *Common) { c.KafkaBrokers = []string{"[::1]:9092"} }},
		{name: "listen on any free port", change: func(c *Common) { c.HTTPAddr = "127.0.0.1:0" }},
		{name: "broker port zero", change: func(c *Common) { c.KafkaBrokers = []string{"h:0"} },
			wantErr: `config: KAFKA_BROKERS: "h:0" is not host:port (port "0" is not a number in 1..65535)`},
		{name: "broker without host", change: func(c *Common) { c.KafkaBrokers = []string{":9092"} },
			wantErr: `config: KAFKA_BROKERS: ":9092" is not host:port`},
		{name: "broker with space", change: func(c *Common) { c.KafkaBrokers = []string{" h:9092"} },
			wantErr: `config: KAFKA_BROKERS: " h:9092" is not host:port`},
		{name: "no brokers", change: func(c *Common) { c.KafkaBrokers = nil }, wantErr: "config: KAFKA_BROKERS: missing"},
		{name: "http port too big", change: func(c *Common) { c.HTTPAddr = ":70000" },
			wantErr: `config: HTTP_ADDR: ":70000" is not host:port (port "70000" is not a number in 1..65535)`},
		{name: "no shutdown timeout", change: func(c *Common) { c.ShutdownTimeout = 0 },
			wantErr: "config: SHUTDOWN_TIMEOUT: 0s is not a positive duration"},
		{name: "trusted proxies", change: func(c *Common) { c.HTTPTrustedProxies = []string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::1"} }},
		{name: "trusted proxy not an address", change: func(c *Common) { c.HTTPTrustedProxies = []string{"10.0.0.0/8", "proxy.internal", "10.0.0.300"} },
			wantErr: `config: HTTP_TRUSTED_PROXIES: "proxy.internal" is not an IP address or a CIDR block (like 10.0.0.7 or 10.0.0.0/8); ` +
				`"10.0.0.300" is not an IP address or a CIDR block (like 10.0.0.7 or 10.0.0.0/8)`},
		{name: "trusted proxy with a bad prefix length", change: func(c *Common) { c.HTTPTrustedProxies = []string{"10.0.0.0/33"} },
			wantErr: `config: HTTP_TRUSTED_PROXIES: "10.0.0.0/33" is not an IP address or a CIDR block (like 10.0.0.7 or 10.0.0.0/8)`},
		{name: "trusted proxies with a stray comma", change: func(c *Common) { c.HTTPTrustedProxies = []string{"10.0.0.1", "", ""} },
			wantErr: "config: HTTP_TRUSTED_PROXIES: an empty entry (a stray comma?): want IP addresses or CIDR blocks, comma-separated"},
		{name: "allowed hosts", change: func(c *Common) { c.HTTPAllowedHosts = []string{"localhost", "127.0.0.1", "::1", "*.example.com"} }},
		{name: "allowed hosts with a port and a URL", change: func(c *Common) { c.HTTPAllowedHosts = []string{"localhost:8080", "a.example", "http://a.example"} },
			wantErr: `config: HTTP_ALLOWED_HOSTS: "localhost:8080" has a port (8080): list the host alone; every port is allowed; ` +
				`"http://a.example" is not a host name: leave out the scheme and the path`},
		{name: "allowed hosts with a stray comma", change: func(c *Common) { c.HTTPAllowedHosts = []string{"localhost", ""} },
			wantErr: "config: HTTP_ALLOWED_HOSTS: an empty entry (a stray comma?): want host names, IP addresses or *.suffix wildcards, comma-separated"},
		{name: "allowed hosts a bare wildcard", change: func(c *Common) { c.HTTPAllowedHosts = []string{"*"} },
			wantErr: `config: HTTP_ALLOWED_HOSTS: "*" alone: leave the list empty to allow every host`},
		{name: "drain delay", change: func(c *Common) { c.ShutdownDrainDelay = 15 * time.Second }},
		{name: "negative drain delay", change: func(c *Common) { c.ShutdownDrainDelay = -time.Second },
			wantErr: "config: SHUTDOWN_DRAIN_DELAY: -1s is not in 0s..5m0s (0: none)"},
		{name: "drain delay too long", change: func(c *Common) { c.ShutdownDrainDelay = time.Hour },
			wantErr: "config: SHUTDOWN_DRAIN_DELAY: 1h0m0s is not in 0s..5m0s (0: none)"},
		{name: "request timeout", change: func(c *Common) { c.HTTPRequestTimeout = 10 * time.Second }},
		{name: "request timeout at the write timeout", change: func(c *Common) { c.HTTPRequestTimeout = 30 * time.Second },
			wantErr: "config: HTTP_REQUEST_TIMEOUT: 30s is not in 0s..25s (below the HTTP server's 30s write timeout, leaving 5s to answer; 0: 25s)"},
		{name: "negative request timeout", change: func(c *Common) { c.HTTPRequestTimeout = -time.Second },
			wantErr: "config: HTTP_REQUEST_TIMEOUT: -1s is not in 0s..25s (below the HTTP server's 30s write timeout, leaving 5s to answer; 0: 25s)"},
		{name: "topic prefix", change: func(c *Common) { c.KafkaTopicPrefix = "staging-2." }},
		{name: "topic prefix with a slash", change: func(c *Common) { c.KafkaTopicPrefix = "a/b" },
			wantErr: `config: KAFKA_TOPIC_PREFIX: "a/b": want at most 100 of A-Z a-z 0-9 . _ -`},
		{name: "pool too big", change: func(c *Common) { c.DBMaxConns = 5000 },
			wantErr: "config: DB_MAX_CONNS: 5000 is not in 0..1000 (0: pgx's default, max(4, CPUs))"},
		{name: "negative parallelism", change: func(c *Common) { c.ConsumerParallelism = -1 },
			wantErr: "config: CONSUMER_PARALLELISM: -1 is not in 0..256 (0: the consumer's default)"},
		{name: "no linger", change: func(c *Common) { c.ConsumerLinger = 0 }},
		{name: "linger too long", change: func(c *Common) { c.ConsumerLinger = 2 * time.Second },
			wantErr: "config: CONSUMER_LINGER: 2s is not in 0s..1s"},
		{name: "negative linger", change: func(c *Common) { c.ConsumerLinger = -time.Millisecond },
			wantErr: "config: CONSUMER_LINGER: -1ms is not in 0s..1s"},
		{name: "inbox kept forever", change: func(c *Common) { c.InboxRetention = 0 }},
		{name: "inbox kept a week", change: func(c *Common) { c.InboxRetention = 7 * 24 * time.Hour }},
		{name: "inbox retention too short", change: func(c *Common) { c.InboxRetention = 30 * time.Minute },
			wantErr: "config: INBOX_RETENTION: 30m0s: want 0 (keep every row) or at least 1h"},
		{name: "negative inbox retention", change: func(c *Common) { c.InboxRetention = -time.Hour },
			wantErr: "config: INBOX_RETENTION: -1h0m0s: want 0 (keep every row) or at least 1h"},
		{name: "GOGC", change: func(c *Common) { c.GOGC = "200" }},
		{name: "GOGC off", change: func(c *Common) { c.GOGC = "off" }},
		{name: "GOGC that the runtime would ignore", change: func(c *Common) { c.GOGC = "abc" },
			wantErr: `config: GOGC: "abc" is not a percentage like 100, or off (the Go runtime would use 100)`},
		{name: "GOGC with a percent sign", change: func(c *Common) { c.GOGC = "200%" },
			wantErr: `config: GOGC: "200%" is not a percentage like 100, or off (the Go runtime would use 100)`},
		// The runtime turns the collector off for any negative value: a
		// sign typed by mistake (GOGC=-5 for 5) ran without a collector.
		{name: "GOGC negative", change: func(c *Common) { c.GOGC = "-5" },
			wantErr: `config: GOGC: "-5" is negative, which turns the garbage collector off: write off if that is meant`},
		{name: "GOGC zero", change: func(c *Common) { c.GOGC = "0" }},
		{name: "GOGC off in capitals", change: func(c *Common) { c.GOGC = "OFF" },
			wantErr: `config: GOGC: "OFF" is not a percentage like 100, or off (the Go runtime would use 100)`},
		{name: "tracing endpoint", change: func(c *Common) { c.TracingEndpoint = "http://otel-collector:4318" }},
		{name: "tracing endpoint that is no URL", change: func(c *Common) { c.TracingEndpoint = "::::" },
			wantErr: `config: OTEL_EXPORTER_OTLP_ENDPOINT: "::::" is not a URL like http://otel-collector:4318 (http or https, a host, optionally a port and a base path)`},
		{name: "tracing endpoint without a scheme", change: func(c *Common) { c.TracingEndpoint = "127.0.0.1:4318" },
			wantErr: `config: OTEL_EXPORTER_OTLP_ENDPOINT: "127.0.0.1:4318" has no scheme: the exporter would not send to it; write http://127.0.0.1:4318 (or https://)`},
		{name: "traces endpoint", change: func(c *Common) { c.TracesEndpoint = "http://otel-collector:4318/v1/traces" }},
		{name: "traces endpoint without a scheme", change: func(c *Common) { c.TracesEndpoint = "127.0.0.1:4318" },
			wantErr: `config: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "127.0.0.1:4318" has no scheme: the exporter would not send to it; write http://127.0.0.1:4318 (or https://)`},
		{name: "traces endpoint with a password", change: func(c *Common) { c.TracesEndpoint = "http://u:s3cret@collector:4318/v1/traces" },
			wantErr: `config: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: the exporter takes no user:password@ in the URL (and the value is not shown here); send credentials in OTEL_EXPORTER_OTLP_HEADERS`},
		{name: "traces endpoint with a query", change: func(c *Common) { c.TracesEndpoint = "http://collector:4318/v1/traces?key=s3cret" },
			wantErr: `config: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: the exporter ignores a query or fragment (the value is not shown here); want a URL like http://otel-collector:4318/v1/traces (http or https, a host, optionally a port, and the full path)`},
		{name: "empty level", change: func(c *Common) { c.LogLevel = "" },
			wantErr: `config: LOG_LEVEL: "" is not one of debug, info, warn, error`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := ok
			c.KafkaBrokers = append([]string(nil), ok.KafkaBrokers...)
			tt.change(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("Validate error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestTrustedProxies: HTTP_TRUSTED_PROXIES's entries as the networks
// the HTTP server trusts: an address is a network of its own, an IPv4
// address written in IPv6 is the IPv4 one (as the client IP middleware
// folds the peer's), a block is masked.
func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	c := Common{HTTPTrustedProxies: []string{"192.0.2.7", "10.1.2.3/8", "::ffff:198.51.100.1", "2001:db8::1"}}
	var got []string
	for _, p := range c.TrustedProxies() {
		got = append(got, p.String())
	}
	if want := []string{"192.0.2.7/32", "10.0.0.0/8", "198.51.100.1/32", "2001:db8::1/128"}; !reflect.DeepEqual(got, want) {
		t.Errorf("TrustedProxies() = %v, want %v", got, want)
	}
}

func TestRedacted(t *testing.T) {
	t.Parallel()
	cfg := serviceConfig{
		Common: Common{
			DatabaseURL:     "postgres://shop:s3cret@db:5432/shop?sslmode=disable&password=other",
			KafkaBrokers:    []string{"k1:9092"},
			HTTPAddr:        ":8081",
			LogLevel:        "info",
			ShutdownTimeout: 20 * time.Second,
			Kafka:           kafkasec.Config{SASLMechanism: "SCRAM-SHA-256", SASLUsername: "svc", SASLPassword: "kafka-s3cret"},
		},
		CaptureDelay: time.Second,
		MaxAmount:    5,
		APIKey:       "sk_live_123",
		Peers:        map[string]string{"payment": "http://ops:s3cret@payment:8081", "inventory": "http://inventory:8082"},
	}
	got := Redacted(&cfg)
	want := map[string]any{
		"DATABASE_URL":                       "postgres://shop:***@db:5432/shop?sslmode=disable&password=***",
		"KAFKA_BROKERS":                      []string{"k1:9092"},
		"HTTP_ADDR":                          ":8081",
		"HTTP_REQUEST_TIMEOUT":               "0s",
		"HTTP_TRUSTED_PROXIES":               []string{},
		"HTTP_ALLOWED_HOSTS":                 []string{},
		"LOG_LEVEL":                          "info",
		"SHUTDOWN_TIMEOUT":                   "20s",
		"SHUTDOWN_DRAIN_DELAY":               "0s",
		"KAFKA_TOPIC_PREFIX":                 "",
		"DB_MAX_CONNS":                       int32(0),
		"CONSUMER_PARALLELISM":               0,
		"CONSUMER_LINGER":                    "0s",
		"INBOX_RETENTION":                    "0s",
		"KAFKA_SASL_MECHANISM":               "SCRAM-SHA-256",
		"KAFKA_SASL_USERNAME":                "svc",
		"KAFKA_SASL_PASSWORD":                "***",
		"KAFKA_TLS":                          false,
		"KAFKA_TLS_CA_FILE":                  "",
		"KAFKA_TLS_CERT_FILE":                "",
		"KAFKA_TLS_KEY_FILE":                 "",
		"KAFKA_TLS_SERVER_NAME":              "",
		"KAFKA_TLS_INSECURE_SKIP_VERIFY":     false,
		"OTEL_EXPORTER_OTLP_ENDPOINT":        "",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "",
		"GOGC":                               "",
		"PAYMENT_CAPTURE_DELAY":              "1s",
		"PAYMENT_MAX_AMOUNT":                 int64(5),
		"PAYMENT_API_KEY":                    "***",
		"OPS_PEERS":                          map[string]string{"payment": "http://ops:***@payment:8081", "inventory": "http://inventory:8082"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Redacted =\n%#v\nwant\n%#v", got, want)
	}
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"s3cret", "other", "sk_live_123", "kafka-s3cret"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("Redacted JSON %s leaks %q", b, secret)
		}
	}
	cfg.APIKey = ""
	if got := Redacted(cfg)["PAYMENT_API_KEY"]; got != "" {
		t.Errorf("unset secret = %q, want empty", got)
	}
}

func TestMaskSecrets(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"postgres://u:p@h/db", "postgres://u:***@h/db"},
		{"postgres://u@h/db", "postgres://u@h/db"},
		{"postgres://h/db?sslpassword=x&sslmode=require", "postgres://h/db?sslpassword=***&sslmode=require"},
		{"host=h user=u password=secret dbname=d", "host=h user=u password=*** dbname=d"},
		{"host=h password='se cret' dbname=d", "host=h password=*** dbname=d"},
		{"info", "info"},
		{":8080", ":8080"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			if got := maskSecrets(tt.in); got != tt.want {
				t.Errorf("maskSecrets(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestURLMessagesMaskCredentials: a config error about a URL-valued
// variable (a base URL, a broker, a listen address) never shows a
// password, whether the value parses or not; the error still shows the
// rest, so the mistake can be found. Before, "http://u:SECRETPW@inv:8082?x=1"
// was quoted whole.
func TestURLMessagesMaskCredentials(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{"http://u:SECRETPW@inv:8082?x=1", `"http://u:***@inv:8082?x=1" is not a base URL`},
		{"http://u:SECRETPW@ship:8083/#f", `"http://u:***@ship:8083/#f" is not a base URL`},
		{"ftp://u:SECRETPW@pay:8081", `"ftp://u:***@pay:8081" is not a base URL`},
		{"http://u:SECRET PW@h:1?q", `"http://***@h:1?q" is not a base URL`}, // does not parse
		{"u:SECRETPW@inv:8082", `"***@inv:8082" is not a base URL`},
		{"http://h:1/?password=SECRETPW", `"http://h:1/?password=***" is not a base URL`},
	} {
		err := CheckBaseURL(c.in)
		if err == nil || strings.Contains(err.Error(), "SECRET") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckBaseURL(%q) = %v; want %q, no password", c.in, err, c.want)
		}
	}
	bad := Common{DatabaseURL: goodURL, KafkaBrokers: []string{"u:SECRETPW@k:9092", "u:SECRETPW@k:port"},
		HTTPAddr: "u:SECRETPW@:8080", LogLevel: "info", ShutdownTimeout: time.Second,
		TracingEndpoint: "otel:SECRETPW", TracesEndpoint: "u:SECRETPW@otel:4318"}
	err := bad.Validate()
	for _, v := range []string{"KAFKA_BROKERS", "HTTP_ADDR", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		if err == nil || !strings.Contains(err.Error(), "config: "+v+": ") {
			t.Errorf("Validate = %v; want an error naming %s", err, v)
		}
	}
	if err != nil && strings.Contains(err.Error(), "SECRET") {
		t.Errorf("Validate's error shows a password:\n%v", err)
	}
}

func TestMaskURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"http://opsuser:PEERSECRET@127.0.0.1:38383": "http://opsuser:***@127.0.0.1:38383",
		"http://opsuser@127.0.0.1:38383":            "http://opsuser@127.0.0.1:38383",
		"http://127.0.0.1:8081":                     "http://127.0.0.1:8081",
		"u:pw@k:9092":                               "***@k:9092",
		"http://u:p w@h/x@y":                        "http://***@h/x@y",
		"k:9092":                                    "k:9092",
		"host=db user=u password=secret dbname=d":   "host=db user=u password=*** dbname=d",
		"host=db password='s e c' sslpassword=x":    "host=db password=*** sslpassword=***",
		"host=db user=u password=p@ssw0rd dbname=d": "host=db user=u password=*** dbname=d",
		"": "",
	} {
		if got := MaskURL(in); got != want {
			t.Errorf("MaskURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// Variables lists what Load reads, in order, with the defaults Load would
// apply: WithDefault's over the tags, none for a variable without one.
func TestVariables(t *testing.T) {
	vars := Variables[serviceConfig](WithDefault("HTTP_ADDR", ":8081"), WithDefault("PAYMENT_CAPTURE_DELAY", "2s"))
	got := map[string]string{}
	var names []string
	for _, v := range vars {
		got[v.Name] = v.Default
		names = append(names, v.Name)
	}
	for name, want := range map[string]string{"DATABASE_URL": "", "HTTP_ADDR": ":8081", "KAFKA_BROKERS": "127.0.0.1:9092",
		"PAYMENT_CAPTURE_DELAY": "2s", "PAYMENT_MAX_AMOUNT": "1000000", "PAYMENT_API_KEY": "", "KAFKA_SASL_MECHANISM": ""} {
		if d, ok := got[name]; !ok || d != want {
			t.Errorf("%s: listed %v, default %q; want %q", name, ok, d, want)
		}
	}
	if names[0] != "DATABASE_URL" || names[len(names)-1] != "OPS_PEERS" {
		t.Errorf("order %v, want declaration order (Common first)", names)
	}
	if Variables[int]() != nil {
		t.Error("Variables of a non-struct, want nil")
	}
}
