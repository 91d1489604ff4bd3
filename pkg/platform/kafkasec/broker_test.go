package kafkasec_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/platform/broker"
	"github.com/shopflow/shopflow/pkg/platform/kafkasec"
	"github.com/shopflow/shopflow/pkg/platform/kafkatopics"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// These tests run kafka-go with the package's Transport and Dialer against
// the embedded broker (kfake, the real wire protocol) configured for SASL,
// TLS and both, and check that everything the services do works through
// them (create topics, produce with acks=all, consume in a group, commit),
// and that every way of getting it wrong fails promptly with a reason.

// users are the SASL users of the secured brokers: one per mechanism.
var users = []broker.SASLUser{
	{Mechanism: broker.MechanismSCRAMSHA256, User: "svc256", Password: "s3cret-256"},
	{Mechanism: broker.MechanismSCRAMSHA512, User: "svc512", Password: "s3cret-512"},
	{Mechanism: broker.MechanismPlain, User: "svcplain", Password: "s3cret-plain"},
}

func startBroker(t *testing.T, cfg broker.Config) string {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	b, err := broker.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b.Addr()
}

// serverTLS issues a broker certificate for 127.0.0.1 from ca and returns
// the broker's TLS configuration (mutual TLS when clientCA is not empty).
func serverTLS(t *testing.T, ca *authority, clientCA string) *tls.Config {
	t.Helper()
	cert, key := ca.issue("broker", []string{"localhost"}, localhost)
	cfg, err := broker.ServerTLS(cert, key, clientCA)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestWorksThroughSecuredBroker(t *testing.T) {
	t.Parallel()
	ca := newAuthority(t, "shopflow-test")
	clientCA := newAuthority(t, "shopflow-clients")
	clientCert, clientKey := clientCA.issue("order-service", nil)

	saslAddr := startBroker(t, broker.Config{SASL: users})
	tlsAddr := startBroker(t, broker.Config{TLS: serverTLS(t, ca, "")})
	bothAddr := startBroker(t, broker.Config{SASL: users, TLS: serverTLS(t, ca, "")})
	mtlsAddr := startBroker(t, broker.Config{SASL: users, TLS: serverTLS(t, ca, clientCA.CAFile)})
	// A certificate naming only a DNS name the test host does not resolve:
	// reached by IP, it verifies only with KAFKA_TLS_SERVER_NAME.
	nameCert, nameKey := ca.issue("named-broker", []string{"broker.shopflow.test"})
	nameTLS, err := broker.ServerTLS(nameCert, nameKey, "")
	if err != nil {
		t.Fatal(err)
	}
	namedAddr := startBroker(t, broker.Config{TLS: nameTLS})

	for _, tc := range []struct {
		name string
		addr string
		sec  kafkasec.Config
	}{
		{"SCRAM-SHA-256", saslAddr, kafkasec.Config{SASLMechanism: "SCRAM-SHA-256", SASLUsername: "svc256", SASLPassword: "s3cret-256"}},
		{"SCRAM-SHA-512", saslAddr, kafkasec.Config{SASLMechanism: "SCRAM-SHA-512", SASLUsername: "svc512", SASLPassword: "s3cret-512"}},
		{"PLAIN", saslAddr, kafkasec.Config{SASLMechanism: "PLAIN", SASLUsername: "svcplain", SASLPassword: "s3cret-plain"}},
		{"mechanism in lower case", saslAddr, kafkasec.Config{SASLMechanism: "scram-sha-512", SASLUsername: "svc512", SASLPassword: "s3cret-512"}},
		{"TLS", tlsAddr, kafkasec.Config{TLS: true, TLSCAFile: ca.CAFile}},
		{"TLS and SCRAM-SHA-512", bothAddr, kafkasec.Config{TLS: true, TLSCAFile: ca.CAFile,
			SASLMechanism: "SCRAM-SHA-512", SASLUsername: "svc512", SASLPassword: "s3cret-512"}},
		{"mutual TLS and SCRAM-SHA-256", mtlsAddr, kafkasec.Config{TLS: true, TLSCAFile: ca.CAFile,
			TLSCertFile: clientCert, TLSKeyFile: clientKey,
			SASLMechanism: "SCRAM-SHA-256", SASLUsername: "svc256", SASLPassword: "s3cret-256"}},
		{"TLS server name", namedAddr, kafkasec.Config{TLS: true, TLSCAFile: ca.CAFile, TLSServerName: "broker.shopflow.test"}},
		{"TLS without verification", tlsAddr, kafkasec.Config{TLS: true, TLSInsecureSkipVerify: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			roundTrip(t, tc.addr, tc.sec)
		})
	}
}

var topicSeq atomic.Int64

// roundTrip does what a service does, all through sec's Transport and
// Dialer: create a topic, produce with acks=all, consume as a group,
// commit, and read the committed offsets back.
func roundTrip(t *testing.T, addr string, sec kafkasec.Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tr, err := sec.Transport()
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	d, err := sec.Dialer()
	if err != nil {
		t.Fatal(err)
	}
	topic := fmt.Sprintf("secured-%d", topicSeq.Add(1))
	group := topic + "-group"
	client := &kafka.Client{Addr: kafka.TCP(addr), Transport: tr}
	if err := kafkatopics.EnsureWith(ctx, client, nil, kafkatopics.Spec{Name: topic, Partitions: 3}); err != nil {
		t.Fatalf("create topic: %v", err)
	}

	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: topic, Transport: tr, RequiredAcks: kafka.RequireAll,
		Balancer: &kafka.Murmur2Balancer{}, BatchTimeout: 5 * time.Millisecond}
	defer w.Close()
	const n = 9
	var msgs []kafka.Message
	for i := range n {
		msgs = append(msgs, kafka.Message{Key: fmt.Appendf(nil, "order-%d", i), Value: fmt.Appendf(nil, "v%d", i)})
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce: %v", err)
	}

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, GroupID: group, Topic: topic, Dialer: d,
		StartOffset: kafka.FirstOffset, MaxWait: 250 * time.Millisecond, SessionTimeout: 6 * time.Second,
		HeartbeatInterval: time.Second, JoinGroupBackoff: 200 * time.Millisecond, RebalanceTimeout: 5 * time.Second})
	defer r.Close()
	seen := map[string]bool{}
	for len(seen) < n {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("consume after %d records: %v", len(seen), err)
		}
		seen[string(m.Key)] = true
		if err := r.CommitMessages(ctx, m); err != nil {
			t.Fatalf("commit: %v", err)
		}
	}

	// The commits reached the broker: the group's offsets add up to
	// every record.
	res, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group,
		Topics: map[string][]int{topic: {0, 1, 2}}})
	if err != nil {
		t.Fatalf("offset fetch: %v", err)
	}
	var committed int64
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			t.Fatalf("partition %d: %v", p.Partition, p.Error)
		}
		committed += max(p.CommittedOffset, 0)
	}
	if committed != n {
		t.Errorf("committed offsets add up to %d, want %d", committed, n)
	}
}

// TestRefusedPromptly: each misconfiguration fails every kind of client
// (Transport for writers and admin, Dialer for readers) within seconds,
// with an error that says why where the protocol lets the client know.
func TestRefusedPromptly(t *testing.T) {
	t.Parallel()
	ca := newAuthority(t, "shopflow-test")
	otherCA := newAuthority(t, "someone-else")
	clientCA := newAuthority(t, "shopflow-clients")
	strangerCert, strangerKey := otherCA.issue("stranger", nil)

	saslAddr := startBroker(t, broker.Config{SASL: users})
	tlsAddr := startBroker(t, broker.Config{TLS: serverTLS(t, ca, "")})
	mtlsAddr := startBroker(t, broker.Config{TLS: serverTLS(t, ca, clientCA.CAFile)})

	unknownAuthority := func(t *testing.T, _ string, err error) {
		t.Helper()
		var ua x509.UnknownAuthorityError
		if !errors.As(err, &ua) {
			t.Errorf("error %v (%T) is not x509.UnknownAuthorityError", err, err)
		}
	}
	wrongHost := func(t *testing.T, _ string, err error) {
		t.Helper()
		var he x509.HostnameError
		if !errors.As(err, &he) {
			t.Errorf("error %v (%T) is not x509.HostnameError", err, err)
		}
	}
	tlsRefused := func(t *testing.T, _ string, err error) {
		t.Helper()
		if !strings.Contains(err.Error(), "tls: ") {
			t.Errorf("error %v is not the broker's TLS refusal", err)
		}
	}
	saslFailed := func(t *testing.T, what string, err error) {
		t.Helper()
		if errors.Is(err, kafka.SASLAuthenticationFailed) {
			return
		}
		// kfake ends the connection on bad credentials instead of
		// answering SaslAuthenticationFailed as Apache Kafka does. The
		// Dialer maps that end to SASLAuthenticationFailed; the
		// Transport, reading a response, sees io.ErrUnexpectedEOF.
		if what == "reader dial" || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("error %v is not a SASL authentication failure", err)
		}
	}
	for _, tc := range []struct {
		name  string
		addr  string
		sec   kafkasec.Config
		check func(t *testing.T, what string, err error)
	}{
		{"wrong SCRAM-SHA-256 password", saslAddr, kafkasec.Config{SASLMechanism: "SCRAM-SHA-256", SASLUsername: "svc256", SASLPassword: "wrong"}, saslFailed},
		{"wrong SCRAM-SHA-512 password", saslAddr, kafkasec.Config{SASLMechanism: "SCRAM-SHA-512", SASLUsername: "svc512", SASLPassword: "wrong"}, saslFailed},
		{"wrong PLAIN password", saslAddr, kafkasec.Config{SASLMechanism: "PLAIN", SASLUsername: "svcplain", SASLPassword: "wrong"}, saslFailed},
		{"unknown user", saslAddr, kafkasec.Config{SASLMechanism: "SCRAM-SHA-256", SASLUsername: "nobody", SASLPassword: "s3cret-256"}, saslFailed},
		{"user of another mechanism", saslAddr, kafkasec.Config{SASLMechanism: "SCRAM-SHA-512", SASLUsername: "svc256", SASLPassword: "s3cret-256"}, saslFailed},
		{"no SASL against a SASL broker", saslAddr, kafkasec.Config{}, nil},
		{"TLS with the wrong CA", tlsAddr, kafkasec.Config{TLS: true, TLSCAFile: otherCA.CAFile}, unknownAuthority},
		{"TLS with the system roots", tlsAddr, kafkasec.Config{TLS: true}, unknownAuthority},
		{"TLS with the wrong server name", tlsAddr, kafkasec.Config{TLS: true, TLSCAFile: ca.CAFile, TLSServerName: "kafka.example.com"}, wrongHost},
		{"plain text against a TLS broker", tlsAddr, kafkasec.Config{}, nil},
		{"mutual TLS without a client certificate", mtlsAddr, kafkasec.Config{TLS: true, TLSCAFile: ca.CAFile}, tlsRefused},
		{"mutual TLS with a foreign client certificate", mtlsAddr, kafkasec.Config{TLS: true, TLSCAFile: ca.CAFile,
			TLSCertFile: strangerCert, TLSKeyFile: strangerKey}, tlsRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tr, err := tc.sec.Transport()
			if err != nil {
				t.Fatal(err)
			}
			defer tr.CloseIdleConnections()
			d, err := tc.sec.Dialer()
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			attempts := []struct {
				what string
				do   func() error
			}{
				{"admin request", func() error {
					_, err := (&kafka.Client{Addr: kafka.TCP(tc.addr), Transport: tr}).Metadata(ctx, &kafka.MetadataRequest{})
					return err
				}},
				{"produce", func() error {
					w := &kafka.Writer{Addr: kafka.TCP(tc.addr), Topic: "t", Transport: tr, RequiredAcks: kafka.RequireAll,
						BatchTimeout: time.Millisecond, MaxAttempts: 2}
					defer w.Close()
					return w.WriteMessages(ctx, kafka.Message{Value: []byte("x")})
				}},
				{"reader dial", func() error {
					c, err := d.DialContext(ctx, "tcp", tc.addr)
					if err == nil {
						// Some refusals surface only on first use: a
						// client certificate the broker rejects after
						// the TLS 1.3 handshake, a request before SASL.
						_, err = c.ReadPartitions()
						c.Close()
					}
					return err
				}},
			}
			for _, a := range attempts {
				start := time.Now()
				err := a.do()
				took := time.Since(start)
				switch {
				case err == nil:
					t.Errorf("%s succeeded", a.what)
				case ctx.Err() != nil || took > 2*kafkasec.DialTimeout:
					t.Errorf("%s failed only after %v (hang, not refusal): %v", a.what, took, err)
				case tc.check != nil:
					tc.check(t, a.what, err)
				}
				t.Logf("%s: %v after %v", a.what, err, took.Round(time.Millisecond))
			}
		})
	}
}

// TestApiVersionsAnswersBeforeAuthentication is why a readiness check
// must not be an ApiVersions request: brokers answer it before SASL (so a
// client can learn which SASL versions to use), so it succeeds for a
// client without credentials. Metadata needs an authenticated connection.
func TestApiVersionsAnswersBeforeAuthentication(t *testing.T) {
	t.Parallel()
	addr := startBroker(t, broker.Config{SASL: users})
	tr, err := kafkasec.Config{}.Transport()
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(addr), Transport: tr}
	if _, err := client.ApiVersions(ctx, &kafka.ApiVersionsRequest{}); err != nil {
		t.Errorf("ApiVersions without credentials: %v; want an answer", err)
	}
	if _, err := client.Metadata(ctx, &kafka.MetadataRequest{}); err == nil {
		t.Error("Metadata without credentials succeeded; want a refusal")
	}
}

// hungBroker returns the address of a "broker" that accepts connections
// and never answers.
func hungBroker(t *testing.T) string {
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hung.Close() })
	go func() {
		var held []net.Conn
		for {
			conn, err := hung.Accept()
			if err != nil {
				for _, c := range held {
					c.Close()
				}
				return
			}
			held = append(held, conn)
		}
	}()
	return hung.Addr().String()
}

// TestCheckGivesUpOnAHungBroker: kafka-go's SASL handshake reads without
// a deadline, so a check against a broker that never answers hung for
// good (a goroutine and a socket per readiness probe). It ends with ctx.
func TestCheckGivesUpOnAHungBroker(t *testing.T) {
	t.Parallel()
	addr := hungBroker(t)
	sec := kafkasec.Config{SASLMechanism: "SCRAM-SHA-256", SASLUsername: "svc256", SASLPassword: "s3cret-256"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- sec.Check(ctx, []string{addr}) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "no answer in time") {
			t.Errorf("Check = %v, want an error naming %s and the silence", err, addr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Check still waiting 15 s after its context ended at 1 s")
	}
}

// TestCheck: the start-up and readiness check passes only where the
// configuration really gets in, and otherwise names what to fix, within
// DialTimeout per broker.
func TestCheck(t *testing.T) {
	t.Parallel()
	ca := newAuthority(t, "shopflow-test")
	otherCA := newAuthority(t, "someone-else")
	clientCA := newAuthority(t, "shopflow-clients")
	clientCert, clientKey := clientCA.issue("svc", nil)

	saslAddr := startBroker(t, broker.Config{SASL: users})
	tlsAddr := startBroker(t, broker.Config{TLS: serverTLS(t, ca, "")})
	mtlsAddr := startBroker(t, broker.Config{TLS: serverTLS(t, ca, clientCA.CAFile)})
	// A port nothing listens on any more: a broker that is down.
	downAddr := testenv.FreeAddr(t)
	hungAddr := hungBroker(t)

	scram256 := kafkasec.Config{SASLMechanism: "SCRAM-SHA-256", SASLUsername: "svc256", SASLPassword: "s3cret-256"}
	for _, tc := range []struct {
		name    string
		brokers []string
		sec     kafkasec.Config
		want    []string // fragments of the error; none: Check passes
		is      error
	}{
		{"SCRAM", []string{saslAddr}, scram256, nil, nil},
		{"TLS", []string{tlsAddr}, kafkasec.Config{TLS: true, TLSCAFile: ca.CAFile}, nil, nil},
		{"mutual TLS", []string{mtlsAddr}, kafkasec.Config{TLS: true, TLSCAFile: ca.CAFile, TLSCertFile: clientCert, TLSKeyFile: clientKey}, nil, nil},
		{"first broker down, second fine", []string{downAddr, saslAddr}, scram256, nil, nil},
		// Within a readiness probe's 2 s (below): tried one after the
		// other, the hung broker took them all.
		{"first broker hung, second fine", []string{hungAddr, saslAddr}, scram256, nil, nil},
		{"wrong password", []string{saslAddr}, kafkasec.Config{SASLMechanism: "SCRAM-SHA-256", SASLUsername: "svc256", SASLPassword: "wrong"},
			[]string{saslAddr, `SASL SCRAM-SHA-256 authentication as "svc256" refused`, "KAFKA_SASL_PASSWORD"}, kafka.SASLAuthenticationFailed},
		{"no SASL against a SASL broker", []string{saslAddr}, kafkasec.Config{},
			[]string{"closed the connection", "plain text (no TLS) without SASL", "KAFKA_SASL_MECHANISM"}, nil},
		{"plain text against a TLS broker", []string{tlsAddr}, scram256,
			[]string{"closed the connection", "plain text (no TLS) with SASL SCRAM-SHA-256", "KAFKA_TLS"}, nil},
		{"wrong CA", []string{tlsAddr}, kafkasec.Config{TLS: true, TLSCAFile: otherCA.CAFile},
			[]string{"not trusted", "KAFKA_TLS_CA_FILE", "unknown authority"}, nil},
		{"no client certificate", []string{mtlsAddr}, kafkasec.Config{TLS: true, TLSCAFile: ca.CAFile},
			[]string{"refused the handshake", "KAFKA_TLS_CERT_FILE"}, nil},
		{"broker down", []string{downAddr}, kafkasec.Config{}, []string{downAddr, "connection refused"}, nil},
		{"invalid configuration", []string{saslAddr}, kafkasec.Config{SASLMechanism: "MD5"}, []string{"config: KAFKA_SASL_MECHANISM"}, nil},
		{"no brokers", nil, kafkasec.Config{}, []string{"no broker"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			budget := 30 * time.Second
			if len(tc.want) == 0 {
				budget = 2 * time.Second // a readiness probe's (httpserver's readyTimeout)
			}
			ctx, cancel := context.WithTimeout(context.Background(), budget)
			defer cancel()
			start := time.Now()
			err := tc.sec.Check(ctx, tc.brokers)
			if took := time.Since(start); took > kafkasec.DialTimeout*time.Duration(max(len(tc.brokers), 1)) {
				t.Errorf("Check took %v", took)
			}
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Check passed")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
		})
	}
}
