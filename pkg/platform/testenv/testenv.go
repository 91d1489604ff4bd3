// Package testenv gives integration and end-to-end tests a real Kafka
// protocol broker and a real PostgreSQL, chosen once per test process in
// this order (ARCHITECTURE.md, "Test environments"):
//
//  1. TEST_KAFKA_BROKERS / TEST_DATABASE_URL, when set (e.g. the compose
//     stack); each is honoured on its own.
//  2. A Docker engine that answers a ping: Apache Kafka and PostgreSQL
//     containers through testcontainers-go.
//  3. Otherwise the embedded kfake broker in-process and the local
//     PostgreSQL (postgres://postgres@127.0.0.1:5432/postgres).
//
// SHOPFLOW_TESTENV=embedded forces step 3 even where Docker runs;
// SHOPFLOW_TESTENV=docker forces step 2, failing the tests when no Docker
// engine answers; any other value fails them, naming the variable.
//
// Each backend starts when a test first asks for it (Kafka, DatabaseURL):
// a test binary that needs only a database starts no broker. Every test
// gets its own database and uniquely named topics and groups, so tests
// run in parallel and leave nothing behind. Each backend is logged to
// stderr once, as it starts. A backend that cannot start fails the test
// with the reason; nothing here ever skips.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopflow/shopflow/pkg/platform/broker"
	"github.com/shopflow/shopflow/pkg/platform/kafkatopics"
)

// DefaultDatabaseURL is the local server used when nothing else is chosen.
const DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// modeVar chooses between the containers and the embedded backends.
const modeVar = "SHOPFLOW_TESTENV"

// mode is modeVar's value.
type mode string

const (
	modeAuto     mode = ""         // containers if a Docker engine answers, else embedded
	modeEmbedded mode = "embedded" // the embedded broker and the local PostgreSQL
	modeDocker   mode = "docker"   // containers; no Docker engine is an error
)

func parseMode(s string) (mode, error) {
	switch m := mode(strings.TrimSpace(s)); m {
	case modeAuto, modeEmbedded, modeDocker:
		return m, nil
	}
	return "", fmt.Errorf("testenv: %s=%q: want %q (the embedded broker and the local PostgreSQL), %q (containers; "+
		"fail if no Docker engine answers) or unset (containers if a Docker engine answers, else embedded)",
		modeVar, s, modeEmbedded, modeDocker)
}

// choice is what the environment asks for.
type choice struct {
	kafkaEnv, pgEnv string // TEST_KAFKA_BROKERS, TEST_DATABASE_URL
	docker          bool   // containers for what those do not give
	noDocker        string // why not, for the log
	err             error
}

// choose reads the choice from getenv, asking probe whether a Docker
// engine answers only when it matters.
func choose(ctx context.Context, getenv func(string) string, probe func(context.Context) (bool, string)) choice {
	m, err := parseMode(getenv(modeVar))
	if err != nil {
		return choice{err: err}
	}
	c := choice{kafkaEnv: strings.TrimSpace(getenv("TEST_KAFKA_BROKERS")), pgEnv: strings.TrimSpace(getenv("TEST_DATABASE_URL"))}
	switch {
	case c.kafkaEnv != "" && c.pgEnv != "":
		c.noDocker = "TEST_KAFKA_BROKERS and TEST_DATABASE_URL set"
	case m == modeEmbedded:
		c.noDocker = modeVar + "=embedded"
	default:
		ok, why := probe(ctx)
		switch {
		case ok:
			c.docker = true
		case m == modeDocker:
			c.err = fmt.Errorf("testenv: %s=docker, but %s", modeVar, why)
		default:
			c.noDocker = why
		}
	}
	return c
}

var chosen = sync.OnceValue(func() choice {
	return choose(context.Background(), os.Getenv, dockerAnswers)
})

// kafkaBackend and pgBackend are the started backends.
type kafkaBackend struct {
	addrs    []string
	desc     string
	embedded *broker.Broker
	err      error
}

type pgBackend struct {
	adminURL string
	desc     string
	err      error
}

var kafkaStarted = sync.OnceValue(func() kafkaBackend {
	c := chosen()
	if c.err != nil {
		return kafkaBackend{err: c.err}
	}
	var k kafkaBackend
	switch {
	case c.kafkaEnv != "":
		k.addrs = splitList(c.kafkaEnv)
		k.desc = "external TEST_KAFKA_BROKERS=" + c.kafkaEnv
	case c.docker:
		addr, err := startKafkaContainer(context.Background())
		if err != nil {
			return kafkaBackend{err: fmt.Errorf("testenv: Docker answers but the Kafka container did not start: %w%s", err, embeddedHint)}
		}
		k.addrs = []string{addr}
		k.desc = "testcontainers " + kafkaImage + " at " + addr
	default:
		b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0"})
		if err != nil {
			return kafkaBackend{err: fmt.Errorf("testenv: embedded broker: %w", err)}
		}
		k.embedded = b
		k.addrs = []string{b.Addr()}
		k.desc = "embedded kfake at " + b.Addr() + " (no Docker: " + c.noDocker + ")"
	}
	fmt.Fprintf(os.Stderr, "testenv: kafka: %s\n", k.desc)
	return k
})

var pgStarted = sync.OnceValue(func() pgBackend {
	c := chosen()
	if c.err != nil {
		return pgBackend{err: c.err}
	}
	var p pgBackend
	switch {
	case c.pgEnv != "":
		p.adminURL = c.pgEnv
		p.desc = "external TEST_DATABASE_URL"
	case c.docker:
		u, err := startPostgresContainer(context.Background())
		if err != nil {
			return pgBackend{err: fmt.Errorf("testenv: Docker answers but the PostgreSQL container did not start: %w%s", err, embeddedHint)}
		}
		p.adminURL = u
		p.desc = "testcontainers " + postgresImage + " at " + redactURL(u)
	default:
		p.adminURL = DefaultDatabaseURL
		p.desc = "local PostgreSQL " + redactURL(DefaultDatabaseURL) + " (no Docker: " + c.noDocker + ")"
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.adminURL)
	if err != nil {
		return pgBackend{err: fmt.Errorf("testenv: PostgreSQL (%s) does not answer: %w", p.desc, err)}
	}
	_ = conn.Close(ctx)
	fmt.Fprintf(os.Stderr, "testenv: postgres: %s\n", p.desc)
	return p
})

func kafkaFor(t testing.TB) kafkaBackend {
	t.Helper()
	k := kafkaStarted()
	if k.err != nil {
		t.Fatal(k.err)
	}
	return k
}

func pgFor(t testing.TB) pgBackend {
	t.Helper()
	p := pgStarted()
	if p.err != nil {
		t.Fatal(p.err)
	}
	return p
}

// Backend describes the chosen backends in one line (for logs), starting
// both.
func Backend(t testing.TB) string {
	t.Helper()
	return "kafka: " + kafkaFor(t).desc + "; postgres: " + pgFor(t).desc
}

// Kafka returns the bootstrap broker addresses.
func Kafka(t testing.TB) []string {
	t.Helper()
	return kafkaFor(t).addrs
}

// Embedded reports whether the brokers are the in-process kfake broker.
func Embedded(t testing.TB) bool {
	t.Helper()
	return kafkaFor(t).embedded != nil
}

// DatabaseURL creates an empty database for this test and returns its URL;
// the database is dropped when the test ends.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	b := pgFor(t)
	name := "t_" + sanitize(t.Name(), 40) + "_" + randHex(4)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, b.adminURL)
	if err != nil {
		t.Fatalf("testenv: connect %s: %v", b.desc, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("testenv: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, b.adminURL)
		if err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(b.adminURL)
	if err != nil || u.Scheme == "" {
		t.Fatalf("testenv: TEST_DATABASE_URL must be a postgres:// URL: %q", redactURL(b.adminURL))
	}
	u.Path = "/" + name
	return u.String()
}

// Name returns a unique, Kafka- and SQL-safe name for a topic, group or
// schema derived from base and the test's name.
func Name(t testing.TB, base string) string {
	return base + "_" + sanitize(t.Name(), 30) + "_" + randHex(4)
}

// Topic creates a topic with a unique name derived from base and returns
// the name. Topics are removed when the test ends.
func Topic(t testing.TB, base string, partitions int) string {
	t.Helper()
	brokers := Kafka(t)
	name := Name(t, base)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafkatopics.Ensure(ctx, brokers, kafkatopics.Spec{Name: name, Partitions: partitions}); err != nil {
		t.Fatalf("testenv: create topic %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = kafkatopics.Delete(ctx, brokers, name)
	})
	return name
}

var unsafe = regexp.MustCompile(`[^a-z0-9]+`)

func sanitize(s string, max int) string {
	s = strings.Trim(unsafe.ReplaceAllString(strings.ToLower(s), "_"), "_")
	if len(s) > max {
		s = s[len(s)-max:]
	}
	return s
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
