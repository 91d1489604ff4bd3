package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDockerfileBuildStage runs the Dockerfile's build stage for each
// service without Docker (none runs where the tests do): its COPY
// instructions into an empty directory standing for /src, honouring
// .dockerignore, then its RUN commands with its ENV, so a module that
// builds only inside the workspace, or a file the build needs that the
// stage does not copy, fails here rather than in `docker compose up
// --build`. (Both images of payment and inventory once could not be
// built: their go.mod lacked what pkg/platform had come to require.) The
// module cache and build cache are this machine's; the base images'
// contents are not checked.
func TestDockerfileBuildStage(t *testing.T) {
	root := repoRoot(t)
	df, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	steps := buildStage(t, string(df))
	ignore := dockerignore(t, root)
	for _, s := range deployedServices() {
		t.Run(s.spec.Name, func(t *testing.T) {
			src := t.TempDir()
			out := t.TempDir()
			env := append(os.Environ(), "SERVICE="+s.spec.Name)
			subst := func(v string) string {
				v = strings.ReplaceAll(v, "${SERVICE}", s.spec.Name)
				return strings.ReplaceAll(v, "/out/", out+"/")
			}
			for _, st := range steps {
				switch st.op {
				case "ENV":
					for _, kv := range strings.Fields(st.arg) {
						env = append(env, subst(kv))
					}
				case "COPY":
					args := strings.Fields(subst(st.arg))
					dst := filepath.Join(src, args[len(args)-1])
					for _, from := range args[:len(args)-1] {
						copyContext(t, root, path.Clean(from), dst, strings.HasSuffix(args[len(args)-1], "/"), ignore)
					}
				case "RUN":
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
					cmd := exec.CommandContext(ctx, "sh", "-ec", subst(st.arg))
					cmd.Dir, cmd.Env = src, env
					b, err := cmd.CombinedOutput()
					cancel()
					if err != nil {
						t.Fatalf("RUN %s: %v\n%s", subst(st.arg), err, b)
					}
				}
			}
			for _, bin := range []string{"service", "healthcheck"} {
				if _, err := os.Stat(filepath.Join(out, bin)); err != nil {
					t.Errorf("the build stage made no /out/%s: %v", bin, err)
				}
			}
		})
	}
}

type dockerStep struct{ op, arg string }

// buildStage returns the ENV, COPY and RUN instructions of the stage named
// build, continuation lines joined and RUN's --mount flags dropped (a
// cache mount changes nothing that is built).
func buildStage(t *testing.T, df string) []dockerStep {
	t.Helper()
	df = strings.ReplaceAll(df, "\\\n", " ")
	var steps []dockerStep
	in := false
	for line := range strings.Lines(df) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		op, arg, _ := strings.Cut(line, " ")
		op = strings.ToUpper(op)
		if op == "FROM" {
			in = strings.HasSuffix(strings.TrimSpace(arg), " AS build")
			continue
		}
		if !in {
			continue
		}
		switch op {
		case "ENV", "COPY", "RUN":
			arg = strings.TrimSpace(regexp.MustCompile(`--mount=\S+`).ReplaceAllString(arg, ""))
			if op == "COPY" && strings.HasPrefix(arg, "--") {
				t.Fatalf("Dockerfile: COPY %s: this test does not know its flags", arg)
			}
			steps = append(steps, dockerStep{op, arg})
		case "ARG":
		case "WORKDIR":
			if arg != "/src" {
				t.Fatalf("Dockerfile: WORKDIR %s; this test runs the stage in /src's stand-in", arg)
			}
		default:
			t.Fatalf("Dockerfile's build stage: %s: this test does not know it", op)
		}
	}
	if len(steps) == 0 {
		t.Fatal("Dockerfile: no stage named build")
	}
	return steps
}

// dockerignore returns .dockerignore's patterns (no "!" exceptions: the
// file has none, and the test refuses one).
func dockerignore(t *testing.T, root string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var pats []string
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			t.Fatalf(".dockerignore: %s: this test does not know exceptions", line)
		}
		pats = append(pats, path.Clean(line))
	}
	return pats
}

// ignored reports whether rel (slash-separated, relative to the context)
// or a directory above it matches a pattern; "**/" matches any number of
// directories.
func ignored(rel string, pats []string) bool {
	parts := strings.Split(rel, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		for _, pat := range pats {
			if ok, _ := path.Match(pat, p); ok {
				return true
			}
			if tail, ok := strings.CutPrefix(pat, "**/"); ok {
				for j := range i + 1 {
					if ok, _ := path.Match(tail, strings.Join(parts[j:i+1], "/")); ok {
						return true
					}
				}
			}
		}
	}
	return false
}

// copyContext does what COPY does with one source: a file to dst (into
// it when intoDir), a directory's contents into dst, leaving out what
// .dockerignore keeps from the context.
func copyContext(t *testing.T, root, from, dst string, intoDir bool, pats []string) {
	t.Helper()
	if ignored(from, pats) {
		t.Fatalf("COPY %s: .dockerignore keeps it out of the build context", from)
	}
	fi, err := os.Stat(filepath.Join(root, from))
	if err != nil {
		t.Fatalf("COPY %s: %v", from, err)
	}
	if !fi.IsDir() {
		if intoDir {
			dst = filepath.Join(dst, path.Base(from))
		}
		copyFile(t, filepath.Join(root, from), dst)
		return
	}
	err = filepath.WalkDir(filepath.Join(root, from), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if ignored(filepath.ToSlash(rel), pats) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		sub, err := filepath.Rel(filepath.Join(root, from), p)
		if err != nil {
			return err
		}
		copyFile(t, p, filepath.Join(dst, sub))
		return nil
	})
	if err != nil {
		t.Fatalf("COPY %s: %v", from, err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(fmt.Errorf("COPY: %w", err))
	}
}
