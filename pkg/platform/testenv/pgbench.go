package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

var tpsLine = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// Pgbench runs pgbench with script (its custom SQL) and args (clients,
// duration, the database URL, ...), with env added to its environment
// (e.g. PGOPTIONS), and returns the transactions per second it reports
// without its connection time. The benchmarks run it beside the service
// they measure; it fails tb when pgbench is missing or fails.
func Pgbench(tb testing.TB, script string, env []string, args ...string) float64 {
	tb.Helper()
	bin, err := exec.LookPath("pgbench")
	if err != nil {
		tb.Fatalf("pgbench is needed beside this benchmark (Debian: postgresql-client): %v", err)
	}
	file := filepath.Join(tb.TempDir(), "script.sql")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"-n", "-f", file}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("pgbench: %v\n%s", err, out)
	}
	m := tpsLine.FindSubmatch(out)
	if m == nil {
		tb.Fatalf("pgbench printed no tps:\n%s", out)
	}
	tps, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		tb.Fatalf("pgbench tps %q: %v", m[1], err)
	}
	return tps
}
