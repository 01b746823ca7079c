package storage

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestCrash writes and hands out counters from several goroutines, crashes
// at a random moment (a crash clone of the filesystem keeps what was synced
// and a random share of what was not, as in pebble's own crash tests),
// reopens the clone and checks that nothing acknowledged before the crash
// is lost: every returned Update, the identity, and the counter, which must
// resume above every counter returned. Each seed crashes several times in a
// row; odd seeds use NoSync, where only the identity and counter must
// survive.
func TestCrash(t *testing.T) {
	seeds, rounds := 24, 4
	if testing.Short() {
		seeds = 4
	}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			crashRounds(t, seed, rounds)
		})
	}
}

func crashRounds(t *testing.T, seed uint64, rounds int) {
	rng := rand.New(rand.NewPCG(seed, 99))
	noSync := seed%2 == 1
	opts := Options{NoSync: noSync, CounterReserve: 1 + rng.Uint64N(20)}

	// What the test knows was acknowledged before the last crash.
	acked := map[string]uint64{} // key → highest sequence number acknowledged
	var (
		ackedCounter uint64 // highest counter handed out
		id           uint64
	)
	fs := vfs.NewCrashableMem()
	for round := range rounds {
		s := open(t, fs, "db", opts)
		if round == 0 {
			id = s.NodeID()
		} else if s.NodeID() != id || s.Fresh() {
			t.Fatalf("round %d: id %016x fresh %v, want %016x false", round, s.NodeID(), s.Fresh(), id)
		}
		// Recovery: nothing acknowledged is missing.
		if !noSync {
			for k, want := range acked {
				v, ok, err := s.Get([]byte(k))
				if err != nil || !ok {
					t.Fatalf("round %d: acknowledged key %s lost (%v)", round, k, err)
				}
				if got := binary.BigEndian.Uint64(v); got < want {
					t.Fatalf("round %d: key %s at %d, acknowledged %d", round, k, got, want)
				}
			}
		}
		if c, err := s.NextCounter(); err != nil || c <= ackedCounter {
			t.Fatalf("round %d: first counter %d (%v), but %d was handed out before the crash", round, c, err, ackedCounter)
		}

		// Work until a random number of acknowledgements, then crash with
		// the writers still running.
		var mu sync.Mutex // guards acked, ackedCounter and acks
		acks := 0
		crashAt := 20 + rng.IntN(300)
		var stop atomic.Bool
		var wg sync.WaitGroup
		for w := range 4 {
			wrng := rand.New(rand.NewPCG(seed, uint64(round*10+w)))
			wg.Go(func() {
				for !stop.Load() {
					if wrng.IntN(3) == 0 {
						c, err := s.NextCounter()
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						ackedCounter, acks = max(ackedCounter, c), acks+1
						mu.Unlock()
						continue
					}
					// Each writer owns its keys, so "acknowledged" is
					// simply the last sequence number it wrote.
					k := fmt.Sprintf("w%d-k%d", w, wrng.IntN(50))
					var seq uint64
					_, err := s.Update([]byte(k), func(old []byte, ok bool) ([]byte, bool, error) {
						if ok {
							seq = binary.BigEndian.Uint64(old)
						}
						seq++
						return binary.BigEndian.AppendUint64(nil, seq), true, nil
					})
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					acked[k], acks = seq, acks+1
					mu.Unlock()
				}
			})
		}
		for {
			mu.Lock()
			n := acks
			mu.Unlock()
			if n >= crashAt || t.Failed() {
				break
			}
			runtime.Gosched()
		}
		// Everything acknowledged up to here must survive the crash.
		// Acknowledgements recorded after it are not guaranteed (the
		// write may have been in flight during the clone): keep the
		// snapshot taken with the clone.
		mu.Lock()
		crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(101), RNG: rand.New(rand.NewPCG(seed, uint64(round)))})
		stop.Store(true)
		snapshot, snapshotCounter := maps.Clone(acked), ackedCounter
		mu.Unlock()
		wg.Wait()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		acked, ackedCounter = snapshot, snapshotCounter
		fs = crashed
	}
}

// TestSyncCoversUnsynced: UpdateUnsynced writes followed by one Sync survive
// a crash that keeps none of the unsynced data; writes after the Sync may be
// lost.
func TestSyncCoversUnsynced(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := open(t, fs, "db", Options{})
	put := func(k string) {
		t.Helper()
		if _, err := s.UpdateUnsynced([]byte(k), func([]byte, bool) ([]byte, bool, error) { return []byte("v"), true, nil }); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		put(fmt.Sprint("synced-", i))
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	put("unsynced")
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, crashed, "db", Options{})
	for i := range 100 {
		if _, ok, err := s.Get([]byte(fmt.Sprint("synced-", i))); err != nil || !ok {
			t.Fatalf("synced-%d lost after Sync and a crash (%v)", i, err)
		}
	}
	if _, ok, _ := s.Get([]byte("unsynced")); ok {
		t.Log("the unsynced write survived (allowed, not required)")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != ErrClosed {
		t.Fatalf("Sync after Close: %v, want ErrClosed", err)
	}
}
