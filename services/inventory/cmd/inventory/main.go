// Command inventory runs shopflow's inventory service; see package
// github.com/shopflow/shopflow/services/inventory for what it does and
// its configuration. SIGINT or SIGTERM stops it gracefully, and a second
// one forces the stop (exit status 1).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/shopflow/shopflow/pkg/platform/logging"
	"github.com/shopflow/shopflow/pkg/platform/service"
	"github.com/shopflow/shopflow/services/inventory"
)

func main() {
	if status, run := service.Args(inventory.Name, os.Args[1:], inventory.Variables(), os.Stdout, os.Stderr); !run {
		os.Exit(status)
	}
	service.TuneGC()
	ctx, stop := service.Signals(context.Background())
	defer stop()
	cfg, err := inventory.LoadConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, "inventory:", err)
		os.Exit(2)
	}
	log, err := logging.New(os.Stderr, cfg.LogLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "inventory:", err)
		os.Exit(2)
	}
	if err := inventory.Run(ctx, cfg, log); err != nil {
		log.Error("inventory stopped", "err", err)
		stop()
		os.Exit(1)
	}
}
