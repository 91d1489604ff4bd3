package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/shopflow/shopflow/cmd/shop/devstate"
	"github.com/shopflow/shopflow/cmd/shop/suite"
)

// The commands that talk to a running suite (check, dlq, seed, load) take
// each address from, in order: its flag, its environment variable (where
// it has one), the record of the shop dev running with --data-dir
// (devstate), the built-in default. Taken from the record or the default,
// the address is said in one line on stderr, so that nobody checks or
// loads one suite believing it is another.

// defaultDataDir is shop dev's --data-dir default, which the other
// commands look in for its record.
const defaultDataDir = ".data"

// dataDirUsage is --data-dir's help for the commands that use a suite.
const dataDirUsage = "data directory of the shop dev whose suite to use when no flag or variable says otherwise (its " +
	devstate.StateFile + ")"

// runningDev returns the record of the shop dev running with dataDir, or
// nil when none runs with it and --data-dir was left at its default (the
// command's defaults apply). A record whose shop dev no longer runs is an
// error, never used: what it names may be gone (a private cluster, the
// embedded broker) or, worse, another suite may answer at the defaults.
// override names the flags and variables that would have said what to use,
// for the error.
func runningDev(fs *flag.FlagSet, dataDir, override string) (*devstate.State, error) {
	st, err := devstate.Read(dataDir)
	if stale, ok := errors.AsType[*devstate.StaleError](err); ok {
		again := "make run"
		if stale.State.Postgres == suite.SourcePrivate {
			// make run takes the local server whenever one answers.
			again = "shop dev --postgres private, for its private cluster"
		}
		return nil, fmt.Errorf("%w: start it again (%s), or say what to use with %s; remove %s to use the defaults",
			stale, again, override, filepath.Join(dataDir, devstate.StateFile))
	}
	if _, ok := errors.AsType[*devstate.StartingError](err); ok {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("--data-dir %s: %w", dataDir, err)
	}
	if st == nil && flagSet(fs, "data-dir") {
		return nil, fmt.Errorf("--data-dir %s: no shop dev runs with it (no %s); or say what to use with %s",
			dataDir, filepath.Join(dataDir, devstate.StateFile), override)
	}
	return st, nil
}

// devName names the shop dev of st, running with dataDir, for people.
func devName(st *devstate.State, dataDir string) string {
	return devstate.Name(st.PID, dataDir)
}

// sayTarget writes the line telling what command uses (what), taken from
// st, or the defaults when st is nil.
func sayTarget(w io.Writer, command, what string, st *devstate.State, dataDir string) {
	if st != nil {
		fmt.Fprintf(w, "shop %s: %s, from %s\n", command, what, devName(st, dataDir))
		return
	}
	fmt.Fprintf(w, "shop %s: %s (the default: no shop dev runs with --data-dir %s)\n", command, what, dataDir)
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
