// Package devstate tells the shop tool's commands where a running `shop
// dev` keeps its suite: the database, the broker and the services' URLs.
//
// shop dev holds a lock on <data-dir>/dev.lock for as long as it runs
// (Acquire), which also keeps a second shop dev off the same data
// directory, and once its suite serves it publishes <data-dir>/dev.json
// (Publish), written atomically, removed when it stops (Withdraw). The
// other commands read it (Read). The lock, not the process id, tells a
// live record from one that a shop dev which did not stop cleanly (killed,
// its terminal closed) left behind: the kernel releases a dead process's
// lock, and a reused process id proves nothing. So Read never hands out a
// stale record: it reports it (*StaleError) for the command to say so.
//
// The record holds no secret: a database URL that came from DATABASE_URL
// (which may carry a password) is not written, only where it points with
// the password masked; the admin token is not written either, only
// whether it is the well-known one.
package devstate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// File names under the data directory.
const (
	StateFile = "dev.json"
	LockFile  = "dev.lock"
)

// State is what a running shop dev records for the other commands.
type State struct {
	// PID is shop dev's process id, for people: the lock decides whether
	// it runs.
	PID int `json:"pid"`
	// StartedAt is when the suite began to serve.
	StartedAt time.Time `json:"started_at"`
	// Postgres says where the database came from: "DATABASE_URL",
	// "local" (the local server) or "private" (a cluster shop dev started
	// under the data directory, which it stops when it stops).
	Postgres string `json:"postgres"`
	// DatabaseURL is the suite's database; empty when DATABASE_URL gave
	// it, which may carry a password.
	DatabaseURL string `json:"database_url,omitempty"`
	// Database shows the database to people: its URL with any password
	// masked.
	Database string `json:"database"`
	// KafkaBrokers are the broker addresses the services use.
	KafkaBrokers []string `json:"kafka_brokers"`
	// KafkaTopicPrefix is the services' KAFKA_TOPIC_PREFIX.
	KafkaTopicPrefix string `json:"kafka_topic_prefix"`
	// URLs are the services' base URLs by name (order, payment,
	// inventory, shipping).
	URLs map[string]string `json:"urls"`
	// WellKnownAdminToken is true when the services' ADMIN_TOKEN is the
	// README's dev-admin-token.
	WellKnownAdminToken bool `json:"well_known_admin_token"`
}

// RunningError says that another shop dev holds the data directory.
type RunningError struct {
	Dir string
	PID int // 0 when it has not written it yet
}

func (e *RunningError) Error() string {
	return fmt.Sprintf("another shop dev%s runs with --data-dir %s", pidNote(e.PID), e.Dir)
}

// StartingError says that a shop dev holds the data directory but has
// not published its suite yet, or has withdrawn it: it is still starting,
// or stopping.
type StartingError struct {
	Dir string
	PID int
}

func (e *StartingError) Error() string {
	// Its record is written once it serves and removed as it begins to
	// stop: which of the two, only its terminal knows.
	return Name(e.PID, e.Dir) + " is starting or stopping: try again once it has printed its banner, or has stopped"
}

// StaleError says that the record under Dir was left by a shop dev that
// no longer runs.
type StaleError struct {
	Dir   string
	State State
}

func (e *StaleError) Error() string {
	db := ""
	if e.State.Database != "" {
		db = "; its database: " + e.State.Database
	}
	return fmt.Sprintf("%s was left by a shop dev%s, started %s, that no longer runs (it did not stop cleanly%s)",
		filepath.Join(e.Dir, StateFile), pidNote(e.State.PID), e.State.StartedAt.Local().Format("2006-01-02 15:04:05 MST"), db)
}

// Name names, for people, the shop dev with process id pid (0: unknown)
// running with the data directory dir.
func Name(pid int, dir string) string {
	return "the shop dev" + pidNote(pid) + " running with --data-dir " + dir
}

func pidNote(pid int) string {
	if pid <= 0 {
		return ""
	}
	return fmt.Sprintf(" (pid %d)", pid)
}

// Lock is a running shop dev's hold on its data directory.
type Lock struct {
	dir string
	f   *os.File
}

// lockAttempts and lockPause bound how long Acquire retries a lock that a
// reader holds for a moment (Read takes it shared to test it).
const (
	lockAttempts = 40
	lockPause    = 25 * time.Millisecond
)

// Acquire takes dir (which must exist) for this process: a
// *RunningError when another shop dev has it. A record that a shop dev
// which did not stop cleanly left behind is removed, so that nobody takes
// it for this one's while it starts.
func Acquire(dir string) (*Lock, error) {
	path := filepath.Join(dir, LockFile)
	// Not through a symbolic link: whoever can write the data directory
	// would otherwise have this process overwrite a file of its user's
	// choosing with its pid.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o644)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%s is a symbolic link: remove it (shop dev makes its own)", path)
	}
	if err != nil {
		return nil, err
	}
	for i := 1; ; i++ {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if i == lockAttempts {
			f.Close()
			return nil, &RunningError{Dir: dir, PID: readPID(path)}
		}
		time.Sleep(lockPause)
	}
	if err := writePID(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Remove(filepath.Join(dir, StateFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		f.Close()
		return nil, err
	}
	return &Lock{dir: dir, f: f}, nil
}

func writePID(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return err
}

// readPID reads the process id in a lock file; 0 when there is none.
func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// Publish writes s as the data directory's record, atomically: a reader
// finds the whole of it or none.
func (l *Lock) Publish(s State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(l.dir, "."+StateFile+".*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(append(b, '\n'))
	err = errors.Join(err, tmp.Chmod(0o644), tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(l.dir, StateFile))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", filepath.Join(l.dir, StateFile), err)
	}
	return nil
}

// Withdraw removes the record: the suite is stopping.
func (l *Lock) Withdraw() {
	os.Remove(filepath.Join(l.dir, StateFile))
}

// Release withdraws the record and lets go of the data directory.
func (l *Lock) Release() {
	l.Withdraw()
	l.f.Close() // closing the file releases the lock
}

// Read returns the record of the shop dev running with dir, or nil when
// none has dir. A shop dev still starting is a *StartingError, a record
// whose shop dev no longer runs a *StaleError.
func Read(dir string) (*State, error) {
	path := filepath.Join(dir, StateFile)
	data, readErr := os.ReadFile(path)
	running, pid, err := held(dir)
	if err != nil {
		return nil, err
	}
	switch {
	case errors.Is(readErr, os.ErrNotExist) && running:
		return nil, &StartingError{Dir: dir, PID: pid}
	case errors.Is(readErr, os.ErrNotExist):
		return nil, nil
	case readErr != nil:
		return nil, readErr
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s is not what shop dev writes: %w", path, err)
	}
	if !running {
		return nil, &StaleError{Dir: dir, State: s}
	}
	return &s, nil
}

// held reports whether a process holds dir's lock, and the process id it
// wrote there. It takes the lock shared for a moment to find out.
func held(dir string) (bool, int, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return false, 0, nil
	}
	if err != nil {
		return false, 0, err
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	switch {
	case err == nil:
		return false, 0, nil // closing the file lets it go
	case errors.Is(err, syscall.EWOULDBLOCK):
		return true, readPID(path), nil
	default:
		return false, 0, fmt.Errorf("lock %s: %w", path, err)
	}
}
