package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
)

// helperVar makes this test binary, started by a test below, do one thing
// in place of its tests (TestMain), in a process of its own: what a test
// binary does before its first test, for a test that can see it only
// from outside, or on the Docker path against a fake engine
// (testcontainers keeps the Docker host it found for the life of a
// process).
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
	case "kafka":
		// A test asking for Kafka: prints the error every test would fail with.
		fmt.Println(kafkaStarted().err)
	case "reap":
		// A test binary that started a container, then ends.
		removeAtExit(&testcontainers.DockerContainer{ID: os.Getenv("TESTENV_TEST_CONTAINER")})
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

// fakeEngine is a Docker engine's API on a unix socket, answering ping,
// info and version as a running daemon does and the rest with handle's
// answer (path without its /v1.xx prefix). It records each request.
type fakeEngine struct {
	host string // for DOCKER_HOST

	mu       sync.Mutex
	requests []string
}

func startFakeEngine(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, path string)) *fakeEngine {
	t.Helper()
	dir, err := os.MkdirTemp("", "tcfake") // short: a unix socket's path has a limit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	e := &fakeEngine{host: "unix://" + sock}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if i := strings.Index(p[1:], "/"); strings.HasPrefix(p, "/v1.") && i > 0 {
			p = p[i+1:]
		}
		e.mu.Lock()
		e.requests = append(e.requests, r.Method+" "+p+"?"+r.URL.RawQuery)
		e.mu.Unlock()
		w.Header().Set("Api-Version", "1.47")
		w.Header().Set("Ostype", "linux")
		w.Header().Set("Content-Type", "application/json")
		switch p {
		case "/_ping":
			fmt.Fprint(w, "OK")
		case "/info":
			fmt.Fprint(w, `{"ID":"fake","ServerVersion":"27.0.0","OperatingSystem":"Fake Linux","OSType":"linux"}`)
		case "/version":
			fmt.Fprint(w, `{"Version":"27.0.0","ApiVersion":"1.47","MinAPIVersion":"1.24","Os":"linux"}`)
		default:
			handle(w, r, p)
		}
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return e
}

// count returns how many requests start with prefix ("POST /images/create").
func (e *fakeEngine) count(prefix string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, r := range e.requests {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

// noImages answers an image inspect as an engine without the image.
func noImages(w http.ResponseWriter, path string) bool {
	if strings.HasPrefix(path, "/images/") && strings.HasSuffix(path, "/json") {
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"message":"No such image"}`)
		return true
	}
	return false
}

// refusedPulls is an engine that has no image and answers every pull
// status, as an offline daemon or an overloaded registry does.
func refusedPulls(status int) func(w http.ResponseWriter, r *http.Request, path string) {
	return func(w http.ResponseWriter, r *http.Request, path string) {
		const bridge = `{"Name":"bridge","Id":"b1","Driver":"bridge","Scope":"local","IPAM":{"Config":[{"Subnet":"172.17.0.0/16","Gateway":"172.17.0.1"}]}}`
		switch {
		case noImages(w, path):
		case path == "/networks":
			fmt.Fprint(w, "["+bridge+"]")
		case strings.HasPrefix(path, "/networks/"):
			fmt.Fprint(w, bridge)
		case path == "/images/create":
			w.WriteHeader(status)
			fmt.Fprint(w, `{"message":"Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup registry-1.docker.io: server misbehaving"}`)
		default:
			w.WriteHeader(http.StatusNotImplemented)
			fmt.Fprintf(w, `{"message":"fake engine: %s not implemented"}`, path)
		}
	}
}

// TestPullGivesUp: a pull the engine keeps refusing with a 503 is tried 3
// times, not retried with backoff until setup's 5 minutes ran out (in each
// test binary); a refusal that will not change (500) is not tried again;
// a pull that stops reporting progress is given up, one that keeps
// reporting is not, however long it takes.
func TestPullGivesUp(t *testing.T) {
	t.Parallel()
	policy := pullPolicy{attempts: 3, delay: 10 * time.Millisecond, stall: time.Second}
	pull := func(t *testing.T, e *fakeEngine) error {
		cli, err := client.New(client.WithHost(e.host))
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return policy.pull(ctx, cli, "apache/kafka:3.9.1", "")
	}
	t.Run("503", func(t *testing.T) {
		t.Parallel()
		e := startFakeEngine(t, refusedPulls(http.StatusServiceUnavailable))
		err := pull(t, e)
		if n := e.count("POST /images/create"); err == nil || n != 3 || !strings.Contains(err.Error(), "attempt 3 of at most 3") {
			t.Errorf("%d pulls, err %v; want 3 and an error saying so", n, err)
		}
	})
	t.Run("500", func(t *testing.T) {
		t.Parallel()
		e := startFakeEngine(t, refusedPulls(http.StatusInternalServerError))
		err := pull(t, e)
		if n := e.count("POST /images/create"); err == nil || n != 1 || !strings.Contains(err.Error(), "registry-1.docker.io") {
			t.Errorf("%d pulls, err %v; want 1 and the engine's reason", n, err)
		}
	})
	t.Run("present", func(t *testing.T) {
		t.Parallel()
		e := startFakeEngine(t, func(w http.ResponseWriter, r *http.Request, path string) {
			if strings.HasPrefix(path, "/images/") && strings.HasSuffix(path, "/json") {
				fmt.Fprint(w, `{"Id":"sha256:abc","RepoTags":["apache/kafka:3.9.1"]}`)
				return
			}
			w.WriteHeader(http.StatusInternalServerError)
		})
		if err := pull(t, e); err != nil || e.count("POST /images/create") != 0 {
			t.Errorf("err %v, %d pulls; want nil and none", err, e.count("POST /images/create"))
		}
	})
	// progress writes n progress messages 300 ms apart, then hangs if
	// hang, else ends the pull.
	progress := func(n int, hang bool) func(w http.ResponseWriter, r *http.Request, path string) {
		return func(w http.ResponseWriter, r *http.Request, path string) {
			if noImages(w, path) {
				return
			}
			for i := range n {
				fmt.Fprintf(w, `{"status":"Downloading","id":"layer","progressDetail":{"current":%d,"total":10}}`+"\n", i)
				w.(http.Flusher).Flush()
				select {
				case <-time.After(300 * time.Millisecond):
				case <-r.Context().Done():
					return
				}
			}
			if hang {
				<-r.Context().Done()
				return
			}
			fmt.Fprint(w, `{"status":"Status: Downloaded newer image for apache/kafka:3.9.1"}`+"\n")
		}
	}
	t.Run("slow", func(t *testing.T) {
		t.Parallel()
		e := startFakeEngine(t, progress(10, false) /* 3 s, three times the stall bound */)
		if err := pull(t, e); err != nil || e.count("POST /images/create") != 1 {
			t.Errorf("err %v, %d pulls; want nil after one", err, e.count("POST /images/create"))
		}
	})
	t.Run("stalled", func(t *testing.T) {
		t.Parallel()
		e := startFakeEngine(t, progress(2, true))
		err := pull(t, e)
		if n := e.count("POST /images/create"); !errors.Is(err, errPullStalled) || n != 3 {
			t.Errorf("%d pulls, err %v; want 3 given up as stalled", n, err)
		}
	})
}

// helper runs this test binary as a helper (TestMain) with env added,
// and returns what it printed. Tests that call it do not run in parallel:
// between fork and exec the child holds every descriptor of this process,
// so a socket TestFreeAddr closes stays bound, and its next listen on
// that port found it in use (5 runs in 30).
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
	out := helper(t, "postgres", modeVar+"=embedded", "TEST_KAFKA_BROKERS=")
	if !strings.Contains(out, "testenv: postgres: ") || strings.Contains(out, "kafka") {
		t.Errorf("a test binary that asked for PostgreSQL printed %q; want its PostgreSQL and no broker", out)
	}
}

// TestContainerFailureSaysHowToRunEmbedded: on an engine whose pulls fail
// (503: the library retried for 5 minutes) a test binary's tests fail
// within seconds, saying how to run on the embedded backends.
func TestContainerFailureSaysHowToRunEmbedded(t *testing.T) {
	e := startFakeEngine(t, refusedPulls(http.StatusServiceUnavailable))
	start := time.Now()
	out := helper(t, "kafka", "DOCKER_HOST="+e.host, modeVar+"=docker", "TEST_KAFKA_BROKERS=", "TEST_DATABASE_URL=",
		"TESTCONTAINERS_HUB_IMAGE_NAME_PREFIX=", "HOME="+t.TempDir())
	took := time.Since(start)
	t.Logf("after %v: %s", took.Round(time.Millisecond), out)
	for _, want := range []string{"testenv: Docker answers but the Kafka container did not start: pull apache/kafka:3.9.1 (attempt 3 of at most 3)",
		"SHOPFLOW_TESTENV=embedded runs the tests on the embedded broker and the local PostgreSQL instead"} {
		if !strings.Contains(out, want) {
			t.Errorf("the error lacks %q", want)
		}
	}
	if n := e.count("POST /images/create"); n != 3 {
		t.Errorf("%d pulls, want 3", n)
	}
}

// TestReaperRemovesContainersAtExit: with Ryuk disabled, a container a
// test binary started is removed once the binary has ended (it used to
// be left running).
func TestReaperRemovesContainersAtExit(t *testing.T) {
	e := startFakeEngine(t, func(w http.ResponseWriter, r *http.Request, path string) {
		if r.Method == http.MethodDelete && strings.HasPrefix(path, "/containers/") {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"message":"not here"}`)
	})
	tmp := t.TempDir()
	helper(t, "reap", "DOCKER_HOST="+e.host, "TESTCONTAINERS_RYUK_DISABLED=true", "TESTENV_TEST_CONTAINER=c0ffee", "TMPDIR="+tmp, "HOME="+tmp)
	// The helper has ended; its reaper removes the container.
	want := "DELETE /containers/c0ffee?force=1&v=1"
	deadline := time.Now().Add(30 * time.Second)
	for e.count(want) == 0 {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(tmp, filepath.Base(reaperLog)))
			e.mu.Lock()
			got := e.requests
			e.mu.Unlock()
			t.Fatalf("after 30 s no %q; the engine got %q; reaper log: %s", want, got, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
