package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binaries holds the suite's programs, built once per test process from
// this checkout (the crash test runs them as separate processes).
var binaries struct {
	once sync.Once
	dir  string
	err  error
}

// buildBinaries builds bin/order, payment, inventory, shipping and shop
// into a temporary directory and returns it.
func buildBinaries(t *testing.T) string {
	t.Helper()
	binaries.once.Do(func() {
		dir, err := os.MkdirTemp("", "shopflow-e2e-bin-")
		if err != nil {
			binaries.err = err
			return
		}
		binaries.dir = dir
		root, err := filepath.Abs("..")
		if err != nil {
			binaries.err = err
			return
		}
		cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator),
			"./services/order/cmd/order", "./services/payment/cmd/payment", "./services/inventory/cmd/inventory",
			"./services/shipping/cmd/shipping", "./cmd/shop")
		cmd.Dir = root
		// Build from the workspace, whatever GOWORK this test runs with.
		cmd.Env = append(os.Environ(), "GOWORK="+filepath.Join(root, "go.work"))
		if out, err := cmd.CombinedOutput(); err != nil {
			binaries.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binaries.err != nil {
		t.Fatal(binaries.err)
	}
	return binaries.dir
}

// proc is a program the test starts, kills and restarts.
type proc struct {
	t     *testing.T
	name  string
	path  string
	args  []string
	env   []string
	log   string // file collecting every run's output
	ready func() error

	mu    sync.Mutex
	cmd   *exec.Cmd
	done  chan struct{}
	runs  int
	kills int
}

func (p *proc) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	p.runs++
	fmt.Fprintf(f, "\n=== run %d at %s\n", p.runs, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	p.cmd, p.done = cmd, done
}

// waitReady polls ready until it succeeds or a minute passes.
func (p *proc) waitReady() {
	p.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		err := p.ready()
		if err == nil {
			return
		}
		p.mu.Lock()
		done := p.done
		p.mu.Unlock()
		select {
		case <-done:
			p.t.Fatalf("%s exited while starting; log:\n%s", p.name, tail(p.log, 40))
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s not ready after a minute: %v; log:\n%s", p.name, err, tail(p.log, 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// exited reports whether the program last started has ended. Between a
// kill and the restart it has; the crash test asks only while every
// service should be running.
func (p *proc) exited() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL: no shutdown code runs.
func (p *proc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.kills++
	p.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// stop sends SIGTERM and waits for a graceful exit.
func (p *proc) stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		p.t.Errorf("%s did not stop within 30 s of SIGTERM; killing it", p.name)
		_ = cmd.Process.Kill()
		<-done
	}
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	ls := strings.Split(string(bytes.TrimSpace(b)), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}
