package service_test

import (
	"os"
	"runtime/debug"
	"testing"

	"github.com/shopflow/shopflow/pkg/platform/service"
)

func TestTuneGC(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)

	if v, ok := os.LookupEnv("GOGC"); ok {
		defer os.Setenv("GOGC", v)
	}
	os.Unsetenv("GOGC")
	service.TuneGC()
	if got := debug.SetGCPercent(100); got != service.DefaultGCPercent {
		t.Errorf("without GOGC: GC percent %d, want %d", got, service.DefaultGCPercent)
	}

	// Empty is unset, as for every other variable.
	t.Setenv("GOGC", "")
	debug.SetGCPercent(100) // as the runtime read it at start
	service.TuneGC()
	if got := debug.SetGCPercent(100); got != service.DefaultGCPercent {
		t.Errorf("with GOGC empty: GC percent %d, want %d", got, service.DefaultGCPercent)
	}

	t.Setenv("GOGC", "150")
	debug.SetGCPercent(150) // as the runtime read it at start
	service.TuneGC()
	if got := debug.SetGCPercent(100); got != 150 {
		t.Errorf("with GOGC=150: GC percent %d, want it left alone", got)
	}
}
