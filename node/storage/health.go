package storage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

var (
	// ErrWriteFailed is returned by every write once a write to pebble's
	// write-ahead log has failed (a full disk, an I/O error). pebble cannot
	// go on after that: it panics on a log error, fatally when the error
	// comes while it rotates the log (see walWatchFS). So the store hides
	// log errors from pebble, stops writing the log, stops calling pebble
	// for writes and returns this error (wrapping the cause) until it is
	// reopened; reads keep working. Writes that failed may still be visible
	// to reads until then (pebble applies a batch to its memtable before the
	// log is written) and may or may not be there after the reopen.
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
// failure, so that no later write reaches pebble's broken log. A call that
// returns after the log failed reports the failure: pebble does not see log
// errors (walWatchFS), so a synced call it completed may not be durable.
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
	if p := s.health.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// walWatchFS wraps the store's filesystem so that pebble never sees an
// error from its write-ahead log: the first failed write, sync, close or
// create of a log file, or sync of the log directory, becomes the store's
// write failure (fail), pebble is told the operation succeeded, and from
// then on log I/O is dropped (writes, syncs) or faked (creates).
//
// Why lie to pebble: pebble v2.1.7 cannot survive a log error. A commit
// that fills the memtable rotates the log (DB.makeRoomForWrite,
// db.go:2697), and DB.rotateWAL (db.go:2805) unlocks DB.mu, then panics on
// an error from closing the old log (db.go:2822) or creating the new one
// (db.go:2835: the create, or the directory sync in
// wal.(*StandaloneManager).Create); the deferred DB.mu.Unlock of its caller
// (DB.commitWrite, db.go:980) then dies with "fatal error: sync: unlock of
// unlocked mutex", which no recover can catch (pebble issues #2300, #5601).
// Refusing writes once a failure is known cannot prevent that: the disk can
// fail first exactly there (the old log's closing sync, the directory
// sync), and with NoSync pebble writes the log in the background, so a
// commit can fill the memtable before anyone has seen the log fail. Other
// log errors made pebble's later commits panic with its commit pipeline
// locked (db.go:955, 997).
//
// Why it is safe: fail runs before the failed operation returns to pebble,
// so before pebble completes any sync that covered it; every write that
// waits for a sync (commit's wait, guard after a synced pebble call, load)
// checks the failure after pebble returns and reports ErrWriteFailed. So a
// write is acknowledged as synced only if no log operation had failed when
// its sync completed. No log file is written to or created after the
// failure, so the failed log (with a torn tail) stays the newest on disk:
// pebble's replay accepts a torn tail only in the last log (open.go:509),
// and the logs before it were closed cleanly. Writes the store refused may
// stay in the memtable, visible to reads until the reopen, and may or may
// not survive it (see ErrWriteFailed).
type walWatchFS struct {
	vfs.FS
	s *Store
}

func isWAL(name string) bool { return strings.HasSuffix(name, ".log") }

// walGone reports whether the log has failed: from then on, log I/O is
// dropped.
func (fs walWatchFS) walGone() bool { return fs.s.health.failed.Load() != nil }

// open wraps the result of creating or opening the log file name.
func (fs walWatchFS) open(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		fs.s.fail(fmt.Errorf("create %s: %w", name, err))
		return discardFile{name: fs.PathBase(name)}, nil
	}
	return walFile{File: f, fs: fs, name: name}, nil
}

func (fs walWatchFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if !isWAL(name) {
		return fs.FS.Create(name, c)
	}
	if fs.walGone() {
		return discardFile{name: fs.PathBase(name)}, nil
	}
	f, err := fs.FS.Create(name, c)
	return fs.open(name, f, err)
}

func (fs walWatchFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if !isWAL(newname) {
		return fs.FS.ReuseForWrite(oldname, newname, c)
	}
	if fs.walGone() { // oldname stays; a reopen finds it obsolete
		return discardFile{name: fs.PathBase(newname)}, nil
	}
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.open(newname, f, err)
}

func (fs walWatchFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	if !isWAL(name) {
		return fs.FS.OpenReadWrite(name, c, opts...)
	}
	if fs.walGone() {
		return discardFile{name: fs.PathBase(name)}, nil
	}
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return fs.open(name, f, err)
}

// walManagerInit is the pebble function that opens the log directory; its
// handle is synced after each log is created (wal/standalone_manager.go:194).
// If a pebble upgrade renames it, TestWALFailureAtRotationIsSafe/DirSync
// dies with the fatal error again.
const walManagerInit = "github.com/cockroachdb/pebble/v2/wal.(*StandaloneManager).init"

// OpenDir wraps the handle pebble's log manager opens. The data directory
// is the same directory but another handle, left alone: pebble returns its
// sync errors to the flush or compaction, which is retried (a failing
// MANIFEST is still fatal to pebble; see Options.MinFreeBytes).
func (fs walWatchFS) OpenDir(name string) (vfs.File, error) {
	f, err := fs.FS.OpenDir(name)
	if err != nil || !calledFrom(walManagerInit) {
		return f, err
	}
	return walDir{File: f, fs: fs, name: name}, nil
}

// calledFrom reports whether fn is on the calling goroutine's stack.
func calledFrom(fn string) bool {
	pcs := make([]uintptr, 32)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	for {
		f, more := frames.Next()
		if f.Function == fn {
			return true
		}
		if !more {
			return false
		}
	}
}

// Unwrap returns the wrapped filesystem (see vfs.Root).
func (fs walWatchFS) Unwrap() vfs.FS { return fs.FS }

// walDir is the log directory's handle: a failed sync is the store's
// write failure, hidden from pebble.
type walDir struct {
	vfs.File
	fs   walWatchFS
	name string
}

func (d walDir) Sync() error {
	if err := d.File.Sync(); err != nil {
		d.fs.s.fail(fmt.Errorf("sync directory %q: %w", d.name, err))
	}
	return nil
}

// walFile is a log file: its first failed write, sync or close is the
// store's write failure; that and every later write or sync report success
// to pebble without touching the file.
type walFile struct {
	vfs.File
	fs   walWatchFS
	name string
}

// do runs a write operation on the file unless the log has failed, and
// records its error as the failure.
func (f walFile) do(op string, fn func() error) {
	if f.fs.walGone() {
		return
	}
	if err := fn(); err != nil {
		f.fs.s.fail(fmt.Errorf("%s %s: %w", op, f.name, err))
	}
}

func (f walFile) Write(p []byte) (int, error) {
	f.do("write", func() error { _, err := f.File.Write(p); return err })
	return len(p), nil
}

func (f walFile) WriteAt(p []byte, off int64) (int, error) {
	f.do("write", func() error { _, err := f.File.WriteAt(p, off); return err })
	return len(p), nil
}

func (f walFile) Preallocate(off, n int64) error {
	f.do("preallocate", func() error { return f.File.Preallocate(off, n) })
	return nil
}

func (f walFile) Sync() error {
	f.do("sync", f.File.Sync)
	return nil
}

func (f walFile) SyncData() error {
	f.do("sync", f.File.SyncData)
	return nil
}

func (f walFile) SyncTo(n int64) (bool, error) {
	f.do("sync", func() error { _, err := f.File.SyncTo(n); return err })
	return true, nil
}

// Close always closes the file (no descriptor leaks); a failure to close a
// log that is still in use is a write failure (data may not have reached
// the disk).
func (f walFile) Close() error {
	if err := f.File.Close(); err != nil && !f.fs.walGone() {
		f.fs.s.fail(fmt.Errorf("close %s: %w", f.name, err))
	}
	return nil
}

// discardFile stands for a log file that could not be, or was not,
// created after the log failed: writes and syncs vanish.
type discardFile struct{ name string }

func (discardFile) Close() error                           { return nil }
func (discardFile) Read([]byte) (int, error)               { return 0, io.EOF }
func (discardFile) ReadAt([]byte, int64) (int, error)      { return 0, io.EOF }
func (discardFile) Write(p []byte) (int, error)            { return len(p), nil }
func (discardFile) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }
func (discardFile) Preallocate(int64, int64) error         { return nil }
func (f discardFile) Stat() (vfs.FileInfo, error)          { return discardInfo(f), nil }
func (discardFile) Sync() error                            { return nil }
func (discardFile) SyncTo(int64) (bool, error)             { return true, nil }
func (discardFile) SyncData() error                        { return nil }
func (discardFile) Prefetch(int64, int64) error            { return nil }
func (discardFile) Fd() uintptr                            { return vfs.InvalidFd }

type discardInfo struct{ name string }

func (i discardInfo) Name() string         { return i.name }
func (discardInfo) Size() int64            { return 0 }
func (discardInfo) Mode() os.FileMode      { return 0o644 }
func (discardInfo) ModTime() time.Time     { return time.Time{} }
func (discardInfo) IsDir() bool            { return false }
func (discardInfo) Sys() any               { return nil }
func (discardInfo) DeviceID() vfs.DeviceID { return vfs.DeviceID{} }

var _ vfs.File = discardFile{}

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
