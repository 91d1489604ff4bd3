package testenv

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
)

// With Ryuk disabled (TESTCONTAINERS_RYUK_DISABLED=true, or ryuk.disabled
// in ~/.testcontainers.properties: podman on macOS, CI that cannot run
// privileged containers), nothing removed the containers a test binary
// started: each make test left two per test binary running. testenv then
// runs a reaper of its own, as Ryuk would: this test binary again, as a
// child whose stdin is a pipe from this process. It reads the IDs of the
// containers started here, and when the pipe closes (this process ended,
// however: its tests done, a panic, go test's timeout, a SIGKILL) it
// removes them. It ignores the signals a Ctrl-C or a closed terminal
// sends the whole process group, so that it outlives this process.

// reaperVar makes a test binary that imports testenv a reaper (init).
const reaperVar = "SHOPFLOW_TESTENV_REAPER"

// reaperLog is where reapers write what they could not remove.
var reaperLog = filepath.Join(os.TempDir(), "shopflow-testenv-reaper.log")

func init() {
	if os.Getenv(reaperVar) == "1" {
		os.Exit(reap(os.Stdin, os.Stderr))
	}
}

var reaper struct {
	mu  sync.Mutex
	w   io.WriteCloser // the reaper's stdin; never closed here
	err error          // the reaper did not start
}

// removeAtExit has c removed once this process ends, when Ryuk will not.
// c may be nil (nothing was created).
func removeAtExit(c *testcontainers.DockerContainer) {
	if c == nil || !testcontainers.ReadConfig().Config.RyukDisabled {
		return
	}
	id := c.GetContainerID()
	if err := reapAtExit(id); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: Ryuk is disabled and nothing will remove container %s when the tests end (%v); remove it with: docker rm -f %s\n", id, err, id)
	}
}

// reapAtExit hands id to this process's reaper, starting it first.
func reapAtExit(id string) error {
	reaper.mu.Lock()
	defer reaper.mu.Unlock()
	if reaper.w == nil && reaper.err == nil {
		reaper.w, reaper.err = startReaper()
	}
	if reaper.err != nil {
		return reaper.err
	}
	_, err := fmt.Fprintln(reaper.w, id)
	return err
}

func startReaper() (io.WriteCloser, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("start the reaper: %w", err)
	}
	logf, err := os.OpenFile(reaperLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start the reaper: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), reaperVar+"=1")
	cmd.Stderr = logf // not this process's stderr: go test would wait for the reaper to close it
	w, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start the reaper: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the reaper: %w", err)
	}
	go func() { _ = cmd.Wait() }() // it outlives this process, unless it fails early
	return w, nil
}

// reap is the reaper: it reads container IDs from in, one a line, until
// in ends, then removes those containers. It returns the exit status.
func reap(in io.Reader, log io.Writer) int {
	signal.Ignore(os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	var ids []string
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if id := strings.TrimSpace(sc.Text()); id != "" {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		fmt.Fprintf(log, "%s testenv reaper: %v; left behind: docker rm -f %s\n", time.Now().Format(time.RFC3339), err, strings.Join(ids, " "))
		return 1
	}
	defer cli.Close()
	status := 0
	for _, id := range ids {
		_, err := cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			fmt.Fprintf(log, "%s testenv reaper: remove %s: %v; left behind: docker rm -f %s\n", time.Now().Format(time.RFC3339), id, err, id)
			status = 1
		}
	}
	return status
}
