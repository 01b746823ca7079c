package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// faultFS fails every write operation with err while on.
type faultFS struct {
	on  atomic.Bool
	err error
}

func (f *faultFS) MaybeError(op errorfs.Op) error {
	if !f.on.Load() || op.Kind.ReadOrWrite() != errorfs.OpIsWrite {
		return nil
	}
	return fmt.Errorf("%s: %w", op.Path, f.err)
}

func (f *faultFS) String() string { return "faultFS" }

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// within runs f and fails the test if it does not return within d (a hang
// inside pebble).
func within[T any](t *testing.T, d time.Duration, what string, f func() T) T {
	t.Helper()
	ch := make(chan T, 1)
	go func() { ch <- f() }()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
		panic("unreachable")
	}
}

// A failed write-ahead log write (a full disk) makes every later write fail
// fast with ErrWriteFailed wrapping the cause, never a panic or a hang;
// reads and Health keep working; Close returns; a reopen once the fault is
// cleared writes again and keeps what was acknowledged before.
func TestWALFailureIsStickyAndSafe(t *testing.T) {
	for _, noSync := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoSync=%v", noSync), func(t *testing.T) {
			mem := vfs.NewMem()
			inj := &faultFS{err: syscall.ENOSPC}
			o := Options{FS: errorfs.Wrap(mem, inj), NoSync: noSync, Logger: quietLogger()}
			s, err := Open(o)
			if err != nil {
				t.Fatal(err)
			}
			update := func(k string) error {
				return within(t, 5*time.Second, "Update", func() error {
					_, err := s.Update([]byte(k), func([]byte, bool) ([]byte, bool, error) { return make([]byte, 1000), true, nil })
					return err
				})
			}
			for i := range 5 {
				if err := update(fmt.Sprint("ok", i)); err != nil {
					t.Fatal(err)
				}
			}
			inj.on.Store(true)
			// With NoSync, writes are acknowledged before the log is
			// written: the failure shows once pebble flushes a block.
			failedAt := -1
			for i := range 500 {
				if err := update(fmt.Sprint("k", i)); err != nil {
					if !errors.Is(err, ErrWriteFailed) || !errors.Is(err, syscall.ENOSPC) {
						t.Fatalf("write %d: %v, want ErrWriteFailed wrapping ENOSPC", i, err)
					}
					failedAt = i
					break
				}
			}
			if failedAt < 0 {
				t.Fatal("no write failed while the disk was failing")
			}
			if !noSync && failedAt != 0 {
				t.Fatalf("first synced write after the fault succeeded (failed at %d)", failedAt)
			}
			for i := range 100 { // past any block boundary that would panic pebble
				if err := update(fmt.Sprint("after", i)); !errors.Is(err, ErrWriteFailed) {
					t.Fatalf("write after the failure: %v", err)
				}
			}
			if err := s.PutMeta("m", []byte("x")); !errors.Is(err, ErrWriteFailed) {
				t.Fatalf("PutMeta after the failure: %v", err)
			}
			if err := s.Sync(); !errors.Is(err, ErrWriteFailed) {
				t.Fatalf("Sync after the failure: %v", err)
			}
			if err := s.Health(); !errors.Is(err, ErrWriteFailed) {
				t.Fatalf("Health: %v", err)
			}
			inj.on.Store(false) // the fault is gone, but pebble's log is not back
			if err := update("cleared"); !errors.Is(err, ErrWriteFailed) {
				t.Fatalf("write after the fault cleared, before reopen: %v", err)
			}
			if v, ok, err := s.Get([]byte("ok3")); err != nil || !ok || len(v) != 1000 {
				t.Fatalf("read after the failure: %d %v %v", len(v), ok, err)
			}
			within(t, 10*time.Second, "Close", s.Close)

			s, err = Open(o)
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			defer s.Close()
			if err := s.Health(); err != nil {
				t.Fatalf("Health after reopen: %v", err)
			}
			if err := update("again"); err != nil {
				t.Fatalf("write after reopen: %v", err)
			}
			if !noSync {
				for i := range 5 {
					if _, ok, err := s.Get([]byte(fmt.Sprint("ok", i))); err != nil || !ok {
						t.Fatalf("acknowledged ok%d lost: %v %v", i, ok, err)
					}
				}
			}
		})
	}
}

// A panic inside pebble's write path (what a commit after a failed log
// does) becomes ErrWriteFailed; Close then leaves pebble alone rather than
// wait on its locked commit pipeline.
func TestPebblePanicBecomesWriteFailure(t *testing.T) {
	s, err := Open(Options{FS: vfs.NewMem(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	err = s.guard(func() error { panic("pebble: boom") })
	if !errors.Is(err, ErrWriteFailed) {
		t.Fatalf("guard: %v", err)
	}
	if _, err := s.Update([]byte("k"), func([]byte, bool) ([]byte, bool, error) { return []byte("v"), true, nil }); !errors.Is(err, ErrWriteFailed) {
		t.Fatalf("Update after the panic: %v", err)
	}
	if err := within(t, 5*time.Second, "Close", s.Close); err == nil {
		t.Fatal("Close after a pebble panic reported no error")
	}
}

// An operation stuck inside pebble after a write failure does not hold
// Close forever.
func TestCloseAfterFailureDoesNotWaitForever(t *testing.T) {
	s, err := Open(Options{FS: vfs.NewMem(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if !s.enter() { // an operation that never exits
		t.Fatal("enter")
	}
	s.fail(errors.New("injected"))
	start := time.Now()
	if err := within(t, 3*closeGrace, "Close", s.Close); err == nil {
		t.Fatal("Close that abandoned pebble reported no error")
	}
	if d := time.Since(start); d < closeGrace {
		t.Fatalf("Close returned after %v, before the grace of %v", d, closeGrace)
	}
}

// Below MinFreeBytes writes fail with ErrDiskFull; they resume by
// themselves once space is back.
func TestMinFreeBytes(t *testing.T) {
	mem := vfs.NewMem()
	mem.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: 1 << 30, TotalBytes: 2 << 30, UsedBytes: 1 << 30})
	s, err := Open(Options{FS: mem, MinFreeBytes: 64 << 20, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	write := func() error {
		_, err := s.Update([]byte("k"), func([]byte, bool) ([]byte, bool, error) { return []byte("v"), true, nil })
		return err
	}
	if err := write(); err != nil {
		t.Fatal(err)
	}
	mem.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: 1 << 20, TotalBytes: 2 << 30, UsedBytes: 2<<30 - 1<<20})
	if err := s.Health(); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("Health with 1 MiB free: %v", err)
	}
	if err := write(); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("write with 1 MiB free: %v", err)
	}
	if _, err := s.Update([]byte("k2"), func([]byte, bool) ([]byte, bool, error) { return []byte("v"), true, nil }); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("write with 1 MiB free: %v", err)
	}
	if _, ok, err := s.Get([]byte("k")); err != nil || !ok {
		t.Fatalf("read with the disk full: %v %v", ok, err)
	}
	mem.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: 1 << 30, TotalBytes: 2 << 30, UsedBytes: 1 << 30})
	deadline := time.Now().Add(5 * time.Second)
	for write() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("writes did not resume once space was back: %v", write())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Health(); err != nil {
		t.Fatalf("Health once space was back: %v", err)
	}
}

// opFault fails, while on, every operation fails picks.
type opFault struct {
	on    atomic.Bool
	fails func(errorfs.Op) bool
}

func (f *opFault) MaybeError(op errorfs.Op) error {
	if !f.on.Load() || !f.fails(op) {
		return nil
	}
	return fmt.Errorf("%s: %w", op.Path, syscall.ENOSPC)
}

func (f *opFault) String() string { return "opFault" }

// A log failure that pebble first meets while it rotates the write-ahead
// log (a full memtable) used to kill the process: pebble v2.1.7's rotateWAL
// panics with DB.mu unlocked and its caller's deferred Unlock turns that
// into a fatal "sync: unlock of unlocked mutex". These faults hit exactly
// there: the sync that closes the old log (never reached before with
// NoSync, as no commit asks for a sync) and the directory sync after the
// new log is created. The store must go sticky-failed instead, keep every
// write it acknowledged as synced, and open again once the fault is gone.
func TestWALFailureAtRotationIsSafe(t *testing.T) {
	walSync := func(op errorfs.Op) bool {
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			return strings.HasSuffix(op.Path, ".log")
		}
		return false
	}
	dirSync := func(op errorfs.Op) bool { return op.Kind == errorfs.OpFileSync && op.Path == "" } // the store's directory on vfs.NewMem
	for _, c := range []struct {
		name   string
		noSync bool
		fails  func(errorfs.Op) bool
	}{
		{"WALSync/NoSync=true", true, walSync},
		{"DirSync/NoSync=false", false, dirSync},
		{"DirSync/NoSync=true", true, dirSync},
	} {
		t.Run(c.name, func(t *testing.T) {
			inj := &opFault{fails: c.fails}
			o := Options{FS: errorfs.Wrap(vfs.NewMem(), inj), NoSync: c.noSync, Logger: quietLogger()}
			s, err := Open(o)
			if err != nil {
				t.Fatal(err)
			}
			update := func(k string) error {
				return within(t, 5*time.Second, "Update", func() error {
					_, err := s.Update([]byte(k), func([]byte, bool) ([]byte, bool, error) { return make([]byte, 1000), true, nil })
					return err
				})
			}
			if err := s.PutMeta("before", []byte("x")); err != nil { // synced even with NoSync
				t.Fatal(err)
			}
			inj.on.Store(true)
			// 2 MB of writes: the first memtable is 256 KiB, so pebble
			// rotates the log long before the end.
			var acked []string
			for i := range 2000 {
				k := fmt.Sprint("k", i)
				err := update(k)
				if err == nil {
					acked = append(acked, k)
					continue
				}
				if !errors.Is(err, ErrWriteFailed) || !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("write %d: %v, want ErrWriteFailed wrapping ENOSPC", i, err)
				}
				break
			}
			if len(acked) == 2000 {
				t.Fatal("no write failed while the disk was failing")
			}
			t.Logf("%d writes acknowledged before the failure", len(acked))
			for i := range 20 {
				if err := update(fmt.Sprint("after", i)); !errors.Is(err, ErrWriteFailed) {
					t.Fatalf("write after the failure: %v", err)
				}
			}
			if err := s.Health(); !errors.Is(err, ErrWriteFailed) {
				t.Fatalf("Health: %v", err)
			}
			for _, k := range acked {
				if _, ok, err := s.Get([]byte(k)); err != nil || !ok {
					t.Fatalf("read %s after the failure: %v %v", k, ok, err)
				}
			}
			within(t, 10*time.Second, "Close", s.Close)

			inj.on.Store(false)
			s, err = Open(o)
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			defer s.Close()
			if err := s.Health(); err != nil {
				t.Fatalf("Health after reopen: %v", err)
			}
			if err := update("again"); err != nil {
				t.Fatalf("write after reopen: %v", err)
			}
			if _, ok, err := s.GetMeta("before"); err != nil || !ok {
				t.Fatalf("synced PutMeta lost: %v %v", ok, err)
			}
			if !c.noSync {
				for _, k := range acked {
					if _, ok, err := s.Get([]byte(k)); err != nil || !ok {
						t.Fatalf("acknowledged %s lost (%d acknowledged): %v %v", k, len(acked), ok, err)
					}
				}
			}
		})
	}
}

// Hiding log errors from pebble (walWatchFS) must not turn a failed sync
// into an acknowledged write. Concurrent synced writers (group commit)
// write until the log fails at a random moment, before or after a log
// rotation, by a failed log write, log sync or directory sync; a crash
// then drops everything not synced. Every write acknowledged before the
// failure must be there after the reopen.
func TestWALFailureKeepsAcknowledgedWrites(t *testing.T) {
	faults := map[string]func(errorfs.Op) bool{
		"LogWrite": func(op errorfs.Op) bool {
			return (op.Kind == errorfs.OpFileWrite || op.Kind == errorfs.OpFileWriteAt) && strings.HasSuffix(op.Path, ".log")
		},
		"LogSync": func(op errorfs.Op) bool {
			return (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData) && strings.HasSuffix(op.Path, ".log")
		},
		"DirSync": func(op errorfs.Op) bool { return op.Kind == errorfs.OpFileSync && op.Path == "db" },
	}
	for name, fails := range faults {
		for seed := range uint64(6) {
			t.Run(fmt.Sprintf("%s/seed=%d", name, seed), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(seed, 7))
				mem := vfs.NewCrashableMem()
				inj := &opFault{fails: fails}
				s, err := Open(Options{FS: errorfs.Wrap(mem, inj), Dir: "db", Logger: quietLogger()})
				if err != nil {
					t.Fatal(err)
				}
				var mu sync.Mutex
				acked := map[string]uint64{}
				acks := 0
				faultAt := 20 + rng.IntN(600) // the first log rotation comes after ~230
				var wg sync.WaitGroup
				for w := range 4 {
					wg.Go(func() {
						for i := uint64(1); ; i++ {
							k := fmt.Sprintf("w%d-k%d", w, i%40)
							v := binary.BigEndian.AppendUint64(make([]byte, 0, 1000), i)
							_, err := s.Update([]byte(k), func([]byte, bool) ([]byte, bool, error) { return v[:1000], true, nil })
							if err != nil {
								if !errors.Is(err, ErrWriteFailed) {
									t.Errorf("writer %d: %v, want ErrWriteFailed", w, err)
								}
								return
							}
							mu.Lock()
							acked[k] = i
							if acks++; acks == faultAt {
								inj.on.Store(true)
							}
							mu.Unlock()
							if i > 5000 {
								t.Errorf("writer %d: no write failed", w)
								return
							}
						}
					})
				}
				wg.Wait()
				within(t, 10*time.Second, "Close", s.Close)
				crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
				s, err = Open(Options{FS: crashed, Dir: "db", Logger: quietLogger()})
				if err != nil {
					t.Fatalf("reopen after the crash: %v", err)
				}
				defer s.Close()
				for k, want := range acked {
					v, ok, err := s.Get([]byte(k))
					if err != nil || !ok {
						t.Fatalf("acknowledged %s lost (%d acknowledged, fault at %d): %v", k, acks, faultAt, err)
					}
					if got := binary.BigEndian.Uint64(v); got < want {
						t.Fatalf("%s at %d, acknowledged %d", k, got, want)
					}
				}
			})
		}
	}
}
