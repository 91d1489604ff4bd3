// Package logging builds the structured logger every shopflow process
// uses: JSON lines through log/slog, at the level named by LOG_LEVEL.
//
// It is deliberately tiny and standard-library only so that anything (the
// services, cmd/shop, tests) can use it without pulling in the rest of the
// platform.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// ParseLevel turns a LOG_LEVEL value (debug, info, warn or error; case and
// surrounding space ignored) into a slog.Level.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not one of debug, info, warn, error", s)
}

// New returns a logger writing JSON lines to w at the given level (see
// ParseLevel), time.Duration values as strings ("1s", "250ms": see
// ReplaceAttr). A bad level is an error naming LOG_LEVEL, so start-up can
// report it as a configuration mistake.
func New(w io.Writer, level string) (*slog.Logger, error) {
	l, err := ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("logging: LOG_LEVEL: %w", err)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l, ReplaceAttr: ReplaceAttr})), nil
}

// ReplaceAttr is New's slog.HandlerOptions.ReplaceAttr: a time.Duration
// becomes its String ("1s"), where slog's JSON handler writes integer
// nanoseconds ("in":1000000000) that a reader has to count the zeros of.
// Everything else is kept as it is.
func ReplaceAttr(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}
