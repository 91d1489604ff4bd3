package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/shopflow/shopflow/pkg/platform/broker"
)

// cmdDev runs the development suite. So far that is the embedded broker;
// the services join it as they land (ARCHITECTURE.md, "Commands").
func cmdDev(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("shop dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", ".data", "directory for the suite's persistent state")
	kafkaAddr := fs.String("kafka-addr", "127.0.0.1:9092", "embedded broker address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b, err := broker.Start(broker.Config{Addr: *kafkaAddr, DataDir: filepath.Join(*dataDir, "kafka"), Logger: log})
	if err != nil {
		return err
	}
	defer b.Close()
	fmt.Fprintf(stdout, "shopflow dev\n  kafka: %s (data in %s)\nCtrl-C stops everything.\n", b.Addr(), filepath.Join(*dataDir, "kafka"))
	<-ctx.Done()
	fmt.Fprintln(stdout, "stopping")
	return nil
}
