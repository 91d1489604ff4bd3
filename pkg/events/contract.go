package events

import (
	"embed"
	"io/fs"
)

//go:embed asyncapi.yaml schemas/*.json
var contractFiles embed.FS

// Schemas returns the JSON Schemas (draft 2020-12) of the payloads, one file
// per event type named after it, e.g. "shop.order.placed.v1.json".
func Schemas() fs.FS {
	sub, err := fs.Sub(contractFiles, "schemas")
	if err != nil {
		panic(err) // the embedded directory is fixed at compile time
	}
	return sub
}

// AsyncAPI returns the AsyncAPI 3.0 document (YAML) describing the topics,
// the messages with their headers and payload schemas (by relative $ref to
// the files of Schemas, as schemas/<type>.json), and the dead-letter topics.
// The slice is the caller's.
func AsyncAPI() []byte {
	b, err := contractFiles.ReadFile("asyncapi.yaml")
	if err != nil {
		panic(err) // embedded at compile time
	}
	return b
}
