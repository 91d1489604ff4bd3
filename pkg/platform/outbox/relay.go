package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/shopflow/shopflow/pkg/platform/internal/quiet"
	"github.com/shopflow/shopflow/pkg/platform/kafkatopics"
)

// RelayConfig configures a Relay. Zero values take the defaults noted.
type RelayConfig struct {
	// Brokers are the Kafka bootstrap addresses (or set Transport's).
	Brokers []string
	// Transport carries TLS/SASL settings; nil means kafka.DefaultTransport.
	Transport kafka.RoundTripper
	// BatchSize is how many rows one round publishes at most (fewer when
	// their messages would pass 1 MiB, see maxRoundBytes); default 256. The
	// writer's batch size is the same (one produce request per partition
	// per round), and kafka-go allocates a batch of that many messages
	// (~150 B each) for every partition a round touches: at 1000 that
	// zeroing was 3% of the suite's Go CPU in make bench-e2e, at 256 under
	// 1%.
	BatchSize int
	// PollInterval is the fallback wake-up when no Wake and no
	// notification arrives (a writer that does not call Wake, a NOTIFY
	// lost across a reconnect); default 1 s.
	PollInterval time.Duration
	// LockRetry is how often a standby tries to take over; default 1 s.
	LockRetry time.Duration
	// FlushTimeout bounds the final drain when the relay stops, and each
	// read, publish and delete of a drain, which a stop does not cut off
	// (so a stop waits for the step in hand, then the final drain);
	// default 10 s.
	FlushTimeout time.Duration
	// IdleTimeout is how long the lock holder's database session may sit
	// idle before PostgreSQL ends it (idle_session_timeout), giving the
	// lock to a standby: a holder that stops running without dying (a
	// SIGSTOP, a VM pause, a stuck process) keeps its connection, and
	// without this kept the lock, and every replica's events, as long.
	// When it runs again its next statement fails and it stands by; what
	// it publishes meanwhile is at most a batch the new holder sends too,
	// which consumers skip by ce_id. Default: 5 s more than the longest a
	// healthy relay usually leaves its session idle (FlushTimeout, a
	// publish; PollInterval; LockRetry). A publish followed by deletes
	// that PostgreSQL takes seconds each to do can idle it longer: the
	// relay then loses the lock to a standby the same way, which costs
	// duplicates, never an event. Needs PostgreSQL 14; on an older one
	// the relay runs without it and says so.
	IdleTimeout time.Duration
	// TopicPrefix is put before each row's topic when publishing
	// (config.Common.KafkaTopicPrefix).
	TopicPrefix string
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// OnPublish, if set, is called after each acknowledged batch with the
	// number of events and the age of the oldest (for metrics).
	OnPublish func(n int, oldest time.Duration)
	// TopicMissing, if set, is called when a publish fails because the
	// broker does not know a topic (a broker that lost its data):
	// service.Run passes its kafkatopics.Watch's Check, which creates it
	// again; the relay retries the round meanwhile.
	TopicMissing func()
}

// Relay publishes a schema's outbox rows to Kafka. Run one per service
// replica; only the advisory-lock holder publishes.
//
// Writers wake it with Wake after they commit outbox rows, not with a
// NOTIFY inside their transaction: PostgreSQL serializes the commits of
// all transactions that NOTIFY (a cluster-wide lock held through the
// commit's WAL flush), which measured 16,218 vs 1,019 tps at 64 clients
// (pgbench, single-row INSERT without and with pg_notify). Only a replica
// whose relay is standing by sends a NOTIFY, after its commit and on its
// own, so the active relay in another replica wakes too.
type Relay struct {
	pool   *pgxpool.Pool
	cfg    RelayConfig
	log    *slog.Logger
	writer *kafka.Writer

	wake   chan struct{} // a local writer committed rows
	notify chan struct{} // ... while this relay stands by: NOTIFY the active one
	active atomic.Bool   // this relay holds the lock and listens

	// Run's own (one goroutine): sessions that failed since the database
	// last answered, and the retry warnings held back meanwhile.
	failures int
	retryLog *quiet.Limiter
	// Rows published whose delete failed (a read-only or full database,
	// a pool out of connections): deleted before anything is read or
	// published again, holding the lock meanwhile, so a database that
	// refuses writes does not make this relay, or a standby, publish the
	// same rows every session (55 copies of one event in a minute, seen).
	// Only a relay that dies, or loses its lock connection, before
	// deleting them leaves duplicates.
	undeleted []int64

	noIdleTimeout sync.Once // said that the server cannot end idle sessions

	afterDeleteFailed func() // tests: called between a failed delete's report and its rows' note
}

// NewRelay returns a relay for the outbox in pool's schema (its search_path).
func NewRelay(pool *pgxpool.Pool, cfg RelayConfig) *Relay {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 256
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.LockRetry <= 0 {
		cfg.LockRetry = time.Second
	}
	if cfg.FlushTimeout <= 0 {
		cfg.FlushTimeout = 10 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = max(cfg.FlushTimeout, cfg.PollInterval, cfg.LockRetry) + 5*time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	w := &kafka.Writer{
		Addr:      kafka.TCP(cfg.Brokers...),
		Transport: cfg.Transport,
		// KAFKA-GO.md: never the defaults. acks=all; keys hashed as the
		// Java client does so one order's events share a partition; the
		// relay hands over whole batches, so waiting for more is pointless;
		// one produce request per partition per round (rounds are cut at
		// maxRoundBytes) keeps a failed round all-or-nothing per partition
		// (order per key survives retries).
		RequiredAcks: kafka.RequireAll,
		Balancer:     &kafka.Murmur2Balancer{},
		BatchTimeout: time.Millisecond,
		BatchSize:    cfg.BatchSize,
		BatchBytes:   produceBatchBytes,
		MaxAttempts:  5,
		Async:        false,
	}
	return &Relay{pool: pool, cfg: cfg, log: log.With("component", "outbox-relay"), writer: w,
		wake: make(chan struct{}, 1), notify: make(chan struct{}, 1), retryLog: quiet.New(quiet.Interval)}
}

// Wake tells the relay that outbox rows were committed. It never blocks.
// Call it after the commit: rows are read from the table, so a Wake for
// a transaction that rolled back costs one empty read, and a missed one
// costs at most PollInterval of latency, never an event. When this relay
// stands by, the wake-up goes to the active relay of another replica as
// a NOTIFY, sent by Run in a transaction of its own.
func (r *Relay) Wake() {
	ch := r.notify
	if r.active.Load() {
		ch = r.wake
	}
	select {
	case ch <- struct{}{}:
	default: // a wake-up is already pending; it covers this one
	}
}

// notifyOthers sends a NOTIFY on the outbox channel for each batch of
// wake-ups that came while this relay stood by, until ctx ends.
func (r *Relay) notifyOthers(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.notify:
		}
		nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := r.pool.Exec(nctx, `SELECT pg_notify($1 || current_schema(), '')`, channelPrefix)
		cancel()
		if err != nil && ctx.Err() == nil {
			r.log.Debug("notify the active relay", "err", err) // it polls anyway
		}
	}
}

// Run publishes until ctx ends, then drains what is committed (bounded by
// FlushTimeout) and releases the lock. It returns nil on a clean stop; it
// survives database and broker outages by retrying: a session that ends
// in an error is retried after LockRetry, and said once, then at most
// every 30 s with the number not logged (an outage used to log a warning
// a second); when it publishes again (or stands by for another relay),
// "relay resumed" says so.
func (r *Relay) Run(ctx context.Context) error {
	defer r.writer.Close()
	notifyCtx, stopNotify := context.WithCancel(ctx)
	var notifier sync.WaitGroup
	notifier.Go(func() { r.notifyOthers(notifyCtx) })
	defer notifier.Wait()
	defer stopNotify()
	for {
		err := r.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			r.failures++
			// One key for every error: an outage changes the error's text
			// (refused, starting up, reset) but is one piece of news.
			r.warnRetry("session", "relay session ended, retrying", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(r.cfg.LockRetry):
		}
	}
}

// warnRetry logs msg at WARN with err and the LockRetry it waits, at most
// once per quiet.Interval for key, with how many were held back since.
func (r *Relay) warnRetry(key, msg string, err error) {
	switch ok, held, since := r.retryLog.Pass(key); {
	case !ok:
	case held > 0:
		r.log.Warn(msg, "err", err, "in", r.cfg.LockRetry,
			"like_it_not_logged", held, "since", since.Round(time.Second).String())
	default:
		r.log.Warn(msg, "err", err, "in", r.cfg.LockRetry)
	}
}

// resumed says, once after failed sessions, that the relay works again:
// its database answers and it published what there was (or another relay
// is active). Not sooner: with the broker away, every session reaches the
// database and fails at publishing, and "resumed" each time was wrong.
func (r *Relay) resumed(schema string) {
	if r.failures > 0 {
		r.log.Info("relay resumed", "schema", schema, "after_failures", r.failures, "retries_not_logged", r.retryLog.Reset())
		r.failures = 0
	}
}

// session takes a dedicated connection, waits to hold the lock on it, and
// publishes until ctx ends or the connection fails.
func (r *Relay) session(ctx context.Context) error {
	pc, err := r.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire connection: %w", err)
	}
	// The connection leaves the pool: it holds a session lock and a LISTEN
	// and is closed, never reused, when the session ends.
	conn := pc.Hijack()
	defer func() {
		// Unlock before closing: a closed connection's backend lets go of
		// the lock only once it has exited, a moment later, and the next
		// session (LockRetry after a failed one) found it still held, took
		// its own relay for another, logged "relay resumed" and stood by
		// (TestABrokerOutageIsLoggedOnce, now and then under load). A
		// broken connection's unlock fails at once; a stalled one's gets a
		// second.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		if !conn.IsClosed() {
			_, _ = conn.Exec(cctx, `SELECT pg_advisory_unlock_all()`)
		}
		conn.Close(cctx)
	}()

	var schema string
	if err := conn.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return fmt.Errorf("current schema: %w", err)
	}
	idle := strconv.FormatInt(r.cfg.IdleTimeout.Milliseconds(), 10) + "ms"
	if _, err := conn.Exec(ctx, `SELECT set_config('idle_session_timeout', $1, false)`, idle); err != nil {
		if pgErr, ok := errors.AsType[*pgconn.PgError](err); !ok || pgErr.Code != "42704" { // undefined_object: no such setting
			return fmt.Errorf("set idle_session_timeout: %w", err)
		}
		r.noIdleTimeout.Do(func() {
			r.log.Warn("PostgreSQL before 14 has no idle_session_timeout: a relay that stops running without dying holds the lock until its connection ends")
		})
	}
	for waited := false; ; waited = true {
		var got bool
		const q = `SELECT pg_try_advisory_lock(hashtextextended('shopflow.outbox.' || current_schema(), 0))`
		if err := conn.QueryRow(ctx, q).Scan(&got); err != nil {
			return fmt.Errorf("try lock: %w", err)
		}
		if got {
			if waited {
				r.log.Info("took over as the active relay", "schema", schema)
			}
			break
		}
		if !waited {
			r.resumed(schema) // its database answers, and it has nothing to publish
			r.log.Info("another relay is active; standing by", "schema", schema)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(r.cfg.LockRetry):
		}
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channelPrefix + schema}.Sanitize()); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	r.log.Debug("relay active", "schema", schema)
	r.active.Store(true)
	defer r.active.Store(false)

	for ctx.Err() == nil {
		if err := r.drain(ctx, conn); err != nil {
			if ctx.Err() != nil {
				break
			}
			if len(r.undeleted) > 0 && !conn.IsClosed() {
				continue // the next drain deletes them first, keeping the lock
			}
			return err
		}
		r.resumed(schema)
		if err := r.wait(ctx, conn); err != nil {
			if ctx.Err() != nil {
				break
			}
			return err
		}
	}
	// Stopping: publish what is already committed so a clean shutdown
	// leaves no backlog behind, still under the lock.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.FlushTimeout)
	defer cancel()
	if err := r.drain(fctx, conn); err != nil {
		r.log.Warn("final flush incomplete; the next relay publishes the rest", "err", err)
	}
	return nil
}

// wait returns when a local writer calls Wake, another replica's writer
// sends a NOTIFY, PollInterval passes or ctx ends.
func (r *Relay) wait(ctx context.Context, conn *pgx.Conn) error {
	select {
	case <-r.wake:
		return nil
	default:
	}
	wctx, cancel := context.WithTimeout(ctx, r.cfg.PollInterval)
	defer cancel()
	// A Wake ends the wait by cancelling it: pgconn turns the
	// cancellation into a read deadline, and the connection stays usable.
	woken := make(chan struct{})
	go func() {
		select {
		case <-r.wake:
			cancel()
		case <-wctx.Done():
		}
		close(woken)
	}()
	_, err := conn.WaitForNotification(wctx)
	cancel()
	<-woken
	if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("wait for notification: %w", err)
	}
	return nil
}

// batch is one round's rows, read and decoded, ready to publish.
type batch struct {
	ids    []int64
	msgs   []kafka.Message
	oldest time.Time
	bytes  int  // messageSize summed over msgs
	more   bool // cut at BatchSize rows or maxRoundBytes: more rows wait
}

// maxRoundBytes bounds one round's messages (by messageSize), just under
// the writer's BatchBytes. A round no bigger than one produce batch goes
// out as one produce request per partition, so a failed round is all or
// nothing per partition. A bigger one would be split by kafka-go into
// several requests for the same partition, written one after the other
// but each on its own: when the first fails and the second lands, the
// retried round publishes the first's events after the second's, out of
// order for their keys. The 1 KiB of headroom covers the record batch's
// own header, so a full round also fits Kafka's default
// message.max.bytes (1,048,588).
const (
	produceBatchBytes = 1 << 20
	maxRoundBytes     = produceBatchBytes - 1024
)

// recordSize is at least what kafka-go counts for a message against
// BatchBytes (its Message.totalSize: key and value with their length
// prefixes, the fixed record fields, each header with varint prefixes,
// all counted at the widest here), less the headers' own bytes.
func recordSize(key, value []byte) int { return 4 + 1 + 1 + 4 + len(key) + 4 + len(value) + 8 + 5 }

// headerSize is at least what a header adds to recordSize.
func headerSize(key string, value []byte) int { return 5 + len(key) + 5 + len(value) }

// messageSize is recordSize with m's headers.
func messageSize(m *kafka.Message) int {
	n := recordSize(m.Key, m.Value)
	for _, h := range m.Headers {
		n += headerSize(h.Key, h.Value)
	}
	return n
}

// drain publishes until the outbox is empty or ctx ends. Three stages
// overlap so a round costs about what its publish costs: while batch N is
// being published, batch N+1 is read (on conn, skipping the rows in
// flight) and batch N-1 is deleted (on a pooled connection). Batches are
// published one after the other in id order, so per-key order holds
// (writers lock the aggregate row, so one key's rows become visible in id
// order; see docs/backbone.md).
func (r *Relay) drain(ctx context.Context, conn *pgx.Conn) error {
	// Rows published and not deleted go first, on the lock's own
	// connection (the pool may have none to give), and the relay keeps
	// the lock meanwhile: a standby taking over would read and publish
	// them again. Only a lost connection, which loses the lock with it,
	// or the end of ctx, ends the wait.
	for len(r.undeleted) > 0 {
		dctx, cancel := r.stepCtx(ctx)
		_, err := conn.Exec(dctx, `DELETE FROM outbox WHERE id = ANY($1)`, r.undeleted)
		cancel()
		if err == nil {
			r.log.Info("published rows deleted; publishing resumes", "rows", len(r.undeleted))
			r.undeleted = nil
			break
		}
		err = fmt.Errorf("delete %d published rows (nothing more is published until they are gone): %w", len(r.undeleted), err)
		if conn.IsClosed() || ctx.Err() != nil {
			return err
		}
		r.warnRetry("undeleted", "relay cannot delete what it published; holding the lock and retrying", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(r.cfg.LockRetry):
		}
	}
	var (
		mu        sync.Mutex
		inFlight  []int64 // read, not yet deleted: later reads skip them
		undeleted []int64 // published, and their delete failed
	)
	read := func() (batch, error) {
		mu.Lock()
		skip := slices.Clone(inFlight)
		mu.Unlock()
		// A stop does not cut a read off: pgx closes a connection whose
		// query was interrupted, and the final flush needs this one
		// (it holds the lock). Reads are short.
		rctx, cancel := r.stepCtx(ctx)
		defer cancel()
		b, err := r.read(rctx, conn, skip)
		if err == nil {
			mu.Lock()
			inFlight = append(inFlight, b.ids...)
			mu.Unlock()
		}
		return b, err
	}

	// The deleter: deletes published batches in order, then reports them.
	toDelete := make(chan batch, 2)
	deleteErr := make(chan error, 1)
	go func() {
		defer close(deleteErr)
		for b := range toDelete {
			dctx, cancel := r.stepCtx(ctx)
			_, err := r.pool.Exec(dctx, `DELETE FROM outbox WHERE id = ANY($1)`, b.ids)
			cancel()
			if err != nil {
				// Published but not deleted, with every batch published
				// after it: the next drain deletes them first.
				deleteErr <- fmt.Errorf("delete %d published rows: %w", len(b.ids), err)
				if r.afterDeleteFailed != nil {
					r.afterDeleteFailed()
				}
				failed := slices.Clone(b.ids)
				for b := range toDelete {
					failed = append(failed, b.ids...)
				}
				mu.Lock()
				undeleted = append(undeleted, failed...)
				mu.Unlock()
				return
			}
			mu.Lock()
			inFlight = slices.DeleteFunc(inFlight, func(id int64) bool {
				_, found := slices.BinarySearch(b.ids, id) // ids are read in order
				return found
			})
			mu.Unlock()
			if r.cfg.OnPublish != nil {
				r.cfg.OnPublish(len(b.ids), time.Since(b.oldest))
			}
		}
	}()
	finish := func(err error) error {
		close(toDelete)
		// Until the deleter is done, not just until it reports: it notes
		// the rows it failed to delete after reporting (the report stops
		// the publishing at once), and a session that found none noted
		// gave its lock up, so a standby published them again.
		for derr := range deleteErr {
			if err == nil {
				err = derr
			}
		}
		mu.Lock()
		r.undeleted = append(r.undeleted, undeleted...)
		mu.Unlock()
		return err
	}

	next, err := read()
	for err == nil && len(next.ids) > 0 {
		cur := next
		// Once a publish starts it finishes, even when the relay is
		// stopping: abandoning it half-way would publish the rows again.
		published := make(chan error, 1)
		go func() {
			wctx, cancel := r.stepCtx(ctx)
			defer cancel()
			published <- r.writer.WriteMessages(wctx, cur.msgs...)
		}()
		var readErr error
		next = batch{}
		if cur.more && ctx.Err() == nil {
			next, readErr = read() // a full batch: more is probably waiting
		}
		if perr := <-published; perr != nil {
			if r.cfg.TopicMissing != nil && kafkatopics.IsMissing(perr) {
				r.cfg.TopicMissing()
			}
			return finish(fmt.Errorf("publish %d events: %w", len(cur.msgs), summarize(perr)))
		}
		select {
		case toDelete <- cur:
		case derr := <-deleteErr:
			mu.Lock()
			undeleted = append(undeleted, cur.ids...) // published, never handed over
			mu.Unlock()
			return finish(derr)
		}
		err = readErr
	}
	return finish(err)
}

// summarize shortens kafka-go's WriteErrors, which holds one error per
// message (a refused round of 256 events logged the same error 256
// times), to the count, the first error and how many others differ.
// errors.As still reaches the WriteErrors.
func summarize(err error) error {
	var we kafka.WriteErrors
	if !errors.As(err, &we) {
		return err
	}
	var first error
	failed, others := 0, map[string]bool{}
	for _, e := range we {
		switch {
		case e == nil:
		case first == nil:
			first, failed = e, 1
		default:
			failed++
			if e.Error() != first.Error() {
				others[e.Error()] = true
			}
		}
	}
	msg := fmt.Sprintf("%d of %d messages not written: %v", failed, len(we), first)
	if len(others) > 0 {
		msg += fmt.Sprintf(" (and %d other errors)", len(others))
	}
	return &summarized{msg: msg, err: err}
}

type summarized struct {
	msg string
	err error
}

func (s *summarized) Error() string { return s.msg }
func (s *summarized) Unwrap() error { return s.err }

// stepCtx is the context of one read, publish or delete in drain: not
// cut off by a stop, but bounded, by ctx's deadline when it has one (the
// final drain's), else by FlushTimeout.
func (r *Relay) stepCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok {
		return context.WithDeadline(context.WithoutCancel(ctx), dl)
	}
	return context.WithTimeout(context.WithoutCancel(ctx), r.cfg.FlushTimeout)
}

type row struct {
	id      int64
	topic   string
	key     []byte
	value   []byte
	headers []byte
	created time.Time
}

// read returns the oldest rows not in skip, decoded: BatchSize of them, or
// fewer when more would pass maxRoundBytes. One row always goes; a row
// bigger than that would be refused by kafka-go on every round and hold
// the outbox up, which is why WriteMessages refuses to store one.
func (r *Relay) read(ctx context.Context, conn *pgx.Conn, skip []int64) (batch, error) {
	const q = `SELECT id, topic, key, value, headers, created_at FROM outbox WHERE id <> ALL($2) ORDER BY id LIMIT $1`
	if skip == nil {
		skip = []int64{}
	}
	rows, err := conn.Query(ctx, q, r.cfg.BatchSize, skip)
	if err != nil {
		return batch{}, fmt.Errorf("read outbox: %w", err)
	}
	var b batch
	var rw row
	_, err = pgx.ForEachRow(rows, []any{&rw.id, &rw.topic, &rw.key, &rw.value, &rw.headers, &rw.created}, func() error {
		if b.more {
			return nil // the round is full; the rest stays for the next read
		}
		hs, err := parseHeaders(rw.headers)
		if err != nil {
			return fmt.Errorf("outbox row %d: headers: %w", rw.id, err)
		}
		m := kafka.Message{Topic: r.cfg.TopicPrefix + rw.topic, Key: rw.key, Value: rw.value, Headers: hs}
		size := messageSize(&m)
		if len(b.ids) > 0 && b.bytes+size > maxRoundBytes {
			b.more = true
			return nil
		}
		if len(b.ids) == 0 || rw.created.Before(b.oldest) {
			b.oldest = rw.created
		}
		b.ids = append(b.ids, rw.id)
		b.msgs = append(b.msgs, m)
		b.bytes += size
		rw = row{}
		return nil
	})
	if err != nil {
		return batch{}, fmt.Errorf("read outbox: %w", err)
	}
	if len(b.ids) == r.cfg.BatchSize {
		b.more = true
	}
	return b, nil
}

// parseHeaders reads the headers column, [["key","value"], ...], into
// Kafka headers. It is the relay's own hottest step (profiled: encoding/json
// took most of its CPU), so the common shape, strings without escapes as
// PostgreSQL's jsonb prints them, is read directly; anything else goes
// through encoding/json.
func parseHeaders(b []byte) ([]kafka.Header, error) {
	if hs, ok := parseHeadersFast(b); ok {
		return hs, nil
	}
	var pairs [][]string
	if err := json.Unmarshal(b, &pairs); err != nil {
		return nil, err
	}
	hs := make([]kafka.Header, len(pairs))
	for j, p := range pairs {
		if len(p) != 2 {
			return nil, fmt.Errorf("header %d has %d elements, not [key, value]", j, len(p))
		}
		hs[j] = kafka.Header{Key: p[0], Value: []byte(p[1])}
	}
	return hs, nil
}

// parseHeadersFast handles [["k", "v"], ...] with plain strings (no
// backslash) and JSON whitespace; ok is false for anything else.
func parseHeadersFast(b []byte) (hs []kafka.Header, ok bool) {
	i := 0
	space := func() {
		for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\t' || b[i] == '\r') {
			i++
		}
	}
	expect := func(c byte) bool {
		space()
		if i < len(b) && b[i] == c {
			i++
			return true
		}
		return false
	}
	str := func() ([]byte, bool) {
		if !expect('"') {
			return nil, false
		}
		start := i
		for i < len(b) && b[i] != '"' {
			if b[i] == '\\' || b[i] < 0x20 {
				return nil, false
			}
			i++
		}
		if i == len(b) {
			return nil, false
		}
		s := b[start:i]
		i++
		return s, true
	}
	if !expect('[') {
		return nil, false
	}
	if expect(']') {
		space()
		return []kafka.Header{}, i == len(b)
	}
	for {
		if !expect('[') {
			return nil, false
		}
		k, ok1 := str()
		if !ok1 || !expect(',') {
			return nil, false
		}
		v, ok2 := str()
		if !ok2 || !expect(']') {
			return nil, false
		}
		hs = append(hs, kafka.Header{Key: string(k), Value: []byte(string(v))})
		if expect(',') {
			continue
		}
		if !expect(']') {
			return nil, false
		}
		space()
		return hs, i == len(b)
	}
}
