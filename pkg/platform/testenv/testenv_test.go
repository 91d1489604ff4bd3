package testenv

import (
	"context"
	"strings"
	"testing"
)

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
