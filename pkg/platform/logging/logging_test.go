package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestParseLevel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    slog.Level
		wantErr bool
	}{
		{in: "debug", want: slog.LevelDebug},
		{in: "info", want: slog.LevelInfo},
		{in: "warn", want: slog.LevelWarn},
		{in: "error", want: slog.LevelError},
		{in: " WARN ", want: slog.LevelWarn},
		{in: "", wantErr: true},
		{in: "verbose", wantErr: true},
		{in: "info+2", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseLevel(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseLevel(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("ParseLevel(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		level     string
		wantErr   string
		wantDebug bool
		wantInfo  bool
	}{
		{name: "debug logs everything", level: "debug", wantDebug: true, wantInfo: true},
		{name: "info hides debug", level: "info", wantInfo: true},
		{name: "error hides info", level: "error"},
		{name: "bad level names the variable", level: "loud", wantErr: `logging: LOG_LEVEL: "loud" is not one of debug, info, warn, error`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			log, err := New(&buf, tt.level)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("New error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			log.Debug("d")
			log.Info("i", "k", 1)
			out := buf.String()
			if got := strings.Contains(out, `"msg":"d"`); got != tt.wantDebug {
				t.Errorf("debug logged = %v, want %v; output %s", got, tt.wantDebug, out)
			}
			if got := strings.Contains(out, `"msg":"i"`); got != tt.wantInfo {
				t.Errorf("info logged = %v, want %v; output %s", got, tt.wantInfo, out)
			}
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				if line == "" {
					continue
				}
				var m map[string]any
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Errorf("line %q is not JSON: %v", line, err)
				}
			}
		})
	}
}

// Durations read as durations: "1s", not 1000000000 nanoseconds; also
// inside a group, and beside other values, which stay as they are.
func TestNewWritesDurationsAsStrings(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log, err := New(&buf, "info")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("retrying", "in", time.Second, "n", 3, slog.Group("g", "wait", 250*time.Millisecond))
	got := buf.String()
	for _, want := range []string{`"in":"1s"`, `"n":3`, `"g":{"wait":"250ms"}`} {
		if !strings.Contains(got, want) {
			t.Errorf("logged %s, want %s in it", got, want)
		}
	}
}
