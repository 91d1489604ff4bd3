package devstate

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestLifecycle follows a record through a shop dev's life: none before
// it starts, "still starting" while it holds the directory unpublished,
// the record while it runs, none once it withdrew it; a second shop dev
// is kept off the directory meanwhile. flock locks belong to the open
// file, so one process plays both sides.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if st, err := Read(dir); st != nil || err != nil {
		t.Fatalf("Read before any shop dev: %+v, %v; want nothing", st, err)
	}
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if _, err := Read(dir); !isStarting(err, os.Getpid()) {
		t.Fatalf("Read while starting: %v, want a *StartingError naming pid %d", err, os.Getpid())
	}
	if _, err := Acquire(dir); !isRunning(err, os.Getpid()) {
		t.Fatalf("second Acquire: %v, want a *RunningError naming pid %d", err, os.Getpid())
	}

	want := State{PID: os.Getpid(), StartedAt: time.Now().UTC().Truncate(time.Second), Postgres: "private",
		DatabaseURL: "postgres://postgres@127.0.0.1:5433/shopflow?sslmode=disable", Database: "postgres://postgres@127.0.0.1:5433/shopflow?sslmode=disable",
		KafkaBrokers: []string{"127.0.0.1:9092"}, URLs: map[string]string{"order": "http://127.0.0.1:8080"}, WellKnownAdminToken: true}
	if err := l.Publish(want); err != nil {
		t.Fatal(err)
	}
	got, err := Read(dir)
	if err != nil || got == nil || !reflect.DeepEqual(*got, want) {
		t.Fatalf("Read while running: %+v, %v; want %+v", got, err, want)
	}
	// Written whole under its name, through a temporary file that is gone.
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".*")); len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}

	l.Withdraw()
	if _, err := Read(dir); !isStarting(err, os.Getpid()) {
		t.Fatalf("Read after Withdraw, the lock still held: %v, want a *StartingError", err)
	}
	l.Release()
	if st, err := Read(dir); st != nil || err != nil {
		t.Fatalf("Read after a clean stop: %+v, %v; want nothing", st, err)
	}
	if _, err := os.Stat(filepath.Join(dir, StateFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s after a clean stop: %v, want it removed", StateFile, err)
	}
}

// TestStale: a record whose shop dev died without withdrawing it (its
// lock released by the kernel) is reported, never returned, whatever pid
// it names; the next shop dev removes it as it takes the directory.
func TestStale(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The pid of a live process (this one): a pid proves nothing.
	if err := l.Publish(State{PID: os.Getpid(), StartedAt: time.Now(), Postgres: "private"}); err != nil {
		t.Fatal(err)
	}
	l.f.Close() // dies: the kernel lets go of the lock, the record stays

	st, err := Read(dir)
	stale, ok := errors.AsType[*StaleError](err)
	if st != nil || !ok || stale.State.PID != os.Getpid() || stale.State.Postgres != "private" {
		t.Fatalf("Read of a record left behind: %+v, %v; want a *StaleError carrying it", st, err)
	}
	if msg := err.Error(); !strings.Contains(msg, filepath.Join(dir, StateFile)) || !strings.Contains(msg, "no longer runs") {
		t.Errorf("stale error %q: want it to name the file and say its shop dev no longer runs", msg)
	}

	again, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Release()
	if _, err := Read(dir); !isStarting(err, os.Getpid()) {
		t.Fatalf("Read once a new shop dev took the directory: %v, want it starting, the old record gone", err)
	}
}

// TestReadMalformed: a record that is not shop dev's is an error naming
// the file, not a suite at empty addresses.
func TestReadMalformed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if err := os.WriteFile(filepath.Join(dir, StateFile), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if st, err := Read(dir); st != nil || err == nil || !strings.Contains(err.Error(), filepath.Join(dir, StateFile)) {
		t.Fatalf("Read of a malformed record: %+v, %v; want an error naming the file", st, err)
	}
}

func isStarting(err error, pid int) bool {
	e, ok := errors.AsType[*StartingError](err)
	return ok && e.PID == pid
}

func isRunning(err error, pid int) bool {
	e, ok := errors.AsType[*RunningError](err)
	return ok && e.PID == pid
}

// TestAcquireRefusesASymlink: a dev.lock that is a symbolic link is
// refused, and the file it points to is left as it was. Acquire used to
// follow it and write its pid into that file (whoever could write the
// data directory chose which of its user's files).
func TestAcquireRefusesASymlink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "precious")
	if err := os.WriteFile(victim, []byte("keep me\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, LockFile)); err != nil {
		t.Fatal(err)
	}
	l, err := Acquire(dir)
	if err == nil {
		l.Release()
	}
	if err == nil || !strings.Contains(err.Error(), "is a symbolic link") {
		t.Errorf("Acquire over a symlinked %s: %v; want it refused", LockFile, err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep me\n" {
		t.Errorf("the file the link points to now holds %q", b)
	}
}
