package service

import (
	"fmt"
	"io"

	"github.com/shopflow/shopflow/pkg/platform/config"
)

// Args handles a service binary's command line, before anything is read or
// started. A service takes its configuration from the environment and no
// arguments: -h, -help or --help prints the usage (the variables and their
// defaults) on stdout and asks for exit status 0; any other argument is
// refused on stderr with status 2. Without arguments it returns run true.
// (An argument used to be ignored: `order --help` started a service.)
func Args(name string, args []string, vars []config.Variable, stdout, stderr io.Writer) (status int, run bool) {
	switch {
	case len(args) == 0:
		return 0, true
	case len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help"):
		usage(stdout, name, vars)
		return 0, false
	}
	fmt.Fprintf(stderr, "%s: takes no arguments, got %q; it is configured by environment variables (%s -h lists them)\n", name, args, name)
	return 2, false
}

func usage(w io.Writer, name string, vars []config.Variable) {
	fmt.Fprintf(w, "usage: %s\n\n", name)
	fmt.Fprintf(w, "Runs shopflow's %s service until SIGINT or SIGTERM, which stop it gracefully.\n", name)
	fmt.Fprintf(w, "It takes no arguments; these environment variables configure it, shown with\n")
	fmt.Fprintf(w, "their defaults (an empty one counts as unset; README \"Configuration\" says\n")
	fmt.Fprintf(w, "what each does; DATABASE_URL must be set):\n\n")
	for _, v := range vars {
		fmt.Fprintf(w, "  %s=%s\n", v.Name, v.Default)
	}
}
