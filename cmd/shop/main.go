// Command shop is shopflow's developer and operator tool.
//
//	shop broker [--addr 127.0.0.1:9092] [--data-dir DIR]   run the embedded Kafka-protocol broker
//	shop dev    [--data-dir .data] [--order-addr 127.0.0.1:8080 ...]  run the suite on the embedded defaults (make run)
//	shop seed   [--order URL] [--inventory URL]             load the demo catalog and stock (idempotent)
//	shop check  [--database-url URL] [--wait D] [--json]    check the cross-service invariants (exit 1 on violations, 3 when orders in flight were not checked)
//	shop dlq    list|replay|poison [--group G] [--offset N|--all]  list and replay dead letters; poison makes one
//	shop load   [--orders N] [--concurrency C] [--rate R] [--mix ...] [--json]   place orders and report
//
// seed, check, dlq and load talk to a running suite: what their flags and
// variables do not name they take from the shop dev running with their
// --data-dir (default .data, as shop dev's), which records its database,
// broker and service URLs in <data-dir>/dev.json while it runs (package
// devstate), else from the defaults; either way they say which on stderr.
//
// Every command stops gracefully on SIGINT/SIGTERM. shop load, stopped
// before it is done, reports what it placed and exits with status 130
// (143 for SIGTERM); a second signal ends it at once. A second one forces
// shop dev's stop (its services' drain and shutdown cut short; exit
// status 130 or 143 too), and a third ends any command at once.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"

	"github.com/shopflow/shopflow/pkg/platform/logging"
	"github.com/shopflow/shopflow/pkg/platform/service"
)

const usage = `usage: shop <command> [flags]

commands:
  broker   run the embedded Kafka-protocol broker (kfake) with persistence
  dev      run the development suite on the embedded defaults (what make run runs)
  seed     load the demo catalog and stock into running services (idempotent)
  check    check the cross-service invariants; exit 1 listing each violation
  dlq      list and replay dead letters (shop dlq list | replay); make one (shop dlq poison)
  load     place orders of every kind and report throughput and latency

Run "shop <command> -h" for a command's flags.
`

func main() {
	service.TuneGC()
	// The first SIGINT or SIGTERM ends ctx; the second forces shop dev's
	// services to stop (service.Signals).
	ctx, stop := service.Signals(context.Background())
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var fail *failure
		if errors.As(err, &fail) {
			// The command ran and found problems (e.g. shop check's
			// violations); it has printed them.
			os.Exit(cmp.Or(fail.status, 1))
		}
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0) // -h: the usage was printed, as asked
		}
		if _, ok := errors.AsType[*interrupted](err); ok {
			fmt.Fprintln(os.Stderr, "shop:", err)
			var s os.Signal // which one stopped it
			if se, ok := errors.AsType[*service.SignalError](context.Cause(ctx)); ok {
				s = se.Signal
			}
			os.Exit(exitStatus(s))
		}
		fmt.Fprintln(os.Stderr, "shop:", err)
		os.Exit(2)
	}
}

// failure is returned by a command that ran to the end and found what it
// was checking for wanting (exit status 1, or status when set: shop
// check's 3 for orders left unchecked); any other error is a usage or
// operational error (exit status 2).
type failure struct {
	msg    string
	status int
}

func (f *failure) Error() string { return f.msg }

// interrupted is returned by a command that SIGINT or SIGTERM stopped
// before it was done, once it has reported what it did (exit status
// exitStatus).
type interrupted struct{ msg string }

func (e *interrupted) Error() string { return e.msg }

// exitStatus is the exit status of a command that s interrupted: 128 +
// the signal's number, what a shell reports for a program that signal
// killed (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP).
func exitStatus(s os.Signal) int {
	if n, ok := s.(syscall.Signal); ok {
		return 128 + int(n)
	}
	return 128 + int(syscall.SIGINT)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: logging.ReplaceAttr}))
	switch args[0] {
	case "broker":
		return cmdBroker(ctx, args[1:], stdout, stderr, log)
	case "dev":
		return cmdDev(ctx, args[1:], stdout, stderr, log)
	case "seed":
		return cmdSeed(ctx, args[1:], stdout, stderr, log)
	case "check":
		return cmdCheck(ctx, args[1:], stdout, stderr, log)
	case "dlq":
		return cmdDLQ(ctx, args[1:], stdout, stderr, log)
	case "load":
		return cmdLoad(ctx, args[1:], stdout, stderr, log)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}
