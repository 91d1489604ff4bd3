package events

// The contract files (schemas/*.json, asyncapi.yaml) are generated from the
// payload types: field names and kinds from the Go types and json tags,
// constraints from the event tags (the same compiled specs Decode and
// Validate use), and descriptions from the doc comments. TestContractFiles
// regenerates them in memory and fails when the committed files differ;
// run it with -update (or go generate) to rewrite them.

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

var update = flag.Bool("update", false, "rewrite schemas/*.json and asyncapi.yaml from the Go types")

const regenerate = "run `go generate` in pkg/events (go test -run=TestContractFiles -update) and commit the result"

func TestContractFiles(t *testing.T) {
	want, err := generateContracts()
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := filepath.Glob("schemas/*")
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		for _, name := range onDisk {
			if _, ok := want[filepath.ToSlash(name)]; !ok {
				if err := os.Remove(name); err != nil {
					t.Fatal(err)
				}
			}
		}
		for name, b := range want {
			if err := os.WriteFile(filepath.FromSlash(name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	for _, name := range onDisk {
		if _, ok := want[filepath.ToSlash(name)]; !ok {
			t.Errorf("%s is not generated from any event type; %s", name, regenerate)
		}
	}
	for _, name := range slices.Sorted(mapKeys(want)) {
		got, err := os.ReadFile(filepath.FromSlash(name))
		if err != nil {
			t.Errorf("%v; %s", err, regenerate)
			continue
		}
		if !bytes.Equal(got, want[name]) {
			t.Errorf("%s is stale (first difference at line %d); %s", name, firstDiffLine(got, want[name]), regenerate)
		}
	}
}

// TestSchemasCoverTypes checks the embedded files: one schema per type, no
// other file, and an AsyncAPI message per type.
func TestSchemasCoverTypes(t *testing.T) {
	entries, err := fs.ReadDir(Schemas(), ".")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	var want []string
	for _, typ := range Types() {
		want = append(want, string(typ)+".json")
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("embedded schemas = %v, want %v; %s", got, want, regenerate)
	}
	for _, name := range got {
		b, err := fs.ReadFile(Schemas(), name)
		if err != nil {
			t.Fatal(err)
		}
		var s map[string]any
		if err := json.Unmarshal(b, &s); err != nil {
			t.Errorf("%s: %v", name, err)
		} else if s["title"] != strings.TrimSuffix(name, ".json") {
			t.Errorf("%s: title %v", name, s["title"])
		}
	}
	doc, err := parseYAML(string(AsyncAPI()))
	if err != nil {
		t.Fatalf("asyncapi.yaml: %v", err)
	}
	for _, p := range payloadTypes {
		typ := p.EventType()
		ref := lookup(doc, "components", "messages", reflect.TypeOf(p).Name(), "payload", "$ref")
		if want := "./schemas/" + string(typ) + ".json"; ref != want {
			t.Errorf("asyncapi.yaml: payload of %s is %v, want $ref %s", typ, ref, want)
		}
		if name := lookup(doc, "components", "messages", reflect.TypeOf(p).Name(), "name"); name != string(typ) {
			t.Errorf("asyncapi.yaml: message name %v, want %s", name, typ)
		}
	}
	for _, topic := range []string{TopicOrders, TopicPayments, TopicInventory, TopicShipments, DLQTopic("{group}")} {
		found := false
		for _, ch := range lookup(doc, "channels").(obj) {
			found = found || lookup(ch.val.(obj), "address") == topic
		}
		if !found {
			t.Errorf("asyncapi.yaml has no channel for %s", topic)
		}
	}
}

// TestAsyncAPIYAML parses the YAML (with a parser for the block subset the
// generator writes) and checks it holds the document the generator built.
func TestAsyncAPIYAML(t *testing.T) {
	want := asyncAPIDoc()
	got, err := parseYAML(string(AsyncAPI()))
	if err != nil {
		t.Fatalf("asyncapi.yaml: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("asyncapi.yaml does not parse back to the generated document; %s", regenerate)
	}
	for _, key := range []string{"asyncapi", "info", "servers", "channels", "operations", "components"} {
		if _, ok := want.get(key); !ok {
			t.Errorf("document lacks %s", key)
		}
	}
	if v, _ := want.get("asyncapi"); v != "3.0.0" {
		t.Errorf("asyncapi: %v", v)
	}
}

// TestYAMLRoundTrip checks the writer and the test parser on awkward scalars.
func TestYAMLRoundTrip(t *testing.T) {
	doc := obj{
		{"plain", "a b/c.d"}, {"needs quotes", "a: b # c"}, {"$ref", "#/x"}, {"yes", "no"},
		{"num", "1.0"}, {"int", 12}, {"bool", true}, {"empty", obj{}}, {"none", []any{}},
		{"list", []any{"x", "a: b", obj{{"k", "v"}, {"k2", []any{1, 2}}}, []any{"nested"}}},
		{"multi", "line\nbreak \"quoted\" \\ \t"}, {"trailing ", " space "},
	}
	got, err := parseYAML(yamlText(doc))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, doc) {
		t.Errorf("round trip:\n%s\ngot %#v", yamlText(doc), got)
	}
}

func generateContracts() (map[string][]byte, error) {
	files := map[string][]byte{"asyncapi.yaml": []byte(yamlText(asyncAPIDoc()))}
	for _, typ := range Types() {
		s, err := schemaDoc(typ)
		if err != nil {
			return nil, err
		}
		files["schemas/"+string(typ)+".json"] = []byte(jsonText(s))
	}
	return files, nil
}

// ---- the JSON Schemas ----

const jsonSchemaDialect = "https://json-schema.org/draft/2020-12/schema"

func schemaDoc(typ Type) (obj, error) {
	spec := specOf(typ)
	doc, err := sourceDocs()
	if err != nil {
		return nil, err
	}
	var defs obj
	var objectSchema func(s *structSpec) (obj, error)
	fieldSchema := func(s *structSpec, f field) (obj, error) {
		desc, ok := doc[s.typ.Name()+"."+f.goName]
		if !ok {
			return nil, fmt.Errorf("%s.%s has no doc comment", s.typ.Name(), f.goName)
		}
		ref := func() (obj, error) {
			name := f.elem.typ.Name()
			if _, ok := defs.get(name); !ok {
				defs = append(defs, member{name, nil}) // reserve the slot: $defs in first-use order
				d, err := objectSchema(f.elem)
				if err != nil {
					return nil, err
				}
				defs.set(name, d)
			}
			return obj{{"$ref", "#/$defs/" + name}}, nil
		}
		switch f.kind {
		case kindString:
			if f.optional {
				o := obj{{"type", []any{"string", "null"}}, {"description", desc}}
				if f.maxLen > 0 {
					o = append(o, member{"maxLength", f.maxLen})
				}
				return o, nil
			}
			o := obj{{"type", "string"}, {"description", desc}, {"minLength", 1}}
			if f.maxLen > 0 {
				o = append(o, member{"maxLength", f.maxLen})
			}
			if f.format != "" {
				o = append(o, member{"pattern", formats[f.format].pattern})
			}
			if f.enum != nil {
				o = append(o, member{"enum", anys(f.enum)})
			}
			return o, nil
		case kindInt:
			o := obj{{"type", "integer"}, {"description", desc}, {"minimum", int(f.min)}}
			if f.hasMax {
				o = append(o, member{"maximum", int(f.max)})
			}
			return o, nil
		case kindTime:
			return obj{{"type", "string"}, {"description", desc}, {"format", "date-time"}}, nil
		case kindObject:
			r, err := ref()
			return append(r, member{"description", desc}), err
		case kindList:
			r, err := ref()
			return obj{{"type", "array"}, {"description", desc}, {"minItems", 1}, {"maxItems", f.maxItems}, {"items", r}}, err
		}
		return nil, fmt.Errorf("%s.%s: unknown kind", s.typ.Name(), f.goName)
	}
	objectSchema = func(s *structSpec) (obj, error) {
		desc, ok := doc[s.typ.Name()]
		if !ok {
			return nil, fmt.Errorf("%s has no doc comment", s.typ.Name())
		}
		var required []any
		var props obj
		for _, f := range s.fields {
			if !f.optional {
				required = append(required, f.name)
			}
			fs, err := fieldSchema(s, f)
			if err != nil {
				return nil, err
			}
			props = append(props, member{f.name, fs})
		}
		return obj{
			{"type", "object"}, {"description", desc}, {"required", required},
			{"properties", props}, {"additionalProperties", true},
		}, nil
	}
	body, err := objectSchema(spec)
	if err != nil {
		return nil, err
	}
	desc, _ := body.get("description")
	desc = fmt.Sprintf("%s It is the payload (Kafka record value) of CloudEvents type %s on topic %s; "+
		"the record key and ce_subject are its order_id. Unknown properties are allowed: "+
		"additive changes keep the type, breaking ones get a new version.", desc, typ, typ.Topic())
	out := obj{{"$schema", jsonSchemaDialect}, {"title", string(typ)}, {"description", desc}, {"$comment", strictNote}}
	for _, m := range body {
		if m.key != "description" {
			out = append(out, m)
		}
	}
	if len(defs) > 0 {
		out = append(out, member{"$defs", defs})
	}
	return out, nil
}

// sourceDocs reads the doc comments of the package's types and struct
// fields ("Type" and "Type.Field"), joined into one line each. A field doc
// "X is the ..." becomes "The ...".
func sourceDocs() (map[string]string, error) {
	fset := token.NewFileSet()
	names, err := filepath.Glob("*.go")
	if err != nil {
		return nil, err
	}
	docs := map[string]string{}
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				cg := ts.Doc
				if cg == nil && len(gd.Specs) == 1 {
					cg = gd.Doc
				}
				if cg != nil {
					docs[ts.Name.Name] = oneLine(cg.Text())
				}
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					continue
				}
				for _, fld := range st.Fields.List {
					cg := fld.Doc
					if cg == nil {
						cg = fld.Comment
					}
					for _, id := range fld.Names {
						if cg != nil {
							docs[ts.Name.Name+"."+id.Name] = fieldDoc(id.Name, oneLine(cg.Text()))
						}
					}
				}
			}
		}
	}
	return docs, nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func fieldDoc(name, doc string) string {
	for _, verb := range []string{" is ", " are "} {
		if rest, ok := strings.CutPrefix(doc, name+verb); ok && rest != "" {
			r := []rune(rest)
			r[0] = unicode.ToUpper(r[0])
			return string(r)
		}
	}
	return doc
}

// ---- the AsyncAPI document ----

// asyncAPIVersion is the version of the contract as a whole (info.version):
// bump the minor for additive changes, the major when a type is retired.
const asyncAPIVersion = "1.0.0"

const kafkaBindingVersion = "0.5.0"

// channels lists the event topics, their producer and their consumer groups.
var channels = []struct {
	id, address, producer string
	groups                []string
	summary               string
}{
	{"orders", TopicOrders, "order", []string{"inventory", "payment", "shipping"},
		"Order lifecycle events, published by the order service. Payment, inventory and shipping react to them."},
	{"payments", TopicPayments, "payment", []string{"order"},
		"Payment results and refunds, published by the payment service."},
	{"inventory", TopicInventory, "inventory", []string{"order"},
		"Stock reservation results and releases, published by the inventory service."},
	{"shipments", TopicShipments, "shipping", []string{"order"},
		"Shipment scheduling results and cancellations, published by the shipping service."},
}

func groups(gs []string) string {
	if len(gs) == 1 {
		return "consumer group " + gs[0]
	}
	return "consumer groups " + strings.Join(gs, ", ")
}

// cloudEventHeaders describes the envelope headers, in Encode's order.
func cloudEventHeaders() obj {
	var types []any
	for _, t := range Types() {
		types = append(types, string(t))
	}
	str := func(desc string, more ...member) obj {
		return append(obj{{"type", "string"}, {"description", desc}}, more...)
	}
	return obj{
		{"type", "object"},
		{"description", "CloudEvents 1.0 attributes in Kafka binary content mode: one record header each, UTF-8. Other headers may be present."},
		{"required", []any{HeaderSpecVersion, HeaderID, HeaderSource, HeaderType, HeaderTime, HeaderSubject, HeaderContentType}},
		{"properties", obj{
			{HeaderSpecVersion, str("CloudEvents spec version.", member{"const", SpecVersion})},
			{HeaderID, str("Event id, a UUIDv7; consumers deduplicate on it.", member{"format", "uuid"})},
			{HeaderSource, str("URI reference of the producing service, e.g. /shopflow/order.", member{"format", "uri-reference"}, member{"minLength", 1})},
			{HeaderType, str("Event type; selects the payload schema.", member{"enum", types})},
			{HeaderTime, str("When the event happened, RFC 3339 with nanoseconds, UTC.", member{"format", "date-time"})},
			{HeaderSubject, str("The order id; equals the payload's order_id and the record key.", member{"minLength", 1})},
			{HeaderContentType, str("Media type of the record value.", member{"const", ContentType})},
			{HeaderTraceParent, str("W3C Trace Context traceparent, present when tracing is on.", member{"pattern", traceParentRE.String()})},
		}},
		{"additionalProperties", true},
	}
}

// strictNote is what Decode refuses that the schema cannot: a producer
// validating against the schema alone could still be dead-lettered.
var strictNote = "Consumers decode more strictly than this schema can say: integers have no fraction or exponent " +
	"(2, not 2.0 or 2e0); date-times are RFC 3339 with an upper-case T and Z (or an offset), no leap second, " +
	"and never 0001-01-01T00:00:00Z; total_cents is the sum of the lines' quantity times unit_price_cents; " +
	"no string holds U+0000 (NUL), which PostgreSQL cannot store in text; and the payload is at most " +
	strconv.Itoa(MaxPayloadBytes) + " bytes. A record that breaks these goes to the consumer's dead-letter topic."

// deadLetterHeaders describes what a consumer adds when it dead-letters a record.
func deadLetterHeaders() obj {
	str := func(desc string, more ...member) obj {
		return append(obj{{"type", "string"}, {"description", desc}}, more...)
	}
	decimal := member{"pattern", "^[0-9]+$"}
	return obj{
		{"type", "object"},
		{"description", "Headers a consumer group adds to a record it cannot apply, besides the record's original headers (the CloudEvents ones, when it had them)."},
		{"required", []any{HeaderDLQError, HeaderDLQSourceTopic, HeaderDLQSourcePartition, HeaderDLQSourceOffset, HeaderDLQGroup, HeaderDLQAttempts, HeaderDLQFailedAt}},
		{"properties", obj{
			{HeaderDLQError, str("Why the record failed: the decode error or the handler's last error.", member{"minLength", 1})},
			{HeaderDLQSourceTopic, str("Topic the record was read from.", member{"minLength", 1})},
			{HeaderDLQSourcePartition, str("Partition it was read from, decimal.", decimal)},
			{HeaderDLQSourceOffset, str("Offset it was read from, decimal.", decimal)},
			{HeaderDLQGroup, str("Consumer group that gave up on it.", member{"minLength", 1})},
			{HeaderDLQAttempts, str("How many attempts were made to apply it, decimal.", decimal)},
			{HeaderDLQFailedAt, str("When it was dead-lettered, RFC 3339 UTC.", member{"format", "date-time"})},
			{HeaderDLQOmitted, str("Set when the record was too large for the dead-letter topic with its key, value and original headers: it says their sizes, and the dead letter carries none of them (read the record at its source offset).", member{"minLength", 1})},
		}},
		{"additionalProperties", true},
	}
}

func asyncAPIDoc() obj {
	docs, err := sourceDocs()
	if err != nil {
		panic(err) // tests only: the package's own sources
	}
	messages := obj{}
	for _, p := range payloadTypes {
		typ, name := p.EventType(), reflect.TypeOf(p).Name()
		doc := docs[name]
		summary, _, _ := strings.Cut(fieldDoc(name, doc), ";")
		summary, _, _ = strings.Cut(summary, ". ")
		messages = append(messages, member{name, obj{
			{"name", string(typ)},
			{"title", name},
			{"summary", strings.TrimSuffix(summary, ".") + "."},
			{"description", doc},
			{"contentType", ContentType},
			{"headers", obj{{"allOf", []any{
				obj{{"$ref", "#/components/schemas/CloudEventHeaders"}},
				obj{{"type", "object"}, {"properties", obj{{HeaderType, obj{{"const", string(typ)}}}}}},
			}}}},
			{"payload", obj{{"$ref", "./schemas/" + string(typ) + ".json"}}},
			{"correlationId", obj{{"$ref", "#/components/correlationIds/OrderID"}}},
			{"bindings", obj{{"kafka", obj{
				{"key", obj{{"type", "string"}, {"description", "The order id (ce_subject)."}}},
				{"bindingVersion", kafkaBindingVersion},
			}}}},
		}})
	}
	messages = append(messages, member{"DeadLetter", obj{
		{"name", "dead-letter"},
		{"title", "DeadLetter"},
		{"summary", "A record a consumer group could not decode or apply."},
		{"description", "The original record, key and value unchanged, with the original headers plus the dlq_* headers. Replay it to its source topic once the cause is fixed."},
		{"headers", obj{{"$ref", "#/components/schemas/DeadLetterHeaders"}}},
		{"payload", obj{{"description", "The original record value, unchanged (usually one of the event payloads, but possibly undecodable)."}}},
	}})

	chans := obj{}
	ops := obj{}
	for _, c := range channels {
		var refs, opRefs []any
		chMsgs := obj{}
		for _, p := range payloadTypes {
			if p.EventType().Topic() != c.address {
				continue
			}
			name := reflect.TypeOf(p).Name()
			chMsgs = append(chMsgs, member{name, obj{{"$ref", "#/components/messages/" + name}}})
			opRefs = append(opRefs, obj{{"$ref", "#/channels/" + c.id + "/messages/" + name}})
		}
		refs = opRefs
		chans = append(chans, member{c.id, obj{
			{"address", c.address},
			{"title", c.address},
			{"description", c.summary + " Keyed by order id, so each order's events stay in order on one partition."},
			{"messages", chMsgs},
			{"bindings", obj{{"kafka", obj{
				{"topic", c.address}, {"partitions", 12}, {"bindingVersion", kafkaBindingVersion},
			}}}},
		}})
		title := strings.ToUpper(c.id[:1]) + c.id[1:]
		ops = append(ops,
			member{"send" + title, obj{
				{"action", "send"},
				{"channel", obj{{"$ref", "#/channels/" + c.id}}},
				{"summary", "The " + c.producer + " service publishes through its transactional outbox."},
				{"messages", refs},
			}},
			member{"receive" + title, obj{
				{"action", "receive"},
				{"channel", obj{{"$ref", "#/channels/" + c.id}}},
				{"summary", "Consumed, idempotently through an inbox, by " + groups(c.groups) + "."},
				{"messages", refs},
				{"bindings", obj{{"kafka", obj{
					{"groupId", obj{{"type", "string"}, {"enum", anys(c.groups)}}},
					{"bindingVersion", kafkaBindingVersion},
				}}}},
			}},
		)
	}
	chans = append(chans, member{"deadLetters", obj{
		{"address", DLQTopic("{group}")},
		{"title", DLQTopic("<group>")},
		{"description", "A consumer group's dead-letter topic: records it could not decode, or kept failing to apply. Nothing is dropped silently."},
		{"parameters", obj{{"group", obj{{"description", "The consumer group (order, payment, inventory, shipping)."}}}}},
		{"messages", obj{{"DeadLetter", obj{{"$ref", "#/components/messages/DeadLetter"}}}}},
	}})
	dlqMsgs := []any{obj{{"$ref", "#/channels/deadLetters/messages/DeadLetter"}}}
	ops = append(ops,
		member{"sendDeadLetters", obj{
			{"action", "send"},
			{"channel", obj{{"$ref", "#/channels/deadLetters"}}},
			{"summary", "A consumer group dead-letters a record, then moves on in its partition."},
			{"messages", dlqMsgs},
		}},
		member{"receiveDeadLetters", obj{
			{"action", "receive"},
			{"channel", obj{{"$ref", "#/channels/deadLetters"}}},
			{"summary", "Operators inspect and replay dead letters (shop dlq)."},
			{"messages", dlqMsgs},
		}},
	)

	return obj{
		{"asyncapi", "3.0.0"},
		{"info", obj{
			{"title", "shopflow events"},
			{"version", asyncAPIVersion},
			{"description", "Events of the shopflow order saga, generated from github.com/shopflow/shopflow/pkg/events. " +
				"Each event is a CloudEvents 1.0 record in Kafka binary content mode: the envelope in ce_* headers, " +
				"the JSON payload as the value, the order id as the key. Payload schemas are JSON Schema draft 2020-12 " +
				"files using only keywords that mean the same in draft-07. Money is integer minor units plus an ISO 4217 currency."},
		}},
		{"defaultContentType", ContentType},
		{"servers", obj{{"local", obj{
			{"host", "localhost:9092"},
			{"protocol", "kafka"},
			{"description", "The development broker (shop broker, or Apache Kafka in docker compose)."},
		}}}},
		{"channels", chans},
		{"operations", ops},
		{"components", obj{
			{"schemas", obj{
				{"CloudEventHeaders", cloudEventHeaders()},
				{"DeadLetterHeaders", deadLetterHeaders()},
			}},
			{"messages", messages},
			{"correlationIds", obj{{"OrderID", obj{
				{"description", "Every event of one order carries its id."},
				{"location", "$message.header#/" + HeaderSubject},
			}}}},
		}},
	}
}

// ---- the ordered document tree and its JSON and YAML writers ----

// obj is a JSON object that keeps its keys in order. Values are obj, []any,
// string, int or bool.
type obj []member

type member struct {
	key string
	val any
}

func (o obj) get(key string) (any, bool) {
	for _, m := range o {
		if m.key == key {
			return m.val, true
		}
	}
	return nil, false
}

// lookup follows keys down nested objects; nil when a key is missing.
func lookup(o obj, keys ...string) any {
	var v any = o
	for _, k := range keys {
		o, ok := v.(obj)
		if !ok {
			return nil
		}
		v, _ = o.get(k)
	}
	return v
}

func (o obj) set(key string, val any) {
	for i := range o {
		if o[i].key == key {
			o[i].val = val
		}
	}
}

func anys(ss []string) []any {
	a := make([]any, len(ss))
	for i, s := range ss {
		a[i] = s
	}
	return a
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func jsonString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		panic(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func jsonText(v any) string {
	var b strings.Builder
	writeJSON(&b, v, "")
	b.WriteByte('\n')
	return b.String()
}

func writeJSON(b *strings.Builder, v any, indent string) {
	in := indent + "  "
	switch v := v.(type) {
	case obj:
		if len(v) == 0 {
			b.WriteString("{}")
			return
		}
		b.WriteString("{\n")
		for i, m := range v {
			b.WriteString(in + jsonString(m.key) + ": ")
			writeJSON(b, m.val, in)
			if i < len(v)-1 {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString(indent + "}")
	case []any:
		if len(v) == 0 {
			b.WriteString("[]")
			return
		}
		if scalars(v) { // short lists of names read best on one line
			b.WriteByte('[')
			for i, x := range v {
				if i > 0 {
					b.WriteString(", ")
				}
				writeJSON(b, x, in)
			}
			b.WriteByte(']')
			return
		}
		b.WriteString("[\n")
		for i, x := range v {
			b.WriteString(in)
			writeJSON(b, x, in)
			if i < len(v)-1 {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString(indent + "]")
	case string:
		b.WriteString(jsonString(v))
	case int:
		b.WriteString(strconv.Itoa(v))
	case bool:
		b.WriteString(strconv.FormatBool(v))
	default:
		panic(fmt.Sprintf("writeJSON: %T", v))
	}
}

func scalars(a []any) bool {
	for _, x := range a {
		switch x.(type) {
		case obj, []any:
			return false
		}
	}
	return true
}

var (
	yamlPlainKey   = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_.$-]*$`)
	yamlPlainValue = regexp.MustCompile(`^[A-Za-z_/]([A-Za-z0-9 _./(),'-]*[A-Za-z0-9_./)])?$`)
	yamlReserved   = regexp.MustCompile(`^(?i:y|n|yes|no|true|false|on|off|null)$`)
)

// yamlScalar writes s plain when that is unambiguous, else as a JSON string,
// which YAML reads as the same double-quoted scalar.
func yamlScalar(v any, key bool) string {
	s, ok := v.(string)
	if !ok {
		return jsonText(v)[:len(jsonText(v))-1]
	}
	re := yamlPlainValue
	if key {
		re = yamlPlainKey
	}
	if re.MatchString(s) && !yamlReserved.MatchString(s) && !strings.Contains(s, " -") {
		return s
	}
	return jsonString(s)
}

func yamlText(v obj) string {
	var b strings.Builder
	writeYAML(&b, v, "")
	return b.String()
}

// writeYAML writes a block mapping or sequence, each line at indent or
// deeper; empty collections and scalars go inline.
func writeYAML(b *strings.Builder, v any, indent string) {
	inline := func(x any) (string, bool) {
		switch x := x.(type) {
		case obj:
			return "{}", len(x) == 0
		case []any:
			return "[]", len(x) == 0
		}
		return yamlScalar(x, false), true
	}
	switch v := v.(type) {
	case obj:
		for _, m := range v {
			b.WriteString(indent + yamlScalar(m.key, true) + ":")
			if s, ok := inline(m.val); ok {
				b.WriteString(" " + s + "\n")
				continue
			}
			b.WriteByte('\n')
			writeYAML(b, m.val, indent+"  ")
		}
	case []any:
		for _, x := range v {
			if s, ok := inline(x); ok {
				b.WriteString(indent + "- " + s + "\n")
				continue
			}
			var item strings.Builder
			writeYAML(&item, x, indent+"  ")
			b.WriteString(indent + "- " + strings.TrimPrefix(item.String(), indent+"  "))
		}
	}
}

// parseYAML reads the YAML subset writeYAML emits: block mappings and
// sequences indented by two spaces, plain or double-quoted scalars, {} and [].
func parseYAML(text string) (obj, error) {
	var lines []yamlLine
	for i, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		trimmed := strings.TrimLeft(l, " ")
		if trimmed == "" || strings.HasPrefix(trimmed, "#") || strings.ContainsRune(l, '\t') && !strings.Contains(l, `"`) {
			return nil, fmt.Errorf("line %d: unexpected %q", i+1, l)
		}
		lines = append(lines, yamlLine{no: i + 1, indent: len(l) - len(trimmed), text: trimmed})
	}
	p := &yamlParser{lines: lines}
	v, err := p.block(0)
	if err != nil {
		return nil, err
	}
	if p.i != len(lines) {
		return nil, fmt.Errorf("line %d: unexpected indentation", lines[p.i].no)
	}
	o, ok := v.(obj)
	if !ok {
		return nil, fmt.Errorf("top level is not a mapping")
	}
	return o, nil
}

type yamlLine struct {
	no, indent int
	text       string
}

type yamlParser struct {
	lines []yamlLine
	i     int
}

func (p *yamlParser) block(indent int) (any, error) {
	if p.i >= len(p.lines) || p.lines[p.i].indent != indent {
		return nil, fmt.Errorf("expected a block at indent %d", indent)
	}
	if l := p.lines[p.i]; l.text == "-" || strings.HasPrefix(l.text, "- ") {
		seq := []any{}
		for p.i < len(p.lines) && p.lines[p.i].indent == indent && strings.HasPrefix(p.lines[p.i].text, "- ") {
			rest := p.lines[p.i].text[2:]
			if s, err := yamlValue(rest); err == nil && !yamlEntry(rest) {
				seq = append(seq, s)
				p.i++
				continue
			}
			// "- key: v" or "- - x": the rest is a block at indent+2.
			p.lines[p.i] = yamlLine{no: p.lines[p.i].no, indent: indent + 2, text: rest}
			v, err := p.block(indent + 2)
			if err != nil {
				return nil, err
			}
			seq = append(seq, v)
		}
		return seq, nil
	}
	o := obj{}
	for p.i < len(p.lines) && p.lines[p.i].indent == indent {
		l := p.lines[p.i]
		key, rest, err := yamlKey(l.text)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", l.no, err)
		}
		if _, dup := o.get(key); dup {
			return nil, fmt.Errorf("line %d: duplicate key %q", l.no, key)
		}
		p.i++
		if rest != "" {
			v, err := yamlValue(rest)
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", l.no, err)
			}
			o = append(o, member{key, v})
			continue
		}
		if p.i >= len(p.lines) || p.lines[p.i].indent <= indent {
			return nil, fmt.Errorf("line %d: %q has no value", l.no, key)
		}
		v, err := p.block(p.lines[p.i].indent)
		if err != nil {
			return nil, err
		}
		o = append(o, member{key, v})
	}
	return o, nil
}

// yamlEntry reports whether s is a mapping entry, "key: value" or "key:".
func yamlEntry(s string) bool {
	if strings.HasPrefix(s, `"`) {
		_, n, err := yamlQuoted(s)
		return err == nil && n < len(s) && s[n] == ':'
	}
	return strings.Contains(s, ": ") || strings.HasSuffix(s, ":")
}

// yamlKey splits "key: value" or "key:" into the key and the value text.
func yamlKey(s string) (key, rest string, err error) {
	if strings.HasPrefix(s, `"`) {
		q, n, err := yamlQuoted(s)
		if err != nil {
			return "", "", err
		}
		s = s[n:]
		if s == ":" {
			return q, "", nil
		}
		if !strings.HasPrefix(s, ": ") {
			return "", "", fmt.Errorf("want ': ' after the key")
		}
		return q, s[2:], nil
	}
	if k, ok := strings.CutSuffix(s, ":"); ok && !strings.Contains(k, ": ") {
		return k, "", nil
	}
	k, r, ok := strings.Cut(s, ": ")
	if !ok {
		return "", "", fmt.Errorf("not a mapping entry: %q", s)
	}
	return k, r, nil
}

// yamlQuoted reads the double-quoted scalar at the start of s and returns it
// and its length.
func yamlQuoted(s string) (string, int, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	var v string
	if err := dec.Decode(&v); err != nil {
		return "", 0, err
	}
	return v, int(dec.InputOffset()), nil
}

func yamlValue(s string) (any, error) {
	switch {
	case s == "{}":
		return obj{}, nil
	case s == "[]":
		return []any{}, nil
	case s == "true" || s == "false":
		return s == "true", nil
	case strings.HasPrefix(s, `"`):
		v, n, err := yamlQuoted(s)
		if err == nil && n != len(s) {
			err = fmt.Errorf("trailing text after %q", s[:n])
		}
		return v, err
	case strings.ContainsAny(s[:1], "0123456789-"):
		n, err := strconv.Atoi(s)
		return n, err
	case strings.Contains(s, ": ") || strings.Contains(s, " #") || strings.ContainsAny(s[:1], "#&*!|>'%@`{}[],?"):
		return nil, fmt.Errorf("ambiguous plain scalar %q", s)
	}
	return s, nil
}

func firstDiffLine(a, b []byte) int {
	la, lb := bytes.Split(a, []byte("\n")), bytes.Split(b, []byte("\n"))
	for i := range min(len(la), len(lb)) {
		if !bytes.Equal(la[i], lb[i]) {
			return i + 1
		}
	}
	return min(len(la), len(lb)) + 1
}
