// Package kafkasec turns the Kafka security settings of the environment
// (SASL and TLS) into the two things kafka-go connects with: a
// *kafka.Transport, which kafka.Writer and kafka.Client use, and a
// *kafka.Dialer, which kafka.Reader uses (kafka-go's reader predates the
// Transport and still dials through a Dialer).
//
// A service reads Config once at start-up (as a field of its
// configuration, say Kafka), builds one Transport and one Dialer from it
// and hands the same ones to every Kafka client it runs (outbox relay,
// inbox reader and DLQ writer, topic creation), so every connection
// authenticates and encrypts the same way; Check proves the settings
// against the brokers first, with a message that says what to fix:
//
//	for _, w := range cfg.Kafka.Warnings() { log.Warn(w) }
//	tr, err := cfg.Kafka.Transport()   // error: *VarErrors naming the variables
//	d, err := cfg.Kafka.Dialer()
//	err = cfg.Kafka.Check(ctx, cfg.KafkaBrokers)   // also the readiness check
//
// With nothing set (the default) both connect in plain text without
// authentication, as the embedded development broker expects. The
// mechanisms are those Apache Kafka offers over SASL_SSL / SASL_PLAINTEXT
// listeners: SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN; the implementations
// are kafka-go's own (sasl/scram, sasl/plain).
//
// Validation happens before anything is dialled: an unknown mechanism, a
// username without a password, a client certificate without its key, or a
// CA or certificate file that cannot be read or parsed is reported naming
// the variable, so a misconfigured deployment fails at start-up rather
// than as a connection that hangs or is reset later.
package kafkasec

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// The SASL mechanisms KAFKA_SASL_MECHANISM accepts (case-insensitively).
const (
	MechanismPlain       = "PLAIN"
	MechanismSCRAMSHA256 = "SCRAM-SHA-256"
	MechanismSCRAMSHA512 = "SCRAM-SHA-512"
)

// Connection timing shared by the Transport and the Dialer. kafka-go's
// defaults differ between the two (5 s and 10 s dial timeouts) and
// KAFKA-GO.md's rule is to set them explicitly.
const (
	// DialTimeout bounds establishing one connection: TCP connect, the TLS
	// handshake and the SASL exchange together. A broker that accepts
	// the TCP connection but never answers the handshake (a TLS client on
	// a plain-text port, or the reverse) fails within it instead of
	// hanging.
	DialTimeout = 10 * time.Second
	// IdleTimeout closes pooled Transport connections unused this long.
	IdleTimeout = 30 * time.Second
	// MetadataTTL is how long the Transport trusts cached cluster
	// metadata (kafka-go's default, stated).
	MetadataTTL = 6 * time.Second
	// KeepAlive is the TCP keep-alive period of the reader's connections.
	KeepAlive = 30 * time.Second
)

// Config is the Kafka security configuration, read from the environment
// (github.com/caarlos0/env tags, as pkg/platform/config reads them). The
// zero value means plain text without authentication.
type Config struct {
	// SASLMechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty means
	// no SASL authentication.
	SASLMechanism string `env:"KAFKA_SASL_MECHANISM"`
	// SASLUsername is the SASL user; required with a mechanism.
	SASLUsername string `env:"KAFKA_SASL_USERNAME"`
	// SASLPassword is the SASL user's password; required with a mechanism.
	SASLPassword string `env:"KAFKA_SASL_PASSWORD" secret:"true"`
	// TLS connects to the brokers over TLS (Kafka's SSL / SASL_SSL
	// listeners).
	TLS bool `env:"KAFKA_TLS" envDefault:"false"`
	// TLSCAFile is a PEM file of the CA certificates that sign the
	// brokers' certificates; empty means the system's roots.
	TLSCAFile string `env:"KAFKA_TLS_CA_FILE"`
	// TLSCertFile and TLSKeyFile are the PEM client certificate (chain
	// first) and its private key, for brokers that require mutual TLS;
	// both or neither.
	TLSCertFile string `env:"KAFKA_TLS_CERT_FILE"`
	TLSKeyFile  string `env:"KAFKA_TLS_KEY_FILE"`
	// TLSServerName, when set, is the name every broker's certificate is
	// verified against instead of the host dialled (for brokers reached
	// by IP or through a proxy). It applies to all brokers, so their
	// certificates must all carry it.
	TLSServerName string `env:"KAFKA_TLS_SERVER_NAME"`
	// TLSInsecureSkipVerify accepts any broker certificate. For a test
	// cluster with a throwaway certificate only: it gives up the broker's
	// identity, and with it the secrecy of the SASL password and the
	// data. Warnings reports it.
	TLSInsecureSkipVerify bool `env:"KAFKA_TLS_INSECURE_SKIP_VERIFY" envDefault:"false"`
}

// VarError is a problem with one environment variable. It has the shape
// and message of config.VarError ("config: VAR: problem"); it is a type of
// its own because pkg/platform/config embeds this package's Config, so
// this package cannot import config.
type VarError struct {
	// Var is the variable's name, e.g. "KAFKA_TLS_CA_FILE".
	Var string
	// Err says what is wrong with it.
	Err error
}

// Error reads "config: VAR: problem".
func (e *VarError) Error() string { return "config: " + e.Var + ": " + e.Err.Error() }

// Unwrap returns the underlying problem.
func (e *VarError) Unwrap() error { return e.Err }

// Enabled reports whether any security setting is in effect (SASL or
// TLS), for a start-up log line.
func (c Config) Enabled() bool { return c.TLS || strings.TrimSpace(c.SASLMechanism) != "" }

// Validate checks the settings and reads the CA and client certificate
// files, reporting every problem at once, each a *VarError naming its
// variable. Messages never contain the password.
func (c Config) Validate() error {
	_, _, err := c.build()
	return err
}

// Warnings lists settings that work but weaken security, worded for a
// start-up log at warning level: certificate verification turned off, and
// a PLAIN password sent without TLS.
func (c Config) Warnings() []string {
	var out []string
	if c.TLS && c.TLSInsecureSkipVerify {
		out = append(out, "KAFKA_TLS_INSECURE_SKIP_VERIFY=true: broker certificates are NOT verified; "+
			"anyone on the network path can impersonate the broker and read the SASL credentials and every record")
	}
	if strings.EqualFold(c.SASLMechanism, MechanismPlain) && !c.TLS {
		out = append(out, "KAFKA_SASL_MECHANISM=PLAIN without KAFKA_TLS=true: the password crosses the network in clear text")
	}
	return out
}

// Transport returns a kafka-go Transport (for kafka.Writer and
// kafka.Client) that authenticates and encrypts as configured, with the
// package's timeouts. It is never nil when err is nil, even with security
// off, so callers need no special case (and no typed-nil interface). A
// Transport pools connections: build one per process, share it, and call
// CloseIdleConnections at shutdown.
func (c Config) Transport() (*kafka.Transport, error) {
	mech, tlsCfg, err := c.build()
	if err != nil {
		return nil, err
	}
	return &kafka.Transport{
		Dial:        dialer(mech != nil),
		DialTimeout: DialTimeout,
		IdleTimeout: IdleTimeout,
		MetadataTTL: MetadataTTL,
		TLS:         tlsCfg,
		SASL:        withDeadline(mech),
	}, nil
}

// Dialer returns a kafka-go Dialer (for kafka.ReaderConfig.Dialer) that
// authenticates and encrypts as configured. Like Transport it is never nil
// when err is nil.
func (c Config) Dialer() (*kafka.Dialer, error) {
	mech, tlsCfg, err := c.build()
	if err != nil {
		return nil, err
	}
	return &kafka.Dialer{
		Timeout:       DialTimeout,
		KeepAlive:     KeepAlive,
		DualStack:     true,
		DialFunc:      dialer(mech != nil),
		TLS:           tlsCfg,
		SASLMechanism: withDeadline(mech),
	}, nil
}

// Check connects to the brokers as configured and makes one request that
// needs an authenticated connection (Metadata), returning nil as soon as
// one broker answers. It is meant for start-up, before anything else talks
// to Kafka, and for readiness checks.
//
// Unlike kafka-go's clients, which report a refused login as "unexpected
// EOF" or keep retrying it as "Broker Not Available" when the broker ends
// the connection (as kfake does), Check says which step failed and which
// variables to look at: TLS verification (KAFKA_TLS_CA_FILE,
// KAFKA_TLS_SERVER_NAME), SASL authentication (KAFKA_SASL_USERNAME,
// KAFKA_SASL_PASSWORD), or a listener expecting another protocol
// (KAFKA_TLS, KAFKA_SASL_MECHANISM). The underlying errors stay wrapped:
// errors.Is(err, kafka.SASLAuthenticationFailed) holds for a refused
// login.
//
// An ApiVersions request is no such check: brokers answer it before SASL.
// The brokers are tried at once, each for at most DialTimeout, so one that
// accepts connections but never answers does not use up the time of a
// readiness probe (2 s) while another is fine.
func (c Config) Check(ctx context.Context, brokers []string) error {
	d, err := c.Dialer()
	if err != nil {
		return err
	}
	if len(brokers) == 0 {
		return errors.New("kafka: no broker to check")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // the first answer ends the others' dials
	type result struct {
		i   int
		err error
	}
	results := make(chan result, len(brokers))
	for i, b := range brokers {
		go func() { results <- result{i, c.check(ctx, d, b)} }()
	}
	errs := make([]error, len(brokers))
	for range brokers {
		r := <-results
		if r.err == nil {
			return nil
		}
		errs[r.i] = fmt.Errorf("kafka %s: %w", brokers[r.i], r.err)
	}
	return errors.Join(errs...)
}

func (c Config) check(ctx context.Context, d *kafka.Dialer, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	// d's dial bounds kafka-go's SASL exchange by DialTimeout; a check must
	// also end when ctx does (another broker answered, the probe gave
	// up), and kafka-go does not look at ctx there, so the socket is
	// closed when ctx ends. (kafka-go's own dial context ends with the
	// dial, so the check's ctx is the one watched.)
	dd := *d
	dd.DialFunc = func(dialCtx context.Context, network, address string) (net.Conn, error) {
		conn, err := d.DialFunc(dialCtx, network, address)
		if err != nil {
			return nil, err
		}
		context.AfterFunc(ctx, func() { _ = conn.Close() })
		return conn, nil
	}
	conn, err := dd.DialContext(ctx, "tcp", addr)
	if err == nil {
		deadline, _ := ctx.Deadline()
		_ = conn.SetDeadline(deadline)
		_, err = conn.Brokers()
		_ = conn.Close()
	}
	if err == nil {
		return nil
	}
	// Silence: the socket closed under the exchange as ctx ended, or a
	// deadline (dial's, ctx's: the same instant) ended it first. A TCP
	// connect that timed out is not that; its own error says so.
	var op *net.OpError
	connecting := errors.As(err, &op) && op.Op == "dial"
	timedOut := errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded)
	if ctx.Err() != nil && errors.Is(err, net.ErrClosed) || !connecting && timedOut {
		return fmt.Errorf("no answer in time (connected, then nothing): %w", err)
	}
	var verify *tls.CertificateVerificationError
	switch {
	case errors.Is(err, kafka.SASLAuthenticationFailed):
		return fmt.Errorf("SASL %s authentication as %q refused (check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SASL_MECHANISM): %w",
			strings.ToUpper(c.SASLMechanism), c.SASLUsername, err)
	case errors.As(err, &verify):
		return fmt.Errorf("TLS: the broker's certificate is not trusted (check KAFKA_TLS_CA_FILE, KAFKA_TLS_SERVER_NAME): %w", err)
	case strings.Contains(err.Error(), "remote error: tls:"):
		// A TLS alert from the broker has no exported type.
		return fmt.Errorf("TLS: the broker refused the handshake (a client certificate it requires or rejects? check KAFKA_TLS_CERT_FILE, KAFKA_TLS_KEY_FILE): %w", err)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("the broker closed the connection: does its listener expect %s (check KAFKA_TLS, KAFKA_SASL_MECHANISM)? %w",
			c.expected(), err)
	}
	return err
}

// expected describes the protocol the client speaks, for the message of a
// connection the broker dropped.
func (c Config) expected() string {
	var s string
	if c.TLS {
		s = "TLS"
	} else {
		s = "plain text (no TLS)"
	}
	if m := strings.TrimSpace(c.SASLMechanism); m != "" {
		return s + " with SASL " + strings.ToUpper(m)
	}
	return s + " without SASL"
}

// TLSConfig returns the client TLS configuration, or nil when KAFKA_TLS is
// off. Transport and Dialer use it; it is exported for other TLS clients
// of the same brokers.
func (c Config) TLSConfig() (*tls.Config, error) {
	_, tlsCfg, err := c.build()
	return tlsCfg, err
}

// build validates everything and builds the SASL mechanism and TLS
// configuration in one pass, so Validate checks exactly what Transport and
// Dialer would use.
func (c Config) build() (sasl.Mechanism, *tls.Config, error) {
	var errs []error
	bad := func(name string, err error) { errs = append(errs, &VarError{Var: name, Err: err}) }

	mech := c.mechanism(bad)
	tlsCfg := c.tlsConfig(bad)
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	return mech, tlsCfg, nil
}

func (c Config) mechanism(bad func(string, error)) sasl.Mechanism {
	name := strings.ToUpper(strings.TrimSpace(c.SASLMechanism))
	if name == "" {
		// Credentials without a mechanism would be silently ignored and
		// the connection refused by a SASL listener with a reset that
		// says nothing about why.
		if c.SASLUsername != "" || c.SASLPassword != "" {
			bad("KAFKA_SASL_MECHANISM", fmt.Errorf("missing: KAFKA_SASL_USERNAME or KAFKA_SASL_PASSWORD is set; want %s, %s or %s",
				MechanismSCRAMSHA256, MechanismSCRAMSHA512, MechanismPlain))
		}
		return nil
	}
	var algo scram.Algorithm
	switch name {
	case MechanismSCRAMSHA256:
		algo = scram.SHA256
	case MechanismSCRAMSHA512:
		algo = scram.SHA512
	case MechanismPlain:
	default:
		bad("KAFKA_SASL_MECHANISM", fmt.Errorf("%q is not one of %s, %s, %s",
			c.SASLMechanism, MechanismSCRAMSHA256, MechanismSCRAMSHA512, MechanismPlain))
		return nil
	}
	ok := true
	if c.SASLUsername == "" {
		bad("KAFKA_SASL_USERNAME", fmt.Errorf("missing: KAFKA_SASL_MECHANISM is %s", name))
		ok = false
	}
	if c.SASLPassword == "" {
		bad("KAFKA_SASL_PASSWORD", fmt.Errorf("missing: KAFKA_SASL_MECHANISM is %s", name))
		ok = false
	}
	if !ok {
		return nil
	}
	if algo == nil {
		// PLAIN sends "\x00user\x00password": a NUL in either would
		// shift the fields.
		if strings.ContainsRune(c.SASLUsername, 0) {
			bad("KAFKA_SASL_USERNAME", errors.New("contains a NUL character, which PLAIN cannot carry"))
			ok = false
		}
		if strings.ContainsRune(c.SASLPassword, 0) {
			bad("KAFKA_SASL_PASSWORD", errors.New("contains a NUL character, which PLAIN cannot carry"))
			ok = false
		}
		if !ok {
			return nil
		}
		return plain.Mechanism{Username: c.SASLUsername, Password: c.SASLPassword}
	}
	// SCRAM normalizes both with SASLprep (RFC 4013) and rejects some
	// characters. The library's error quotes the string it rejected, so
	// the password is checked on its own and reported without it.
	if _, err := scram.Mechanism(algo, c.SASLUsername, "password"); err != nil {
		bad("KAFKA_SASL_USERNAME", fmt.Errorf("%q is not valid for SCRAM: SASLprep (RFC 4013) rejects it (control, prohibited or unassigned characters)", c.SASLUsername))
		return nil
	}
	m, err := scram.Mechanism(algo, c.SASLUsername, c.SASLPassword)
	if err != nil {
		bad("KAFKA_SASL_PASSWORD", errors.New("is not valid for SCRAM: SASLprep (RFC 4013) rejects it (control, prohibited or unassigned characters)"))
		return nil
	}
	return m
}

func (c Config) tlsConfig(bad func(string, error)) *tls.Config {
	if !c.TLS {
		// TLS files without KAFKA_TLS would be ignored and the client
		// would speak plain text to a TLS listener: say so now.
		for _, v := range []struct{ name, value string }{
			{"KAFKA_TLS_CA_FILE", c.TLSCAFile},
			{"KAFKA_TLS_CERT_FILE", c.TLSCertFile},
			{"KAFKA_TLS_KEY_FILE", c.TLSKeyFile},
			{"KAFKA_TLS_SERVER_NAME", c.TLSServerName},
		} {
			if v.value != "" {
				bad(v.name, errors.New("is set but KAFKA_TLS is not true"))
			}
		}
		if c.TLSInsecureSkipVerify {
			bad("KAFKA_TLS_INSECURE_SKIP_VERIFY", errors.New("is true but KAFKA_TLS is not true"))
		}
		return nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.TLSServerName,
		InsecureSkipVerify: c.TLSInsecureSkipVerify, //nolint:gosec // opt-in, validated and warned about
	}
	if c.TLSCAFile != "" {
		if c.TLSInsecureSkipVerify {
			// Both set means someone believes the CA is checked.
			bad("KAFKA_TLS_INSECURE_SKIP_VERIFY", errors.New("is true together with KAFKA_TLS_CA_FILE: the CA would never be consulted; unset one"))
		}
		pool, err := loadCAs(c.TLSCAFile)
		if err != nil {
			bad("KAFKA_TLS_CA_FILE", err)
		}
		cfg.RootCAs = pool
	}
	switch {
	case c.TLSCertFile != "" && c.TLSKeyFile == "":
		bad("KAFKA_TLS_KEY_FILE", errors.New("missing: KAFKA_TLS_CERT_FILE is set (a client certificate needs its key)"))
	case c.TLSCertFile == "" && c.TLSKeyFile != "":
		bad("KAFKA_TLS_CERT_FILE", errors.New("missing: KAFKA_TLS_KEY_FILE is set (a key needs its client certificate)"))
	case c.TLSCertFile != "":
		cert, ok := loadKeyPair(c.TLSCertFile, c.TLSKeyFile, bad)
		if ok {
			cfg.Certificates = []tls.Certificate{cert}
		}
	}
	return cfg
}

// loadCAs reads a PEM bundle; every CERTIFICATE block must parse, so a
// truncated or mangled bundle is noticed rather than half-used.
func loadCAs(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", err)
	}
	certs, err := parseCerts(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	pool := x509.NewCertPool()
	for _, cert := range certs {
		pool.AddCert(cert)
	}
	return pool, nil
}

// loadKeyPair reads the client certificate and key, attributing each
// problem to the variable whose file is at fault.
func loadKeyPair(certFile, keyFile string, bad func(string, error)) (tls.Certificate, bool) {
	ok := true
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		bad("KAFKA_TLS_CERT_FILE", fmt.Errorf("cannot read: %w", err))
		ok = false
	} else if _, err := parseCerts(certPEM); err != nil {
		bad("KAFKA_TLS_CERT_FILE", fmt.Errorf("%s: %w", certFile, err))
		ok = false
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		bad("KAFKA_TLS_KEY_FILE", fmt.Errorf("cannot read: %w", err))
		ok = false
	}
	if !ok {
		return tls.Certificate{}, false
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// The certificate parsed above, so the key is what is wrong:
		// not a key, or not the certificate's.
		bad("KAFKA_TLS_KEY_FILE", fmt.Errorf("%s: %w", keyFile, err))
		return tls.Certificate{}, false
	}
	return cert, true
}

// parseCerts returns the certificates of a PEM file, failing when there is
// none or one does not parse.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return certs, nil
}
