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

func cmdBroker(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("shop broker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9092", "host:port to listen on")
	dataDir := fs.String("data-dir", filepath.Join(".data", "kafka"), "directory persisting topics, records and group offsets (empty: memory only)")
	syncWrites := fs.Bool("sync", false, "fsync every produced batch (survives power loss, slower)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("broker: unexpected argument %q", fs.Arg(0))
	}
	b, err := broker.Start(broker.Config{Addr: *addr, DataDir: *dataDir, SyncWrites: *syncWrites, Logger: log})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "broker listening on %s (data: %s); Ctrl-C stops it\n", b.Addr(), orMemory(*dataDir))
	<-ctx.Done()
	b.Close()
	fmt.Fprintln(stdout, "broker stopped; state saved")
	return nil
}

func orMemory(dir string) string {
	if dir == "" {
		return "memory only"
	}
	return dir
}
