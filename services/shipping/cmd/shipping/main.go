// Command shipping runs shopflow's shipping service: it reads its
// configuration from the environment (see package shipping), runs until
// SIGINT or SIGTERM, then shuts down gracefully; a second signal forces
// the stop (exit status 1).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/shopflow/shopflow/pkg/platform/logging"
	"github.com/shopflow/shopflow/pkg/platform/service"
	"github.com/shopflow/shopflow/services/shipping"
)

func main() {
	if status, run := service.Args(shipping.Name, os.Args[1:], shipping.Variables(), os.Stdout, os.Stderr); !run {
		os.Exit(status)
	}
	service.TuneGC()
	ctx, stop := service.Signals(context.Background())
	defer stop()
	cfg, err := shipping.LoadConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, "shipping:", err)
		os.Exit(2)
	}
	log, err := logging.New(os.Stderr, cfg.LogLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "shipping:", err)
		os.Exit(2)
	}
	if err := shipping.Run(ctx, cfg, log); err != nil {
		log.Error("shipping stopped", "err", err)
		stop()
		os.Exit(1)
	}
}
