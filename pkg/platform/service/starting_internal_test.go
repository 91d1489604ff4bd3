package service

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/segmentio/kafka-go"
)

// TestPublicCause: /readyz says what kind of error start-up met, never
// the host, port or user the error's text names.
func TestPublicCause(t *testing.T) {
	t.Parallel()
	refused := &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 5432},
		Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("failed to connect to `user=shop database=orders`: 10.1.2.3:5432: dial error: %w", refused), "connection refused"},
		{fmt.Errorf("no broker reachable: %w", refused), "connection refused"},
		{&net.DNSError{Err: "no such host", Name: "db.internal", IsNotFound: true}, "host not found"},
		{fmt.Errorf("connect: %w", &pgconn.PgError{Code: "57P03", Message: "the database system is starting up"}),
			"the server is starting up (SQLSTATE 57P03)"},
		{&pgconn.PgError{Code: "28P01", Message: `password authentication failed for user "shop"`}, "SQLSTATE 28P01"},
		{fmt.Errorf("create: %w", kafka.BrokerNotAvailable), "Broker Not Available"},
		{&net.OpError{Op: "dial", Net: "tcp", Err: timeoutError{}}, "no answer in time"},
		{errors.New("db.internal:5432: something else"), "failing (the service log says why)"},
	} {
		if got := publicCause(tc.err); got != tc.want {
			t.Errorf("publicCause(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// TestTapKeepsTheLastWarning: the start-up logger hands each warning's
// error to /readyz, whatever LOG_LEVEL lets through, and logs as before.
func TestTapKeepsTheLastWarning(t *testing.T) {
	t.Parallel()
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelError} {
		s := newStarting("echo")
		s.enter(stagePostgres)
		var out bytes.Buffer
		log := s.tap(slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: level}))).With("service", "echo")
		log.Warn("postgres not ready, retrying", "attempt", 1, "err", fmt.Errorf("dial: %w", syscall.ECONNREFUSED))
		log.Info("an info line")
		if got := s.status(); got.Stage != "postgres" || got.LastError != "connection refused" {
			t.Errorf("level %s: status %+v, want postgres, connection refused", level, got)
		}
		wrote := out.String()
		if level == slog.LevelInfo && !bytes.Contains(out.Bytes(), []byte("postgres not ready")) {
			t.Errorf("level %s: the warning was not logged: %q", level, wrote)
		}
		if level == slog.LevelError && wrote != "" {
			t.Errorf("level %s: logged %q, want nothing", level, wrote)
		}
		s.enter(stageMigrations)
		if got := s.status(); got.LastError != "" {
			t.Errorf("a new stage keeps the last one's error: %+v", got)
		}
	}
}
