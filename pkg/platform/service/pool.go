package service

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

const (
	// poolCloseGrace is the least time a pool gets to close, the shutdown
	// deadline passed or not: a statement cancelled as the shutdown ended
	// its work returns its connection within milliseconds.
	poolCloseGrace = time.Second
	// poolCloseNotice is how long closing a pool may take before the log
	// says what it waits for.
	poolCloseNotice = 500 * time.Millisecond
)

// ClosePool closes pool, which waits for the connections still in use to
// come back (pgxpool's Close does, without a bound or a word): something
// still running holds them, a statement waiting on a lock, say. Past
// poolCloseNotice it logs how many it waits for and where to see what
// they do (pg_stat_activity, by the pool's application_name); it waits
// until deadline, but at least poolCloseGrace, then gives up with an
// error naming them, logged, and leaves the pool to finish closing on
// its own: the process may exit meanwhile, and PostgreSQL ends those
// sessions once it sees their connections closed. name says which pool
// ("database pool").
func ClosePool(pool *pgxpool.Pool, log *slog.Logger, name string, deadline time.Time) error {
	return closePool(pool, log, name, deadline, nil)
}

// closePool is ClosePool, waiting no longer than poolCloseGrace once
// force is closed (a forced stop; nil: never).
func closePool(pool *pgxpool.Pool, log *slog.Logger, name string, deadline time.Time, force <-chan struct{}) error {
	start := time.Now()
	closed := make(chan struct{})
	go func() {
		pool.Close()
		close(closed)
	}()
	notice := time.NewTimer(poolCloseNotice)
	defer notice.Stop()
	select {
	case <-closed:
		return nil
	case <-notice.C:
	}
	bound := max(time.Until(deadline), poolCloseGrace-time.Since(start))
	select {
	case <-force: // forced already: what is left of the grace
		bound, force = max(poolCloseGrace-time.Since(start), 0), nil
	default:
	}
	app := pool.Config().ConnConfig.RuntimeParams["application_name"]
	log.Warn("closing the "+name+": waiting for connections still in use", "in_use", pool.Stat().AcquiredConns(),
		"waiting_at_most", bound.Round(time.Millisecond).String(),
		"see", fmt.Sprintf("pg_stat_activity WHERE application_name = '%s'", app))
	giveUp := time.NewTimer(bound)
	defer giveUp.Stop()
	for waiting := true; waiting; {
		select {
		case <-closed:
			log.Info(name+" closed", "waited", time.Since(start).Round(time.Millisecond).String())
			return nil
		case <-force:
			// What is left of the grace, no more of the deadline.
			force = nil
			giveUp.Reset(max(poolCloseGrace-time.Since(start), 0))
		case <-giveUp.C:
			waiting = false
		}
	}
	n := pool.Stat().AcquiredConns()
	log.Error("the "+name+" did not close in time: leaving its connections still in use to the process's exit",
		"in_use", n, "waited", time.Since(start).Round(time.Millisecond).String())
	return fmt.Errorf("%s (%s still in use)", name, plural(int(n), "connection"))
}

// plural is "1 connection", "2 connections".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
