package service_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/shopflow/shopflow/pkg/platform/service"
	"github.com/shopflow/shopflow/pkg/platform/testenv"
)

// TestStopForced: a second signal (WithForce; Signals sets it) forces a
// stop already under way, whether it is draining for
// SHUTDOWN_DRAIN_DELAY, waiting in the shutdown for a stage that takes
// its time, or closing a database pool whose connection is still in use:
// Run skips what is left of those waits, tells every stage to stop at
// once and gives them a second all told (then one for the pool), says
// so, and returns an error wrapping ErrForced that names what it left
// running (the exit status 1). A second signal used to change nothing:
// each of them was waited out to its end (5 minutes, and a minute, here).
func TestStopForced(t *testing.T) {
	t.Parallel()
	// slowStage takes its time to stop (until release); heldConn holds a
	// pool connection until release, after its stage has stopped. Each
	// closes ready once it runs as it should.
	slowStage := func(_ service.Deps, release <-chan struct{}, ready chan<- struct{}) func(context.Context) error {
		return func(ctx context.Context) error {
			close(ready)
			<-ctx.Done()
			<-release
			return nil
		}
	}
	heldConn := func(d service.Deps, release <-chan struct{}, ready chan<- struct{}) func(context.Context) error {
		return func(ctx context.Context) error {
			conn, err := d.Pool.Acquire(ctx)
			if err != nil {
				return err
			}
			close(ready)
			go func() {
				<-release
				conn.Release()
			}()
			<-ctx.Done()
			return nil
		}
	}
	for _, c := range []struct {
		name      string
		drain     time.Duration
		part      func(d service.Deps, release <-chan struct{}, ready chan<- struct{}) func(context.Context) error
		waitingOn string // the log line after which the test forces the stop
		left      string
	}{
		{name: "while draining", drain: 5 * time.Minute, part: slowStage,
			waitingOn: "draining: /readyz answers 503, everything else is served, until the shutdown begins", left: "background"},
		{name: "while the shutdown waits for a stage", part: slowStage, waitingOn: "shutting down", left: "background"},
		{name: "while the pool waits for a connection", part: heldConn,
			waitingOn: "closing the database pool: waiting for connections still in use", left: "database pool (1 connection still in use)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			common := testenv.Common(t)
			common.ShutdownDrainDelay = c.drain
			common.ShutdownTimeout = time.Minute
			spec, setup := echoSpec()
			release, ready := make(chan struct{}), make(chan struct{})
			defer close(release)
			withPart := func(ctx context.Context, d service.Deps) (service.Parts, error) {
				p, err := setup(ctx, d)
				p.Background = append(p.Background, c.part(d, release, ready))
				return p, err
			}
			logs := &testenv.SyncBuffer{}
			force, forceNow := context.WithCancel(context.Background())
			defer forceNow()
			ctx, cancel := context.WithCancel(service.WithForce(context.Background(), force))
			defer cancel()
			_, done := runUntilStartedWithLog(t, ctx, spec, common, withPart, slog.New(slog.NewJSONHandler(logs, nil)))
			<-ready
			cancel() // SIGTERM
			testenv.Eventually(t, 30*time.Second, "the log saying "+c.waitingOn, func() bool {
				return strings.Contains(logs.String(), `"msg":"`+c.waitingOn+`"`)
			})
			forceNow() // SIGTERM again
			began := time.Now()
			select {
			case err := <-done:
				t.Logf("Run returned %s after the force: %v", time.Since(began).Round(time.Millisecond), err)
				// The stages that stop at once stop cleanly; what takes
				// its time is left running.
				if !errors.Is(err, service.ErrForced) || !strings.HasSuffix(err.Error(), "; left running: "+c.left) {
					t.Errorf("Run = %v, want ErrForced naming %s, and it alone, left running", err, c.left)
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("Run still waiting 15 s after the stop was forced (drain %s, SHUTDOWN_TIMEOUT %s)", c.drain, common.ShutdownTimeout)
			}
			var said bool
			for _, l := range jsonLines(logs.String()) {
				said = said || l["level"] == "WARN" && strings.HasPrefix(l["msg"].(string), "stop forced by a second signal")
			}
			if !said {
				t.Errorf("the log does not say the stop was forced:\n%s", logs.String())
			}
		})
	}
}
