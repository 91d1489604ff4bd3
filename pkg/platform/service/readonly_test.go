package service_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shopflow/shopflow/pkg/platform/service"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// TestAReadOnlyDatabaseIsNotReady: a database that answers but refuses
// every write (a standby after a failover, default_transaction_read_only)
// makes /readyz say so, where a ping kept it at 200 while every write
// failed (a trial); once it takes writes again, the service is ready.
func TestAReadOnlyDatabaseIsNotReady(t *testing.T) {
	t.Parallel()
	common := testenv.Common(t)
	spec, setup := echoSpec()
	addr, _ := testenv.Serve(t, func(ctx context.Context, started func(string)) error {
		return service.Run(service.OnStarted(ctx, started), spec, common, slog.New(slog.DiscardHandler), setup)
	})
	base := "http://" + addr
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, common.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(ctx) })
	var db string
	if err := admin.QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil {
		t.Fatal(err)
	}
	// New sessions start read-only; the service's current ones are ended
	// so that its pool opens new ones.
	setReadOnly := func(on bool) {
		t.Helper()
		q := `ALTER DATABASE ` + pgx.Identifier{db}.Sanitize() + ` SET default_transaction_read_only = on`
		if !on {
			q = `ALTER DATABASE ` + pgx.Identifier{db}.Sanitize() + ` RESET default_transaction_read_only`
		}
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 30*time.Second, "never ready at first", func() bool { s, _ := readyz(base); return s == http.StatusOK })
	setReadOnly(true)
	t.Cleanup(func() { setReadOnly(false) })
	var status int
	var body string
	testenv.Eventually(t, 30*time.Second, "/readyz never said the database is read-only", func() bool {
		status, body = readyz(base)
		return status == http.StatusServiceUnavailable && strings.Contains(body, "read-only")
	})
	setReadOnly(false)
	testenv.Eventually(t, 30*time.Second, "/readyz never ready again", func() bool { s, _ := readyz(base); return s == http.StatusOK })
}
