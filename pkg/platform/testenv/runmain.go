package testenv

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runMainVar asks a test binary to run its main instead of its tests.
const runMainVar = "SHOPFLOW_TEST_RUN_MAIN"

// RunMain is a command's TestMain: it runs the tests, or, in a process
// MainExit started, the command's main itself, with the arguments MainExit
// gave it as os.Args[1:].
func RunMain(m *testing.M, main func()) {
	if os.Getenv(runMainVar) == "1" {
		if i := slices.Index(os.Args, "--"); i >= 0 {
			os.Args = append([]string{os.Args[0]}, os.Args[i+1:]...)
		}
		main()
		return
	}
	os.Exit(m.Run())
}

// MainExit runs the test binary's main (its TestMain calls RunMain) with
// args and with env added to this process's environment, and returns its
// exit status and what it wrote to stdout and stderr.
func MainExit(t testing.TB, args []string, env ...string) (status int, stdout, stderr string) {
	t.Helper()
	cmd := mainCommand(args, env...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errOut.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), out.String(), errOut.String()
	}
	t.Fatalf("run main: %v", err)
	return 0, "", ""
}

// mainCommand is the test binary run as its main (RunMain) with args, and
// with env added to this process's environment.
func mainCommand(args []string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--"}, args...)...)
	cmd.Env = append(append(os.Environ(), runMainVar+"=1"), env...)
	return cmd
}

// MainStopForcedBySecondSignal runs a service's main (RunMain) on this
// test's database and brokers, with SHUTDOWN_DRAIN_DELAY at its longest
// (5m), sends it SIGTERM once it has started and SIGTERM again once it
// drains: the second must force the stop, the process exiting within
// seconds, with status 1, its log saying the stop was forced. A second
// signal used to change nothing: the service drained for the 5 minutes.
func MainStopForcedBySecondSignal(t *testing.T, service string) {
	t.Helper()
	cmd := mainCommand(nil, "DATABASE_URL="+DatabaseURL(t), "KAFKA_BROKERS="+strings.Join(Kafka(t), ","),
		"KAFKA_TOPIC_PREFIX="+Prefix(t), "HTTP_ADDR=127.0.0.1:0", "LOG_LEVEL=info", "SHUTDOWN_DRAIN_DELAY=5m")
	var out SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() }) // gone already, unless the test failed
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	logged := func(msg string, within time.Duration) {
		t.Helper()
		for deadline := time.Now().Add(within); !strings.Contains(out.String(), `"msg":"`+msg+`"`); {
			select {
			case err := <-exited:
				t.Fatalf("%s exited (%v) before logging %q:\n%s", service, err, msg, out.String())
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s has not logged %q after %s:\n%s", service, msg, within, out.String())
			}
		}
	}
	terminate := func() {
		t.Helper()
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	logged("started", time.Minute)
	terminate()
	logged("draining: /readyz answers 503, everything else is served, until the shutdown begins", 30*time.Second)
	terminate()
	began := time.Now()
	select {
	case err := <-exited:
		took := time.Since(began)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || took > 10*time.Second {
			t.Errorf("%s exited %s after the second SIGTERM: %v; want status 1 within 10 s\n%s", service, took.Round(time.Millisecond), err, out.String())
		}
		if !strings.Contains(out.String(), `"msg":"stop forced by a second signal`) {
			t.Errorf("%s's log does not say the stop was forced:\n%s", service, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s still running 30 s after a second SIGTERM, with SHUTDOWN_DRAIN_DELAY 5m:\n%s", service, out.String())
	}
}

// MainNamesItselfInConfigErrors runs a service's main (MainExit) with
// DATABASE_URL empty and wants exit status 2 and stderr starting
// "<service>: config: DATABASE_URL: missing", as every service says it.
func MainNamesItselfInConfigErrors(t *testing.T, service string) {
	t.Helper()
	code, _, stderr := MainExit(t, nil, "DATABASE_URL=", "LOG_LEVEL=info")
	if want := service + ": config: DATABASE_URL: missing\n"; code != 2 || !strings.HasPrefix(stderr, want) {
		t.Errorf("exit status %d, stderr %q; want 2 and a start of %q", code, stderr, want)
	}
}

// MainTakesNoArguments runs a service's main with -h and --help, which
// must print its usage (listing DATABASE_URL) and exit 0, and with a stray
// argument, which must be refused with exit status 2, both before the
// configuration is read (DATABASE_URL is empty, so a main that read it
// would exit 2 saying so).
func MainTakesNoArguments(t *testing.T, service string) {
	t.Helper()
	for _, help := range []string{"-h", "--help"} {
		code, stdout, stderr := MainExit(t, []string{help}, "DATABASE_URL=")
		if code != 0 || !strings.HasPrefix(stdout, "usage: "+service+"\n") || !strings.Contains(stdout, "\n  DATABASE_URL=") {
			t.Errorf("%s %s: exit status %d, stdout %q, stderr %q; want 0 and the usage with the variables", service, help, code, stdout, stderr)
		}
	}
	code, stdout, stderr := MainExit(t, []string{"serve", "--port=1"}, "DATABASE_URL=")
	if want := service + ": takes no arguments, got [\"serve\" \"--port=1\"]"; code != 2 || stdout != "" || !strings.HasPrefix(stderr, want) {
		t.Errorf("%s serve --port=1: exit status %d, stdout %q, stderr %q; want 2 and a start of %q", service, code, stdout, stderr, want)
	}
}

// ServiceMain is a service binary's main test: it names itself in its
// configuration errors (MainNamesItselfInConfigErrors), takes no
// arguments (MainTakesNoArguments), and lets a second signal force its
// stop (MainStopForcedBySecondSignal).
func ServiceMain(t *testing.T, service string) {
	t.Run("config error", func(t *testing.T) {
		t.Parallel()
		MainNamesItselfInConfigErrors(t, service)
	})
	t.Run("arguments", func(t *testing.T) {
		t.Parallel()
		MainTakesNoArguments(t, service)
	})
	t.Run("second signal", func(t *testing.T) {
		t.Parallel()
		MainStopForcedBySecondSignal(t, service)
	})
}
