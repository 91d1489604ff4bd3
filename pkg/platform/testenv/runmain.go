package testenv

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// runMainVar asks a test binary to run its main instead of its tests.
const runMainVar = "SHOPFLOW_TEST_RUN_MAIN"

// RunMain is a command's TestMain: it runs the tests, or, in a process
// MainExit started, the command's main itself.
func RunMain(m *testing.M, main func()) {
	if os.Getenv(runMainVar) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// MainExit runs the test binary's main (its TestMain calls RunMain) with
// env added to this process's environment, and returns its exit status
// and what it wrote to stderr.
func MainExit(t testing.TB, env ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), runMainVar+"=1"), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, stderr.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), stderr.String()
	}
	t.Fatalf("run main: %v", err)
	return 0, ""
}

// MainNamesItselfInConfigErrors runs a service's main (MainExit) with
// DATABASE_URL empty and wants exit status 2 and stderr starting
// "<service>: config: DATABASE_URL: missing", as every service says it.
func MainNamesItselfInConfigErrors(t *testing.T, service string) {
	t.Helper()
	code, stderr := MainExit(t, "DATABASE_URL=", "LOG_LEVEL=info")
	if want := service + ": config: DATABASE_URL: missing\n"; code != 2 || !strings.HasPrefix(stderr, want) {
		t.Errorf("exit status %d, stderr %q; want 2 and a start of %q", code, stderr, want)
	}
}
