// Command order runs shopflow's order service. Configuration comes from
// the environment (DATABASE_URL, KAFKA_BROKERS, HTTP_ADDR, ...; see the
// README); SIGINT or SIGTERM stops it gracefully, and a second one forces
// the stop (exit status 1).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/shopflow/shopflow/pkg/platform/logging"
	"github.com/shopflow/shopflow/pkg/platform/service"
	"github.com/shopflow/shopflow/services/order"
)

func main() {
	if status, run := service.Args(order.Name, os.Args[1:], order.Variables(), os.Stdout, os.Stderr); !run {
		os.Exit(status)
	}
	service.TuneGC()
	ctx, stop := service.Signals(context.Background())
	defer stop()
	cfg, err := order.LoadConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, "order:", err)
		os.Exit(2)
	}
	log, err := logging.New(os.Stderr, cfg.LogLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "order:", err)
		os.Exit(2)
	}
	if err := order.Run(ctx, cfg, log); err != nil {
		log.Error("order service failed", "err", err)
		stop()
		os.Exit(1)
	}
}
