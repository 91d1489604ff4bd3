package main

import (
	"testing"

	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

func TestMain(m *testing.M) { testenv.RunMain(m, main) }

// A configuration error is said on stderr as "shipping: config: ...", as every
// service says it (only order named itself), and exits 2.
func TestConfigErrorNamesTheService(t *testing.T) {
	t.Parallel()
	testenv.MainNamesItselfInConfigErrors(t, "shipping")
}

// -h and --help print the usage; an argument is refused, never ignored
// (`shipping --help` used to start the service).
func TestArguments(t *testing.T) {
	t.Parallel()
	testenv.MainTakesNoArguments(t, "shipping")
}
