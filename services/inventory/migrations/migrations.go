// Package migrations embeds the inventory schema's migrations (tern
// format), applied at start-up after the outbox's and the inbox's.
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed *.sql
var files embed.FS

// Table is the version table of these migrations.
const Table = "inventory_version"

// FS returns the migration files.
func FS() fs.FS { return files }
