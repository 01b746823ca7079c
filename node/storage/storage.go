package storage

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

var (
	// ErrCorrupt reports a record or key on disk that fails validation.
	ErrCorrupt = errors.New("storage: corrupt record")
	// ErrClosed is returned by every method of a closed Store.
	ErrClosed = errors.New("storage: closed")
	// ErrInvalid reports a bad argument: an empty or oversized key, an
	// empty value, a reserved metadata name.
	ErrInvalid = errors.New("storage: invalid argument")
)

// Names of the store's own metadata records. PutMeta refuses this prefix.
const (
	reservedPrefix = "storage."
	nameID         = reservedPrefix + "id"
	nameCounter    = reservedPrefix + "counter"
)

// stripes is the number of per-key mutexes (for data keys, and again for
// hint keys). Two keys share a mutex when their hashes agree modulo stripes.
const stripes = 1024

// Options configures a Store. The zero value of every field but Dir is a
// usable default.
type Options struct {
	// Dir is the pebble directory. Required when FS is the default (OS)
	// filesystem; with another FS, "" means that filesystem's root.
	Dir string
	// FS is the filesystem. Default vfs.Default; tests pass vfs.NewMem() or
	// vfs.NewCrashableMem().
	FS vfs.FS
	// NoSync, when true, makes data and hint writes return before they are
	// synced to disk: a process crash can lose them. Default false: every
	// write is synced (pebble.Sync) before it returns, and pebble's commit
	// pipeline groups concurrent synced writes into one WAL fsync. The
	// identity, counter high-water mark and PutMeta are synced regardless.
	NoSync bool
	// CacheSize is the block cache size in bytes. Default 64 MiB.
	CacheSize int64
	// Logger receives the store's and pebble's log messages. Default
	// slog.Default().
	Logger *slog.Logger
	// OnChange, if set, is called after every committed change of a data
	// key (Update), while that key's lock is still held, so calls for one
	// key arrive in commit order. old is nil if the key was absent, new is
	// nil if it was deleted. It must be fast, must not modify the slices,
	// and must not call back into the Store.
	OnChange func(hash uint64, key, old, new []byte)
	// MinFreeBytes, if positive, makes writes fail with ErrDiskFull while
	// the filesystem holding Dir has fewer bytes available (checked at most
	// every 100 ms), so the disk never fills under pebble: a failed log
	// write stops all writes until a reopen (ErrWriteFailed), and a failed
	// MANIFEST write during a flush or compaction is fatal to pebble.
	// Filesystems that cannot report their usage (vfs.NewMem) are never
	// refused. Default 0: no check.
	MinFreeBytes int64
	// CounterReserve is how many dot counters are reserved (persisted as the
	// high-water mark, synced) ahead of use per write. A crash skips at most
	// this many counters. Default 10000.
	CounterReserve uint64
}

func (o *Options) fill() error {
	if o.FS == nil {
		o.FS = vfs.Default
		if o.Dir == "" {
			return fmt.Errorf("storage: open: %w: no directory", ErrInvalid)
		}
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 64 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.CounterReserve == 0 {
		o.CounterReserve = 10000
	}
	return nil
}

// Store is a node's single pebble instance. All methods are safe for
// concurrent use.
type Store struct {
	opts  Options
	db    *pebble.DB
	wo    *pebble.WriteOptions // for data and hints: Sync unless NoSync
	id    uint64
	fresh bool

	keyMu  [stripes]sync.Mutex // data keys, by hash
	hintMu [stripes]sync.Mutex // hint keys, by (target, hash)

	ctr struct {
		mu    sync.Mutex    // serializes reservations
		next  atomic.Uint64 // last counter handed out
		limit atomic.Uint64 // persisted high-water mark: every counter <= limit is safe to hand out
	}

	hints struct {
		sync.Mutex
		count map[uint64]int // pending hints per target
	}

	// life tracks operations in flight so Close can wait for them before
	// closing pebble (which panics on use after close).
	life struct {
		sync.Mutex
		idle   sync.Cond // signalled when active drops to 0 after closing
		closed bool
		active int
	}
	closed atomic.Bool // mirrors life.closed for NextCounter's fast path

	stats struct {
		writes, syncedWrites, stalls atomic.Uint64
	}

	health health
}

// Open opens (creating if needed) the store in o.Dir. A directory without
// an identity gets a new random one.
func Open(o Options) (*Store, error) {
	if err := o.fill(); err != nil {
		return nil, err
	}
	s := &Store{opts: o, wo: pebble.Sync}
	if o.NoSync {
		s.wo = pebble.NoSync
	}
	s.life.idle.L = &s.life
	s.hints.count = map[uint64]int{}

	cache := pebble.NewCache(o.CacheSize)
	defer cache.Unref() // the DB holds its own reference
	po := &pebble.Options{
		FS:                 walWatchFS{FS: o.FS, s: s},
		Cache:              cache,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{o.Logger},
		EventListener:      s.eventListener(),
	}
	// Every write is a read-modify-write of one key, and most new keys are
	// absent from every table: bloom filters (10 bits per key, ~1% false
	// positives) let those reads skip the tables' data blocks.
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(o.Dir, po)
	if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", o.Dir, err)
	}
	s.db = db
	if err := s.load(); err != nil {
		db.Close()
		return nil, fmt.Errorf("storage: open %s: %w", o.Dir, err)
	}
	// The log may have failed while pebble opened or load wrote, unseen by
	// pebble (walWatchFS): the identity may not be durable.
	if p := s.health.failed.Load(); p != nil {
		db.Close()
		return nil, fmt.Errorf("storage: open %s: %w", o.Dir, *p)
	}
	return s, nil
}

// load reads (or creates) the identity and counter mark and counts hints.
func (s *Store) load() error {
	b, ok, err := s.get(metaKey(nameID))
	if err != nil {
		return err
	}
	if !ok {
		// A new directory: a new identity, and a counter that starts at 1.
		// Both in one synced batch, so neither exists without the other.
		s.id, s.fresh = newID(), true
		batch := s.db.NewBatch()
		defer batch.Close()
		batch.Set(metaKey(nameID), encodeRecord(s.id), nil)
		batch.Set(metaKey(nameCounter), encodeRecord(0), nil)
		if err := batch.Commit(pebble.Sync); err != nil {
			return fmt.Errorf("create identity: %w", err)
		}
	} else if s.id, err = decodeRecord(b); err != nil {
		return fmt.Errorf("node id: %w", err)
	} else if s.id == 0 {
		return fmt.Errorf("node id: %w: zero", ErrCorrupt)
	}

	b, ok, err = s.get(metaKey(nameCounter))
	if err != nil {
		return err
	}
	if !ok {
		// Resuming from 1 could reissue dots this identity already used.
		return fmt.Errorf("counter high-water mark: %w: missing for existing node id", ErrCorrupt)
	}
	mark, err := decodeRecord(b)
	if err != nil {
		return fmt.Errorf("counter high-water mark: %w", err)
	}
	s.ctr.next.Store(mark)
	s.ctr.limit.Store(mark)

	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixHint}, UpperBound: []byte{prefixHint + 1}})
	if err != nil {
		return err
	}
	defer it.Close()
	for valid := it.First(); valid; valid = it.Next() {
		target, _, err := decodeHintKey(it.Key())
		if err != nil {
			return err
		}
		s.hints.count[target]++
	}
	return it.Error()
}

func newID() uint64 {
	var b [8]byte
	for {
		rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
		if id := binary.BigEndian.Uint64(b[:]); id != 0 {
			return id
		}
	}
}

// Close waits for operations in flight and closes pebble. It is idempotent.
func (s *Store) Close() error {
	s.life.Lock()
	if s.life.closed {
		s.life.Unlock()
		return nil
	}
	s.life.closed = true
	s.closed.Store(true)
	// After a write failure an operation may be stuck inside pebble for
	// good: wait for it only closeGrace (fail wakes this loop).
	var giveUp time.Time
	abandoned := false
	for s.life.active > 0 {
		if s.health.failed.Load() != nil {
			if giveUp.IsZero() {
				giveUp = time.Now().Add(closeGrace)
				t := time.AfterFunc(closeGrace, func() { s.life.Lock(); s.life.idle.Broadcast(); s.life.Unlock() })
				defer t.Stop()
			} else if !time.Now().Before(giveUp) {
				abandoned = true
				break
			}
		}
		s.life.idle.Wait()
	}
	s.life.Unlock()
	if err := s.closeDB(abandoned); err != nil {
		return fmt.Errorf("storage: close: %w", err)
	}
	return nil
}

// enter registers an operation; it reports false once the store is closed.
func (s *Store) enter() bool {
	s.life.Lock()
	defer s.life.Unlock()
	if s.life.closed {
		return false
	}
	s.life.active++
	return true
}

func (s *Store) exit() {
	s.life.Lock()
	s.life.active--
	if s.life.closed && s.life.active == 0 {
		s.life.idle.Broadcast()
	}
	s.life.Unlock()
}

// NodeID is this node's random nonzero 64-bit identity, created with the
// data directory.
func (s *Store) NodeID() uint64 { return s.id }

// Fresh reports whether this Open created the identity (a new directory).
func (s *Store) Fresh() bool { return s.fresh }

// NextCounter returns the next dot counter of this node: strictly greater
// than every counter returned before, including before a crash. Counters
// are handed out from memory below a persisted high-water mark; crossing it
// first persists (synced) a new mark CounterReserve ahead.
func (s *Store) NextCounter() (uint64, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	c := s.ctr.next.Add(1)
	if c == 0 {
		return 0, fmt.Errorf("storage: next counter: %w: counter space exhausted", ErrInvalid)
	}
	if c <= s.ctr.limit.Load() {
		return c, nil
	}
	if err := s.reserve(c); err != nil {
		return 0, err // c is skipped, never reused
	}
	return c, nil
}

// reserve persists a high-water mark of at least c.
func (s *Store) reserve(c uint64) error {
	s.ctr.mu.Lock()
	defer s.ctr.mu.Unlock()
	if c <= s.ctr.limit.Load() {
		return nil // another caller's reservation covers c
	}
	if !s.enter() {
		return ErrClosed
	}
	defer s.exit()
	// Cover every counter already taken (callers queued behind us) plus
	// CounterReserve-1 more.
	mark := s.ctr.next.Load() - 1 + s.opts.CounterReserve
	if mark < c {
		mark = ^uint64(0)
	}
	if err := s.guard(func() error { return s.db.Set(metaKey(nameCounter), encodeRecord(mark), pebble.Sync) }); err != nil {
		return fmt.Errorf("storage: reserve counters up to %d: %w", mark, err)
	}
	s.stats.writes.Add(1)
	s.stats.syncedWrites.Add(1)
	s.ctr.limit.Store(mark)
	return nil
}

// get reads a pebble key, copying the value.
func (s *Store) get(k []byte) ([]byte, bool, error) {
	v, closer, err := s.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	out := bytes.Clone(v)
	closer.Close()
	return out, true, nil
}

// getValue reads a data or hint value; those are never empty.
func (s *Store) getValue(k []byte) ([]byte, bool, error) {
	v, ok, err := s.get(k)
	if err == nil && ok && len(v) == 0 {
		err = fmt.Errorf("%w: empty value", ErrCorrupt)
	}
	return v, ok, err
}

// write sets k to v, or deletes it if v is nil, synced per wo.
func (s *Store) write(k, v []byte, wo *pebble.WriteOptions) error {
	wait, err := s.apply(k, v, wo.Sync)
	if err != nil {
		return err
	}
	return wait()
}

// apply makes the change visible at once and returns a function that waits
// until it is durable (when sync). Callers release the key's lock between
// the two, so a write's fsync never holds up writers of other keys that
// share its lock stripe; pebble's commit pipeline makes the change durable
// in log order, so a later write of the same key is never durable before
// this one.
func (s *Store) apply(k, v []byte, sync bool) (func() error, error) {
	b := s.db.NewBatch()
	if v == nil {
		_ = b.Delete(k, nil)
	} else {
		_ = b.Set(k, v, nil)
	}
	return s.commit(b, sync, 1)
}

// commit applies a batch of n writes; see apply. It goes through guard:
// once a write has failed, nothing more reaches pebble. A batch pebble
// failed on is not closed (nor reused): pebble may still hold it.
func (s *Store) commit(b *pebble.Batch, sync bool, n int) (func() error, error) {
	if err := s.writable(); err != nil {
		_ = b.Close()
		return nil, err
	}
	if !sync {
		if err := s.guard(func() error { return s.db.Apply(b, pebble.NoSync) }); err != nil {
			return nil, err
		}
		s.stats.writes.Add(uint64(n))
		_ = b.Close()
		return func() error { return nil }, nil
	}
	if err := s.guard(func() error { return s.db.ApplyNoSyncWait(b, pebble.Sync) }); err != nil {
		return nil, err
	}
	s.stats.writes.Add(uint64(n))
	s.stats.syncedWrites.Add(uint64(n))
	return func() error {
		err := b.SyncWait()
		_ = b.Close()
		if err != nil {
			return s.fail(err)
		}
		// pebble does not see log errors (walWatchFS): a failure recorded
		// by now may have hit this batch's sync.
		if p := s.health.failed.Load(); p != nil {
			return *p
		}
		return nil
	}, nil
}

// Get returns the value of a data key.
func (s *Store) Get(key []byte) ([]byte, bool, error) {
	if err := checkKey(key); err != nil {
		return nil, false, fmt.Errorf("storage: get %q: %w", trunc(key), err)
	}
	if !s.enter() {
		return nil, false, ErrClosed
	}
	defer s.exit()
	v, ok, err := s.getValue(dataKey(Hash(key), key))
	if err != nil {
		return nil, false, fmt.Errorf("storage: get %q: %w", trunc(key), err)
	}
	return v, ok, nil
}

// Update is a read-modify-write of a data key under the key's lock. fn gets
// the current value (a copy it may keep; ok false if absent) and returns
// (new, write, err): write false leaves the key alone, write true with new
// nil deletes it. An error from fn is returned wrapped, and nothing is
// written. Update reports whether it changed the store; the change is
// synced (unless NoSync) before it returns, and OnChange has been called.
func (s *Store) Update(key []byte, fn func(old []byte, ok bool) ([]byte, bool, error)) (bool, error) {
	return s.update(key, fn, s.wo)
}

// UpdateUnsynced is Update without the sync: the change is durable only
// after a later Sync (or a later synced write) returns. Repair paths use it
// to make a whole batch durable with one fsync.
func (s *Store) UpdateUnsynced(key []byte, fn func(old []byte, ok bool) ([]byte, bool, error)) (bool, error) {
	return s.update(key, fn, pebble.NoSync)
}

// Sync makes every write that returned before it durable: it appends an
// empty record to the write-ahead log with a synced commit, which syncs
// everything logged before it.
func (s *Store) Sync() error {
	if !s.enter() {
		return ErrClosed
	}
	defer s.exit()
	if err := s.guard(func() error { return s.db.LogData(nil, pebble.Sync) }); err != nil {
		return fmt.Errorf("storage: sync: %w", err)
	}
	s.stats.syncedWrites.Add(1)
	return nil
}

func (s *Store) update(key []byte, fn func(old []byte, ok bool) ([]byte, bool, error), wo *pebble.WriteOptions) (bool, error) {
	if err := checkKey(key); err != nil {
		return false, fmt.Errorf("storage: update %q: %w", trunc(key), err)
	}
	if !s.enter() {
		return false, ErrClosed
	}
	defer s.exit()
	h := Hash(key)
	mu := &s.keyMu[h%stripes]
	mu.Lock()
	k := dataKey(h, key)
	old, _, nv, wait, err := s.modify(k, fn, wo)
	if err == nil && wait != nil && s.opts.OnChange != nil {
		s.opts.OnChange(h, key, old, nv)
	}
	mu.Unlock()
	if err == nil && wait != nil {
		err = wait()
	}
	if err != nil {
		return false, fmt.Errorf("storage: update %q: %w", trunc(key), err)
	}
	return wait != nil, nil
}

// UpdateMany is Update for many keys at once: one pebble batch and one
// sync (unless NoSync) for all of them. fn is called for each key in turn
// with its index; a key listed twice sees the value the first call chose.
// It reports per key whether it was written. An error from fn stops it and
// nothing is written.
func (s *Store) UpdateMany(keys [][]byte, fn func(i int, old []byte, ok bool) ([]byte, bool, error)) ([]bool, error) {
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return nil, fmt.Errorf("storage: update %q: %w", trunc(k), err)
		}
	}
	if !s.enter() {
		return nil, ErrClosed
	}
	defer s.exit()
	hashes := make([]uint64, len(keys))
	var locks []int
	for i, k := range keys {
		hashes[i] = Hash(k)
		locks = append(locks, int(hashes[i]%stripes))
	}
	// Lock stripes in ascending order: Update holds one stripe at a time,
	// so no cycle can form.
	slices.Sort(locks)
	locks = slices.Compact(locks)
	for _, l := range locks {
		s.keyMu[l].Lock()
	}
	unlock := func() {
		for _, l := range locks {
			s.keyMu[l].Unlock()
		}
	}
	type change struct {
		i        int
		old, new []byte
	}
	var changes []change
	pending := map[string][]byte{} // values chosen earlier in this batch
	deleted := map[string]bool{}
	written := make([]bool, len(keys))
	b := s.db.NewBatch()
	for i, key := range keys {
		k := dataKey(hashes[i], key)
		old, ok := pending[string(key)], false
		if old != nil {
			ok = true
		} else if !deleted[string(key)] {
			var err error
			if old, ok, err = s.getValue(k); err != nil {
				unlock()
				_ = b.Close()
				return nil, fmt.Errorf("storage: update %q: %w", trunc(key), err)
			}
		}
		nv, write, err := fn(i, old, ok)
		if err != nil {
			unlock()
			_ = b.Close()
			return nil, fmt.Errorf("storage: update %q: %w", trunc(key), err)
		}
		if !write || (nv == nil && !ok) {
			continue
		}
		if nv != nil && len(nv) == 0 {
			unlock()
			_ = b.Close()
			return nil, fmt.Errorf("storage: update %q: %w: empty value (use nil to delete)", trunc(key), ErrInvalid)
		}
		if nv == nil {
			_ = b.Delete(k, nil)
			delete(pending, string(key))
			deleted[string(key)] = true
		} else {
			_ = b.Set(k, nv, nil)
			pending[string(key)] = nv
			delete(deleted, string(key))
		}
		written[i] = true
		changes = append(changes, change{i, old, nv})
	}
	if len(changes) == 0 {
		unlock()
		_ = b.Close()
		return written, nil
	}
	wait, err := s.commit(b, s.wo.Sync, len(changes))
	if err == nil && s.opts.OnChange != nil {
		for _, c := range changes {
			s.opts.OnChange(hashes[c.i], keys[c.i], c.old, c.new)
		}
	}
	unlock()
	if err == nil {
		err = wait()
	}
	if err != nil {
		return nil, fmt.Errorf("storage: update %d keys: %w", len(keys), err)
	}
	return written, nil
}

// modify runs fn on k's value and applies its result, with k's lock held.
// wait is nil when nothing was written; otherwise it waits for durability
// (the caller calls it after releasing the lock).
func (s *Store) modify(k []byte, fn func([]byte, bool) ([]byte, bool, error), wo *pebble.WriteOptions) (old []byte, ok bool, nv []byte, wait func() error, err error) {
	old, ok, err = s.getValue(k)
	if err != nil {
		return nil, false, nil, nil, err
	}
	nv, write, err := fn(old, ok)
	if err != nil {
		return nil, false, nil, nil, err
	}
	if !write || (nv == nil && !ok) {
		return nil, false, nil, nil, nil
	}
	if nv != nil && len(nv) == 0 {
		return nil, false, nil, nil, fmt.Errorf("%w: empty value (use nil to delete)", ErrInvalid)
	}
	wait, err = s.apply(k, nv, wo.Sync)
	if err != nil {
		return nil, false, nil, nil, err
	}
	return old, ok, nv, wait, nil
}

// Scan calls fn for every data key whose hash h satisfies start <= h < end,
// in (hash, key) order; end == 0 means the end of the hash space. The
// slices are valid only during the call. An error from fn stops the scan
// and is returned as is. Scan reads a consistent snapshot: writes during
// the scan may or may not be seen.
func (s *Store) Scan(start, end uint64, fn func(hash uint64, key, value []byte) error) error {
	if !s.enter() {
		return ErrClosed
	}
	defer s.exit()
	if end != 0 && start >= end {
		return nil
	}
	upper := []byte{prefixData + 1}
	if end != 0 {
		upper = dataBound(end)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: dataBound(start), UpperBound: upper})
	if err != nil {
		return fmt.Errorf("storage: scan [%016x, %016x): %w", start, end, err)
	}
	defer it.Close()
	for valid := it.First(); valid; valid = it.Next() {
		h, key, err := decodeDataKey(it.Key())
		if err != nil {
			return fmt.Errorf("storage: scan: %w", err)
		}
		v, err := it.ValueAndErr()
		if err == nil && len(v) == 0 {
			err = fmt.Errorf("%w: empty value", ErrCorrupt)
		}
		if err != nil {
			return fmt.Errorf("storage: scan %q: %w", trunc(key), err)
		}
		if err := fn(h, key, v); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("storage: scan [%016x, %016x): %w", start, end, err)
	}
	return nil
}

func checkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty metadata name", ErrInvalid)
	case len(name) > MaxKeySize:
		return fmt.Errorf("%w: metadata name of %d bytes exceeds %d", ErrInvalid, len(name), MaxKeySize)
	}
	return nil
}

// GetMeta returns the metadata record name (a copy), as PutMeta stored it.
func (s *Store) GetMeta(name string) ([]byte, bool, error) {
	if err := checkName(name); err != nil {
		return nil, false, fmt.Errorf("storage: get meta: %w", err)
	}
	if !s.enter() {
		return nil, false, ErrClosed
	}
	defer s.exit()
	v, ok, err := s.get(metaKey(name))
	if err != nil {
		return nil, false, fmt.Errorf("storage: get meta %q: %w", name, err)
	}
	return v, ok, nil
}

// PutMeta stores a metadata record, synced (even with NoSync). Names
// starting with "storage." are reserved for the store's own records.
func (s *Store) PutMeta(name string, value []byte) error {
	if err := checkName(name); err != nil {
		return fmt.Errorf("storage: put meta: %w", err)
	}
	if strings.HasPrefix(name, reservedPrefix) {
		return fmt.Errorf("storage: put meta %q: %w: reserved name", name, ErrInvalid)
	}
	if !s.enter() {
		return ErrClosed
	}
	defer s.exit()
	if value == nil {
		value = []byte{}
	}
	if err := s.write(metaKey(name), value, pebble.Sync); err != nil {
		return fmt.Errorf("storage: put meta %q: %w", name, err)
	}
	return nil
}

// DeleteRange deletes every data key whose hash h satisfies start <= h <
// end (end == 0: to the end of the hash space), synced unless NoSync. It
// does not call OnChange: the caller, which dropped whole ranges, updates
// what it derives from the data itself (anti-entropy clears the ranges'
// leaves). Writes to keys in the range that race with it may survive.
func (s *Store) DeleteRange(start, end uint64) error {
	if !s.enter() {
		return ErrClosed
	}
	defer s.exit()
	lo := dataBound(start)
	hi := []byte{prefixData + 1}
	if end != 0 {
		if end <= start {
			return nil
		}
		hi = dataBound(end)
	}
	b := s.db.NewBatch()
	_ = b.DeleteRange(lo, hi, nil)
	wait, err := s.commit(b, s.wo.Sync, 1)
	if err == nil {
		err = wait()
	}
	if err != nil {
		return fmt.Errorf("storage: delete range [%016x, %016x): %w", start, end, err)
	}
	return nil
}
