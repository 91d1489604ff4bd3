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
// Every test gets its own database and uniquely named topics and groups,
// so tests run in parallel and leave nothing behind. The chosen backend is
// logged once to stderr. A backend that cannot start fails the test with
// the reason; nothing here ever skips.
//
// SHOPFLOW_TESTENV=embedded forces step 3 even where Docker runs;
// SHOPFLOW_TESTENV=docker forces step 2, failing the tests when no Docker
// engine answers; any other value fails them, naming the variable.
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
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"

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

type backend struct {
	kafka     []string
	kafkaDesc string
	adminURL  string
	pgDesc    string
	err       error
	embedded  *broker.Broker
	// Containers are not kept: testcontainers' reaper (Ryuk) removes
	// them when the test binary exits, a failed start's included.
}

var (
	once sync.Once
	be   backend
)

func setup() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	c := choose(ctx, os.Getenv, dockerAnswers)
	if c.err != nil {
		be.err = c.err
		return
	}
	switch {
	case c.kafkaEnv != "":
		be.kafka = splitList(c.kafkaEnv)
		be.kafkaDesc = "external TEST_KAFKA_BROKERS=" + c.kafkaEnv
	case c.docker:
		addr, err := startKafkaContainer(ctx)
		if err != nil {
			be.err = fmt.Errorf("testenv: Docker answers but the Kafka container did not start: %w", err)
			return
		}
		be.kafka = []string{addr}
		be.kafkaDesc = "testcontainers " + kafkaImage + " at " + addr
	default:
		b, err := broker.Start(broker.Config{Addr: "127.0.0.1:0"})
		if err != nil {
			be.err = fmt.Errorf("testenv: embedded broker: %w", err)
			return
		}
		be.embedded = b
		be.kafka = []string{b.Addr()}
		be.kafkaDesc = "embedded kfake at " + b.Addr() + " (no Docker: " + c.noDocker + ")"
	}

	switch {
	case c.pgEnv != "":
		be.adminURL = c.pgEnv
		be.pgDesc = "external TEST_DATABASE_URL"
	case c.docker:
		c, err := tcpostgres.Run(ctx, postgresImage,
			tcpostgres.WithDatabase("postgres"), tcpostgres.WithUsername("postgres"), tcpostgres.WithPassword("postgres"),
			tcpostgres.BasicWaitStrategies())
		if err != nil {
			be.err = fmt.Errorf("testenv: Docker answers but the PostgreSQL container did not start: %w", err)
			return
		}
		u, err := c.ConnectionString(ctx, "sslmode=disable")
		if err != nil {
			be.err = fmt.Errorf("testenv: PostgreSQL container address: %w", err)
			return
		}
		be.adminURL = u
		be.pgDesc = "testcontainers " + postgresImage
	default:
		be.adminURL = DefaultDatabaseURL
		be.pgDesc = "local PostgreSQL " + redactURL(DefaultDatabaseURL)
	}
	conn, err := pgx.Connect(ctx, be.adminURL)
	if err != nil {
		be.err = fmt.Errorf("testenv: PostgreSQL (%s) does not answer: %w", be.pgDesc, err)
		return
	}
	_ = conn.Close(ctx)
	fmt.Fprintf(os.Stderr, "testenv: kafka: %s; postgres: %s\n", be.kafkaDesc, be.pgDesc)
}

func get(t testing.TB) *backend {
	t.Helper()
	once.Do(setup)
	if be.err != nil {
		t.Fatal(be.err)
	}
	return &be
}

// Backend describes the chosen backends in one line (for logs).
func Backend(t testing.TB) string {
	b := get(t)
	return "kafka: " + b.kafkaDesc + "; postgres: " + b.pgDesc
}

// Kafka returns the bootstrap broker addresses.
func Kafka(t testing.TB) []string {
	return get(t).kafka
}

// Embedded reports whether the brokers are the in-process kfake broker.
func Embedded(t testing.TB) bool { return get(t).embedded != nil }

// DatabaseURL creates an empty database for this test and returns its URL;
// the database is dropped when the test ends.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	b := get(t)
	name := "t_" + sanitize(t.Name(), 40) + "_" + randHex(4)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, b.adminURL)
	if err != nil {
		t.Fatalf("testenv: connect %s: %v", b.pgDesc, err)
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
