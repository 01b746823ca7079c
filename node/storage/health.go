package storage

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

var (
	// ErrWriteFailed is returned by every write once a write to pebble's
	// write-ahead log has failed (a full disk, an I/O error). pebble cannot
	// go on after that: its log writer keeps the error, and a later commit
	// panics inside pebble's commit pipeline and leaves it locked. So the
	// store stops calling pebble for writes and returns this error (wrapping
	// the cause) until it is reopened; reads keep working. Writes that failed
	// may still be visible to reads until then (pebble applies a batch to its
	// memtable before the log sync reports the error) and may or may not be
	// there after the reopen.
	ErrWriteFailed = errors.New("storage: write-ahead log failed; writes refused until the store is reopened")
	// ErrDiskFull is returned by writes while the filesystem holding the
	// store has less than Options.MinFreeBytes available. Writes resume by
	// themselves once space is freed.
	ErrDiskFull = errors.New("storage: disk nearly full")
)

// spaceCheckInterval is how often writes look at the free space (a statfs).
const spaceCheckInterval = 100 * time.Millisecond

// closeGrace is how long Close waits, after a write failure, for
// operations stuck inside pebble before it gives up on them.
const closeGrace = 2 * time.Second

// health is a store's write-failure and free-space state.
type health struct {
	failed  atomic.Pointer[error] // sticky: the first write failure
	wedged  atomic.Bool           // pebble panicked: its commit pipeline may be locked
	once    sync.Once
	space   atomic.Pointer[error] // last free-space verdict; nil: writable or unknown
	checkAt atomic.Int64          // unix nanos of the next free-space check
}

// Health reports whether the store accepts writes: nil, or an error wrapping
// ErrWriteFailed (until reopened) or ErrDiskFull (until space is freed).
func (s *Store) Health() error {
	if p := s.health.failed.Load(); p != nil {
		return *p
	}
	return s.checkSpace(true)
}

// fail records err as the store's write failure (the first one wins) and
// returns the error writes report from now on.
func (s *Store) fail(err error) error {
	s.health.once.Do(func() {
		e := fmt.Errorf("%w: %w", ErrWriteFailed, err)
		s.health.failed.Store(&e)
		s.opts.Logger.Error("storage write failed; refusing writes until the store is reopened", "err", err)
		// Wake a Close waiting for operations that may never finish.
		s.life.Lock()
		s.life.idle.Broadcast()
		s.life.Unlock()
	})
	return *s.health.failed.Load()
}

// writable is checked before every pebble write.
func (s *Store) writable() error {
	if p := s.health.failed.Load(); p != nil {
		return *p
	}
	return s.checkSpace(false)
}

// checkSpace returns ErrDiskFull while free space is below MinFreeBytes. It
// asks the filesystem at most every spaceCheckInterval unless now.
func (s *Store) checkSpace(now bool) error {
	min := s.opts.MinFreeBytes
	if min <= 0 {
		return nil
	}
	t := time.Now().UnixNano()
	if next := s.health.checkAt.Load(); now || (t >= next && s.health.checkAt.CompareAndSwap(next, t+int64(spaceCheckInterval))) {
		u, err := s.opts.FS.GetDiskUsage(s.opts.Dir)
		switch {
		case err != nil: // unknown (an in-memory FS): do not refuse
			s.health.space.Store(nil)
		case u.AvailBytes < uint64(min):
			e := fmt.Errorf("%w: %d bytes available for %q, below the minimum of %d; free space to resume writes",
				ErrDiskFull, u.AvailBytes, s.opts.Dir, min)
			s.health.space.Store(&e)
		default:
			s.health.space.Store(nil)
		}
	}
	if p := s.health.space.Load(); p != nil {
		return *p
	}
	return nil
}

// guard runs one pebble write call f. It refuses when the store cannot
// write, and turns an error or a panic from pebble into the store's write
// failure, so that no later write reaches pebble's broken log.
func (s *Store) guard(f func() error) (err error) {
	if err := s.writable(); err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			s.health.wedged.Store(true)
			err = s.fail(fmt.Errorf("pebble panicked: %v", r))
		}
	}()
	if err := f(); err != nil {
		return s.fail(err)
	}
	return nil
}

// walWatchFS wraps the store's filesystem and records the first failed
// write, sync or create of a write-ahead log file as the store's write
// failure. pebble's log writer writes in the background; with NoSync no
// commit waits for it, so without this the first sign of a failed log
// would be the panic of a later commit.
type walWatchFS struct {
	vfs.FS
	s *Store
}

func isWAL(name string) bool { return strings.HasSuffix(name, ".log") }

func (fs walWatchFS) watch(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		if isWAL(name) {
			fs.s.fail(fmt.Errorf("create %s: %w", name, err))
		}
		return f, err
	}
	if !isWAL(name) {
		return f, nil
	}
	return walFile{File: f, fs: fs, name: name}, nil
}

func (fs walWatchFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.watch(name, f, err)
}

func (fs walWatchFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.watch(newname, f, err)
}

func (fs walWatchFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return fs.watch(name, f, err)
}

// Unwrap returns the wrapped filesystem (see vfs.Root).
func (fs walWatchFS) Unwrap() vfs.FS { return fs.FS }

type walFile struct {
	vfs.File
	fs   walWatchFS
	name string
}

func (f walFile) check(op string, err error) error {
	if err != nil {
		f.fs.s.fail(fmt.Errorf("%s %s: %w", op, f.name, err))
	}
	return err
}

func (f walFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	return n, f.check("write", err)
}

func (f walFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	return n, f.check("write", err)
}

func (f walFile) Preallocate(off, n int64) error {
	return f.check("preallocate", f.File.Preallocate(off, n))
}

func (f walFile) Sync() error { return f.check("sync", f.File.Sync()) }

func (f walFile) SyncData() error { return f.check("sync", f.File.SyncData()) }

func (f walFile) SyncTo(n int64) (bool, error) {
	full, err := f.File.SyncTo(n)
	return full, f.check("sync", err)
}

var _ vfs.FS = walWatchFS{}

// closeDB closes pebble unless a write failure left it wedged; see Close.
func (s *Store) closeDB(abandoned bool) error {
	if p := s.health.failed.Load(); p != nil && (abandoned || s.health.wedged.Load()) {
		// pebble's commit pipeline may be locked by the commit that
		// panicked: DB.Close would wait for it forever. The files stay as
		// they are; reopening replays the log.
		return fmt.Errorf("storage: close: pebble left open after a write failure (%v)", *p)
	}
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("pebble panicked: %v", r)
			}
		}()
		done <- s.db.Close()
	}()
	if s.health.failed.Load() == nil {
		return <-done
	}
	select {
	case err := <-done:
		return err
	case <-time.After(closeGrace):
		return fmt.Errorf("storage: close: pebble did not close within %v after a write failure (%v)", closeGrace, *s.health.failed.Load())
	}
}
