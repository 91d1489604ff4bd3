// Command payment runs shopflow's payment service: configured from the
// environment (DATABASE_URL, KAFKA_BROKERS, HTTP_ADDR, LOG_LEVEL,
// PAYMENT_GATEWAY_LATENCY, ...), stopped gracefully by SIGINT or SIGTERM.
// It exits 2 on a configuration error and 1 when the service fails or a
// second signal forces its stop.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/shopflow/shopflow/pkg/platform/logging"
	"github.com/shopflow/shopflow/pkg/platform/service"
	"github.com/shopflow/shopflow/services/payment"
)

func main() {
	if status, run := service.Args(payment.Name, os.Args[1:], payment.Variables(), os.Stdout, os.Stderr); !run {
		os.Exit(status)
	}
	service.TuneGC()
	ctx, stop := service.Signals(context.Background())
	code := run(ctx)
	stop()
	os.Exit(code)
}

func run(ctx context.Context) int {
	cfg, err := payment.LoadConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, "payment:", err)
		return 2
	}
	log, err := logging.New(os.Stderr, cfg.LogLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "payment:", err)
		return 2
	}
	if err := payment.Run(ctx, cfg, log); err != nil {
		log.Error("payment failed", "err", err)
		return 1
	}
	return 0
}
