package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// helperVar makes this test binary, started by a test below, do one thing
// in place of its tests (TestMain), in a process of its own: what a test
// binary does before its first test, for a test that can see it only
// from outside.
const helperVar = "TESTENV_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperVar) {
	case "":
		os.Exit(m.Run())
	case "postgres":
		// A test binary whose tests ask only for databases.
		if err := pgStarted().err; err != nil {
			fmt.Println(err)
		}
	default:
		fmt.Println("unknown", helperVar)
		os.Exit(1)
	}
	os.Exit(0)
}

// TestChoose: SHOPFLOW_TESTENV is unset, embedded or docker, anything
// else an error naming it and its values (a typo such as "Embedded" used
// to be the default without a word); with docker, no Docker engine is an
// error rather than the embedded backends; Docker is asked only when a
// TEST_ variable leaves something to start.
func TestChoose(t *testing.T) {
	t.Parallel()
	const noEngine = "no Docker engine found (...)"
	for _, tc := range []struct {
		name                     string
		env                      map[string]string
		answers                  bool
		wantDocker, wantAsked    bool
		wantErr, wantWhyEmbedded string
	}{
		{name: "unset, Docker answers", answers: true, wantDocker: true, wantAsked: true},
		{name: "unset, no Docker", wantAsked: true, wantWhyEmbedded: noEngine},
		{name: "embedded", env: map[string]string{modeVar: "embedded"}, answers: true, wantWhyEmbedded: "SHOPFLOW_TESTENV=embedded"},
		{name: "docker, Docker answers", env: map[string]string{modeVar: "docker"}, answers: true, wantDocker: true, wantAsked: true},
		{name: "docker, no Docker", env: map[string]string{modeVar: "docker"}, wantAsked: true,
			wantErr: "testenv: SHOPFLOW_TESTENV=docker, but " + noEngine},
		{name: "a typo", env: map[string]string{modeVar: "Embedded"}, answers: true,
			wantErr: `testenv: SHOPFLOW_TESTENV="Embedded": want "embedded" (the embedded broker and the local PostgreSQL), "docker" (containers; fail if no Docker engine answers) or unset`},
		{name: "another backend's name", env: map[string]string{modeVar: "containers"}, answers: true,
			wantErr: `testenv: SHOPFLOW_TESTENV="containers": want "embedded"`},
		{name: "both TEST_ variables, docker", env: map[string]string{modeVar: "docker", "TEST_KAFKA_BROKERS": "k:9092", "TEST_DATABASE_URL": "postgres://x"},
			wantWhyEmbedded: "TEST_KAFKA_BROKERS and TEST_DATABASE_URL set"},
		{name: "TEST_DATABASE_URL only", env: map[string]string{"TEST_DATABASE_URL": "postgres://x"}, answers: true, wantDocker: true, wantAsked: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asked := false
			c := choose(context.Background(), func(k string) string { return tc.env[k] }, func(context.Context) (bool, string) {
				asked = true
				if tc.answers {
					return true, ""
				}
				return false, noEngine
			})
			if tc.wantErr != "" {
				if c.err == nil || !strings.HasPrefix(c.err.Error(), tc.wantErr) {
					t.Errorf("err = %v, want one starting %q", c.err, tc.wantErr)
				}
				return
			}
			if c.err != nil || c.docker != tc.wantDocker || asked != tc.wantAsked || c.noDocker != tc.wantWhyEmbedded {
				t.Errorf("err %v, docker %v, asked Docker %v, why not %q; want nil, %v, %v, %q",
					c.err, c.docker, asked, c.noDocker, tc.wantDocker, tc.wantAsked, tc.wantWhyEmbedded)
			}
		})
	}
}

// helper runs this test binary as a helper (TestMain) with env added,
// and returns what it printed.
func helper(t *testing.T, what string, env ...string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), helperVar+"="+what), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper %s: %v\n%s", what, err, out)
	}
	return string(out)
}

// TestStartsOnlyWhatATestAsksFor: a test binary whose tests ask only for
// databases starts no broker (on the Docker path each test binary
// started a Kafka container, a JVM of 1 GB, whatever its tests needed).
func TestStartsOnlyWhatATestAsksFor(t *testing.T) {
	t.Parallel()
	out := helper(t, "postgres", modeVar+"=embedded", "TEST_KAFKA_BROKERS=")
	if !strings.Contains(out, "testenv: postgres: ") || strings.Contains(out, "kafka") {
		t.Errorf("a test binary that asked for PostgreSQL printed %q; want its PostgreSQL and no broker", out)
	}
}
