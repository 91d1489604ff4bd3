package main

import (
	"testing"

	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

func TestMain(m *testing.M) { testenv.RunMain(m, main) }

// A configuration error is said on stderr as "order: config: ...", as every
// service says it (only order named itself), and exits 2.
func TestConfigErrorNamesTheService(t *testing.T) {
	t.Parallel()
	testenv.MainNamesItselfInConfigErrors(t, "order")
}

// -h and --help print the usage; an argument is refused, never ignored
// (`order --help` used to start the service).
func TestArguments(t *testing.T) {
	t.Parallel()
	testenv.MainTakesNoArguments(t, "order")
}
