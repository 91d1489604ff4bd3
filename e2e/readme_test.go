package e2e

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/shopflow/shopflow/services/inventory"
	"github.com/shopflow/shopflow/services/order"
	"github.com/shopflow/shopflow/services/payment"
	"github.com/shopflow/shopflow/services/shipping"
)

// envVar is a variable a service reads, as its configuration declares it.
type envVar struct {
	def      string   // envDefault, "" when none
	services []string // the services that read it, in table order
}

// serviceEnv collects the variables the four services' configurations
// declare (the env tags of their fields, embedded and nested structs
// included).
func serviceEnv(t *testing.T) map[string]*envVar {
	t.Helper()
	vars := map[string]*envVar{}
	add := func(svc, name, def string) {
		v := vars[name]
		if v == nil {
			v = &envVar{def: def}
			vars[name] = v
		} else if v.def != def {
			t.Errorf("%s: default %q in one service, %q in another", name, v.def, def)
		}
		if !slices.Contains(v.services, svc) {
			v.services = append(v.services, svc)
		}
	}
	var walk func(svc string, typ reflect.Type)
	walk = func(svc string, typ reflect.Type) {
		for f := range typ.Fields() {
			if name, ok := f.Tag.Lookup("env"); ok {
				add(svc, strings.Split(name, ",")[0], f.Tag.Get("envDefault"))
				continue
			}
			if f.Type.Kind() == reflect.Struct {
				walk(svc, f.Type)
			}
		}
	}
	for _, s := range []struct {
		name string
		cfg  any
	}{{"order", order.Config{}}, {"payment", payment.Config{}}, {"inventory", inventory.Config{}}, {"shipping", shipping.Config{}}} {
		walk(s.name, reflect.TypeOf(s.cfg))
	}
	return vars
}

// TestREADMEConfiguration holds the README's configuration table to the
// code: every variable a service reads has one row, every row names
// variables that are read, by the services the row lists, and a row shows
// the variable's default where the code has one.
func TestREADMEConfiguration(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	start := strings.Index(text, "\n## Configuration\n")
	if start < 0 {
		t.Fatal(`README.md has no "## Configuration" section`)
	}
	section := text[start+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}

	code := serviceEnv(t)
	allServices := []string{"order", "payment", "inventory", "shipping"}
	seen := map[string]bool{}
	varName := regexp.MustCompile("`([A-Z][A-Z0-9_]+)`")
	rows := 0
	for line := range strings.SplitSeq(section, "\n") {
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if !strings.HasPrefix(line, "| `") || len(cells) != 4 {
			continue
		}
		rows++
		var services []string
		if cells[1] == "all" {
			services = allServices
		} else {
			services = strings.Split(cells[1], ", ")
		}
		for _, m := range varName.FindAllStringSubmatch(cells[0], -1) {
			name := m[1]
			if seen[name] {
				t.Errorf("%s has two rows", name)
			}
			seen[name] = true
			v, ok := code[name]
			if !ok {
				t.Errorf("the table lists %s, which no service reads", name)
				continue
			}
			if !slices.Equal(v.services, services) {
				t.Errorf("%s: the table says %s read it; the code, %s", name, strings.Join(services, ", "), strings.Join(v.services, ", "))
			}
			if v.def != "" && !strings.Contains(cells[2], "`"+v.def+"`") {
				t.Errorf("%s: the table's default is %s; the code's, `%s`", name, cells[2], v.def)
			}
		}
	}
	if rows == 0 {
		t.Fatal("found no rows in the README's configuration table")
	}
	for name, v := range code {
		if !seen[name] {
			t.Errorf("%s (read by %s, default %q) is missing from the README's configuration table", name, strings.Join(v.services, ", "), v.def)
		}
	}
}

// TestREADMEComposeVariables: every host variable docker-compose.yml
// reads (${VAR} or ${VAR:-default}; $${...} is the container's shell) is
// named in the README.
func TestREADMEComposeVariables(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	compose, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	ref := regexp.MustCompile(`(^|[^$])\$\{([A-Z_][A-Z0-9_]*)`)
	seen := map[string]bool{}
	for _, m := range ref.FindAllStringSubmatch(string(compose), -1) {
		name := m[2]
		if seen[name] {
			continue
		}
		seen[name] = true
		if !strings.Contains(string(readme), "`"+name+"`") {
			t.Errorf("docker-compose.yml reads %s; the README does not name it", name)
		}
	}
	if len(seen) == 0 {
		t.Fatal("found no ${VAR} in docker-compose.yml")
	}
}

// TestNothingSkips holds README "Tests and their backends" to its word,
// "nothing is skipped": no Go file of the repository calls Skip, Skipf or
// SkipNow. A test that cannot run on some backend fails there with the
// reason instead. One skipped wherever PostgreSQL was not at
// 127.0.0.1:5432, so the containers and TEST_DATABASE_URL never ran it,
// and make test (which shows only failing packages' output) did not say.
func TestNothingSkips(t *testing.T) {
	t.Parallel()
	fset := token.NewFileSet()
	files := 0
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != ".." && (strings.HasPrefix(name, ".") || name == "bin" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files++
		ast.Inspect(f, func(n ast.Node) bool {
			if call, ok := n.(*ast.CallExpr); ok {
				if sel, ok := call.Fun.(*ast.SelectorExpr); ok && slices.Contains([]string{"Skip", "Skipf", "SkipNow"}, sel.Sel.Name) {
					t.Errorf("%s calls %s: README says nothing is skipped; fail with the reason instead", fset.Position(call.Pos()), sel.Sel.Name)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("read %d Go files under .., want the whole repository", files)
	}
}
