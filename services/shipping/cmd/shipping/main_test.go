package main

import (
	"testing"

	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

func TestMain(m *testing.M) { testenv.RunMain(m, main) }

// A configuration error is said on stderr as "shipping: config: ...", as every
// service says it, and exits 2; -h and --help print the usage, and an
// argument is refused, never ignored (`shipping --help` used to start the
// service).
func TestCommandLine(t *testing.T) {
	t.Parallel()
	testenv.ServiceMain(t, "shipping")
}
