package broker_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/shopflow/shopflow/pkg/platform/broker"
	"github.com/shopflow/shopflow/pkg/platform/kafkatopics"
)

// TestRestartKeepsTopicsRecordsAndOffsets is the promise `shop broker
// --data-dir` makes: stop it, start it on the same directory, and topics,
// records and committed group offsets are all still there.
func TestRestartKeepsTopicsRecordsAndOffsets(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	addr := b.Addr()
	if err := kafkatopics.Ensure(ctx, []string{addr}, kafkatopics.Spec{Name: "persist", Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Transport: &kafka.Transport{}, Addr: kafka.TCP(addr), Topic: "persist", RequiredAcks: kafka.RequireAll,
		Balancer: &kafka.Murmur2Balancer{}, BatchTimeout: 5 * time.Millisecond}
	var msgs []kafka.Message
	for i := range 10 {
		msgs = append(msgs, kafka.Message{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i)})
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()

	// Consume and commit 4 records as group g.
	seen := readGroup(ctx, t, addr, 4)
	b.Close()

	b2, err := broker.Start(broker.Config{Addr: addr, DataDir: dir})
	if err != nil {
		t.Fatalf("restart on %s: %v", addr, err)
	}
	defer b2.Close()
	// The group resumes after the committed offsets: it sees exactly the 6
	// records it had not committed, none of the 4 it had.
	rest := readGroup(ctx, t, addr, 6)
	for k := range rest {
		if seen[k] {
			t.Errorf("record %s delivered again after restart: committed offset lost", k)
		}
	}
	if len(seen)+len(rest) != 10 {
		t.Errorf("saw %d + %d records, want 10", len(seen), len(rest))
	}
}

func readGroup(ctx context.Context, t *testing.T, addr string, n int) map[string]bool {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, GroupID: "g", Topic: "persist",
		StartOffset: kafka.FirstOffset, MaxWait: 250 * time.Millisecond, SessionTimeout: 6 * time.Second,
		HeartbeatInterval: time.Second, JoinGroupBackoff: 200 * time.Millisecond, RebalanceTimeout: 5 * time.Second})
	defer r.Close()
	seen := map[string]bool{}
	for len(seen) < n {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("fetch after %d records: %v", len(seen), err)
		}
		seen[string(m.Key)] = true
		if err := r.CommitMessages(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	return seen
}

// TestSASLUsersAreTheConfiguredOnes: with a data directory, the users
// given at start are the broker's users, whatever an earlier run saved
// (kfake alone would let the saved users replace them).
func TestSASLUsersAreTheConfiguredOnes(t *testing.T) {
	t.Parallel()
	user := func(pw string) []broker.SASLUser {
		return []broker.SASLUser{{Mechanism: broker.MechanismSCRAMSHA256, User: "alice", Password: pw}}
	}
	start := func(dir string, users []broker.SASLUser) *broker.Broker {
		t.Helper()
		b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0", DataDir: dir, SASL: users})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	t.Run("password changed between runs", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		b := start(dir, user("old-password"))
		if err := authenticate(t, b.Addr(), "alice", "old-password"); err != nil {
			t.Fatalf("first run: %v", err)
		}
		b.Close()
		b = start(dir, user("new-password"))
		defer b.Close()
		if err := authenticate(t, b.Addr(), "alice", "new-password"); err != nil {
			t.Errorf("new password after restart: %v", err)
		}
		if err := authenticate(t, b.Addr(), "alice", "old-password"); !errors.Is(err, kafka.SASLAuthenticationFailed) {
			t.Errorf("old password after restart: %v; want SASLAuthenticationFailed", err)
		}
	})
	t.Run("directory first used without SASL", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		start(dir, nil).Close()
		b := start(dir, user("pw-1234"))
		defer b.Close()
		if err := authenticate(t, b.Addr(), "alice", "pw-1234"); err != nil {
			t.Errorf("after a run without SASL: %v", err)
		}
	})
}

// authenticate connects with SCRAM-SHA-256 and makes a request that needs
// an authenticated connection.
func authenticate(t *testing.T, addr, user, pw string) error {
	t.Helper()
	mech, err := scram.Mechanism(scram.SHA256, user, pw)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d := &kafka.Dialer{Timeout: 10 * time.Second, SASLMechanism: mech}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Brokers()
	return err
}

func TestStartRejectsBadSecurity(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  broker.Config
		want string
	}{
		{"unknown mechanism", broker.Config{SASL: []broker.SASLUser{{Mechanism: "GSSAPI", User: "u", Password: "p"}}}, `mechanism "GSSAPI"`},
		{"user without name", broker.Config{SASL: []broker.SASLUser{{Mechanism: broker.MechanismPlain, Password: "p"}}}, "needs a user name and a password"},
		{"user without password", broker.Config{SASL: []broker.SASLUser{{Mechanism: broker.MechanismSCRAMSHA512, User: "u"}}}, "needs a user name and a password"},
		{"TLS without certificate", broker.Config{TLS: &tls.Config{}}, "no server certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.cfg.Addr = "127.0.0.1:0"
			b, err := broker.Start(tc.cfg)
			if err == nil {
				b.Close()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
	for _, files := range [][3]string{{"", "key.pem", ""}, {"missing.pem", "missing-key.pem", ""}} {
		if _, err := broker.ServerTLS(files[0], files[1], files[2]); err == nil {
			t.Errorf("ServerTLS(%q) succeeded", files)
		}
	}
}
