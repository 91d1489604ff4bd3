package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMain runs main itself when asked to by TestConfigErrorNamesTheService.
func TestMain(m *testing.M) {
	if os.Getenv("SHOPFLOW_TEST_RUN_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// A configuration error is said on stderr as "order: config: ...", as every
// service says it (only order named itself), and exits 2.
func TestConfigErrorNamesTheService(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SHOPFLOW_TEST_RUN_MAIN=1", "DATABASE_URL=", "LOG_LEVEL=info")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	exit, ok := err.(*exec.ExitError)
	if !ok || exit.ExitCode() != 2 {
		t.Fatalf("err = %v, want exit status 2; stderr:\n%s", err, stderr.String())
	}
	if want := "order: config: DATABASE_URL: missing\n"; !strings.HasPrefix(stderr.String(), want) {
		t.Errorf("stderr = %q, want it to start with %q", stderr.String(), want)
	}
}
