package shipping

import (
	"embed"
	"io/fs"

	"github.com/shopflow/shopflow/pkg/platform/pg"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// MigrationsTable is the version table of the service's own migrations.
const MigrationsTable = "shipping_version"

// Migrations returns the service's own schema migrations (tern format),
// applied by Run after the outbox's and the inbox's.
func Migrations() pg.Migrations {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embedded path is fixed at compile time
	}
	return pg.Migrations{Name: MigrationsTable, FS: sub}
}
