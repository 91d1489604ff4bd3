package service_test

import (
	"os"
	"runtime/debug"
	"strconv"
	"testing"

	"github.com/shopflow/shopflow/pkg/platform/config"
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

// TestGOGCDefaultIsListed: the default a service's -h and its start-up
// log show for GOGC is the one TuneGC sets. They showed "GOGC=" (empty)
// while README's table said 400 and the runtime ran at 400.
func TestGOGCDefaultIsListed(t *testing.T) {
	for _, v := range config.Variables[config.Common]() {
		if v.Name == "GOGC" {
			if want := strconv.Itoa(service.DefaultGCPercent); v.Default != want {
				t.Errorf("GOGC's listed default is %q, want %q (service.DefaultGCPercent)", v.Default, want)
			}
			return
		}
	}
	t.Fatal("config.Common lists no GOGC")
}
