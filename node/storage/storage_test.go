package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// open opens a store in dir on fs (filling the test logger) and closes it
// at the end of the test.
func open(t testing.TB, fs vfs.FS, dir string, o Options) *Store {
	t.Helper()
	o.FS, o.Dir = fs, dir
	if o.Logger == nil {
		o.Logger = quiet
	}
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func set(t testing.TB, s *Store, key, value []byte) {
	t.Helper()
	if _, err := s.Update(key, func([]byte, bool) ([]byte, bool, error) { return value, true, nil }); err != nil {
		t.Fatal(err)
	}
}

func TestIdentity(t *testing.T) {
	fs := vfs.NewMem()
	a := open(t, fs, "a", Options{})
	b := open(t, fs, "b", Options{})
	if a.NodeID() == 0 || b.NodeID() == 0 || a.NodeID() == b.NodeID() {
		t.Fatalf("ids %016x and %016x: want distinct and nonzero", a.NodeID(), b.NodeID())
	}
	if !a.Fresh() || !b.Fresh() {
		t.Fatal("new directories are not Fresh")
	}
	id := a.NodeID()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a = open(t, fs, "a", Options{})
	if a.NodeID() != id || a.Fresh() {
		t.Fatalf("reopened: id %016x fresh %v, want %016x false", a.NodeID(), a.Fresh(), id)
	}

	// On disk too, through the default filesystem.
	dir := t.TempDir()
	d, err := Open(Options{Dir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	id = d.NodeID()
	d.Close()
	if d, err = Open(Options{Dir: dir, Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.NodeID() != id || d.Fresh() {
		t.Fatalf("reopened on disk: id %016x fresh %v, want %016x false", d.NodeID(), d.Fresh(), id)
	}
	if _, err := Open(Options{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Open without Dir: %v, want ErrInvalid", err)
	}
}

type kv struct {
	hash       uint64
	key, value string
}

// scanAll collects Scan(start, end) and checks its order.
func scanAll(t *testing.T, s *Store, start, end uint64) []kv {
	t.Helper()
	var got []kv
	err := s.Scan(start, end, func(h uint64, k, v []byte) error {
		if h != Hash(k) {
			t.Fatalf("scan: key %q with hash %016x, want %016x", k, h, Hash(k))
		}
		if n := len(got); n > 0 && (got[n-1].hash > h || got[n-1].hash == h && got[n-1].key >= string(k)) {
			t.Fatalf("scan out of order: %016x %q after %016x %q", h, k, got[n-1].hash, got[n-1].key)
		}
		got = append(got, kv{h, string(k), string(v)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestScanModel compares range scans with a model map.
func TestScanModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := open(t, vfs.NewMem(), "", Options{NoSync: true})
	model := map[string]string{}
	var hashes []uint64
	for i := range 2000 {
		k := fmt.Sprintf("key-%d", rng.IntN(1500))
		if i%7 == 0 {
			k = string(rune('a' + i%26)) // short keys too
		}
		v := fmt.Sprint(i)
		set(t, s, []byte(k), []byte(v))
		model[k] = v
		hashes = append(hashes, Hash([]byte(k)))
	}
	expect := func(start, end uint64) []kv {
		var want []kv
		for k, v := range model {
			if h := Hash([]byte(k)); h >= start && (end == 0 || h < end) {
				want = append(want, kv{h, k, v})
			}
		}
		slices.SortFunc(want, func(a, b kv) int {
			if a.hash != b.hash {
				return cmpU64(a.hash, b.hash)
			}
			return bytes.Compare([]byte(a.key), []byte(b.key))
		})
		return want
	}
	type rg struct{ start, end uint64 }
	ranges := []rg{{0, 0}, {0, 1}, {1 << 63, 0}, {1 << 63, 1 << 63}, {5, 3}, {^uint64(0), 0}, {0, ^uint64(0)}}
	for range 200 {
		a, b := rng.Uint64(), rng.Uint64()
		if rng.IntN(2) == 0 { // edges exactly on stored hashes
			a, b = hashes[rng.IntN(len(hashes))], hashes[rng.IntN(len(hashes))]
		}
		if a > b && rng.IntN(4) > 0 {
			a, b = b, a
		}
		ranges = append(ranges, rg{a, b})
		if rng.IntN(5) == 0 {
			ranges = append(ranges, rg{a, 0})
		}
	}
	for _, r := range ranges {
		got, want := scanAll(t, s, r.start, r.end), expect(r.start, r.end)
		if !slices.Equal(got, want) {
			t.Fatalf("Scan(%016x, %016x): %d keys, want %d", r.start, r.end, len(got), len(want))
		}
	}
	if n := len(scanAll(t, s, 0, 0)); n != len(model) {
		t.Fatalf("full scan: %d keys, want %d", n, len(model))
	}

	// An error from fn stops the scan and comes back as is.
	stop := errors.New("stop")
	calls := 0
	err := s.Scan(0, 0, func(uint64, []byte, []byte) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Fatalf("Scan with failing fn: %v after %d calls, want stop after 1", err, calls)
	}
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

type change struct{ key, old, new string }

func TestUpdateSemantics(t *testing.T) {
	var changes []change
	s := open(t, vfs.NewMem(), "", Options{OnChange: func(h uint64, k, old, nv []byte) {
		if h != Hash(k) {
			t.Errorf("OnChange hash %016x for %q, want %016x", h, k, Hash(k))
		}
		str := func(b []byte) string {
			if b == nil {
				return "<nil>"
			}
			return string(b)
		}
		changes = append(changes, change{string(k), str(old), str(nv)})
	}})
	k := []byte("k")
	boom := errors.New("boom")
	steps := []struct {
		name      string
		new       []byte
		write     bool
		err       error
		wantOld   string // "" = absent
		wrote     bool
		wantErr   error
		wantAfter string // "" = absent
	}{
		{name: "no write on absent", new: []byte("x"), write: false},
		{name: "delete absent", new: nil, write: true},
		{name: "create", new: []byte("v1"), write: true, wrote: true, wantAfter: "v1"},
		{name: "no write on present", new: []byte("zz"), write: false, wantOld: "v1", wantAfter: "v1"},
		{name: "overwrite", new: []byte("v2"), write: true, wantOld: "v1", wrote: true, wantAfter: "v2"},
		{name: "fn error", new: []byte("v3"), write: true, err: boom, wantOld: "v2", wantErr: boom, wantAfter: "v2"},
		{name: "empty value", new: []byte{}, write: true, wantOld: "v2", wantErr: ErrInvalid, wantAfter: "v2"},
		{name: "delete", new: nil, write: true, wantOld: "v2", wrote: true},
		{name: "recreate", new: []byte("v4"), write: true, wrote: true, wantAfter: "v4"},
	}
	var wantChanges []change
	for _, st := range steps {
		wrote, err := s.Update(k, func(old []byte, ok bool) ([]byte, bool, error) {
			if ok != (st.wantOld != "") || string(old) != st.wantOld {
				t.Errorf("%s: fn got (%q, %v), want %q", st.name, old, ok, st.wantOld)
			}
			return st.new, st.write, st.err
		})
		if !errors.Is(err, st.wantErr) || (err != nil) != (st.wantErr != nil) {
			t.Fatalf("%s: err %v, want %v", st.name, err, st.wantErr)
		}
		if wrote != st.wrote {
			t.Fatalf("%s: wrote %v, want %v", st.name, wrote, st.wrote)
		}
		v, ok, err := s.Get(k)
		if err != nil || ok != (st.wantAfter != "") || string(v) != st.wantAfter {
			t.Fatalf("%s: Get = %q %v %v, want %q", st.name, v, ok, err, st.wantAfter)
		}
		if wrote {
			old, nv := st.wantOld, st.wantAfter
			if old == "" {
				old = "<nil>"
			}
			if nv == "" {
				nv = "<nil>"
			}
			wantChanges = append(wantChanges, change{"k", old, nv})
		}
	}
	if !slices.Equal(changes, wantChanges) {
		t.Fatalf("OnChange calls\n%v\nwant\n%v", changes, wantChanges)
	}
}

func TestInvalidKeys(t *testing.T) {
	s := open(t, vfs.NewMem(), "", Options{})
	big := make([]byte, MaxKeySize+1)
	noop := func([]byte, bool) ([]byte, bool, error) { return nil, false, nil }
	for _, k := range [][]byte{nil, {}, big} {
		if _, _, err := s.Get(k); !errors.Is(err, ErrInvalid) {
			t.Errorf("Get(%d bytes): %v", len(k), err)
		}
		if _, err := s.Update(k, noop); !errors.Is(err, ErrInvalid) {
			t.Errorf("Update(%d bytes): %v", len(k), err)
		}
		if err := s.UpdateHint(1, k, noop); !errors.Is(err, ErrInvalid) {
			t.Errorf("UpdateHint(%d bytes): %v", len(k), err)
		}
	}
	set(t, s, big[:MaxKeySize], []byte("largest key"))
	if v, ok, err := s.Get(big[:MaxKeySize]); err != nil || !ok || string(v) != "largest key" {
		t.Fatalf("largest key: %q %v %v", v, ok, err)
	}
	if err := s.PutMeta("storage.id", []byte("x")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("PutMeta of a reserved name: %v", err)
	}
	if err := s.PutMeta("", []byte("x")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("PutMeta with empty name: %v", err)
	}
}

// Concurrent read-modify-writes of one key lose nothing, and OnChange sees
// every change exactly once, in order.
func TestConcurrentUpdates(t *testing.T) {
	var mu sync.Mutex
	seen := map[string][]uint64{}
	s := open(t, vfs.NewMem(), "", Options{OnChange: func(_ uint64, k, old, nv []byte) {
		mu.Lock()
		seen[string(k)] = append(seen[string(k)], binary.BigEndian.Uint64(nv))
		mu.Unlock()
	}})
	keys := [][]byte{[]byte("hot"), []byte("warm")}
	const workers, each = 16, 100
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				k := keys[(w+i)%len(keys)]
				_, err := s.Update(k, func(old []byte, ok bool) ([]byte, bool, error) {
					var n uint64
					if ok {
						n = binary.BigEndian.Uint64(old)
					}
					return binary.BigEndian.AppendUint64(nil, n+1), true, nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	var total uint64
	for _, k := range keys {
		v, _, err := s.Get(k)
		if err != nil {
			t.Fatal(err)
		}
		n := binary.BigEndian.Uint64(v)
		total += n
		for i, got := range seen[string(k)] {
			if got != uint64(i+1) {
				t.Fatalf("OnChange for %s: change %d wrote %d", k, i, got)
			}
		}
		if len(seen[string(k)]) != int(n) {
			t.Fatalf("OnChange for %s: %d calls for %d changes", k, len(seen[string(k)]), n)
		}
	}
	if total != workers*each {
		t.Fatalf("%d increments survived, want %d", total, workers*each)
	}
}

func TestNextCounter(t *testing.T) {
	fs := vfs.NewMem()
	s := open(t, fs, "", Options{CounterReserve: 7, NoSync: true})
	const workers, each = 8, 500
	got := make([][]uint64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				c, err := s.NextCounter()
				if err != nil {
					t.Error(err)
					return
				}
				got[w] = append(got[w], c)
			}
		})
	}
	wg.Wait()
	all := map[uint64]bool{}
	var hi uint64
	for _, cs := range got {
		for i, c := range cs {
			if i > 0 && c <= cs[i-1] {
				t.Fatalf("counter %d after %d", c, cs[i-1])
			}
			if all[c] {
				t.Fatalf("counter %d handed out twice", c)
			}
			all[c] = true
			hi = max(hi, c)
		}
	}
	if hi != workers*each {
		t.Fatalf("highest counter %d, want %d (no gaps without crashes)", hi, workers*each)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, fs, "", Options{CounterReserve: 7})
	c, err := s.NextCounter()
	if err != nil || c <= hi || c > hi+7 {
		t.Fatalf("after reopen: %d %v, want in (%d, %d]", c, err, hi, hi+7)
	}
}

func TestMeta(t *testing.T) {
	fs := vfs.NewMem()
	s := open(t, fs, "", Options{NoSync: true})
	if _, ok, err := s.GetMeta("members"); ok || err != nil {
		t.Fatalf("absent meta: %v %v", ok, err)
	}
	if err := s.PutMeta("members", []byte("table")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMeta("empty", nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, fs, "", Options{})
	if v, ok, err := s.GetMeta("members"); string(v) != "table" || !ok || err != nil {
		t.Fatalf("meta after reopen: %q %v %v", v, ok, err)
	}
	if v, ok, err := s.GetMeta("empty"); len(v) != 0 || !ok || err != nil {
		t.Fatalf("empty meta after reopen: %q %v %v", v, ok, err)
	}
	// Meta names do not collide with data keys.
	if _, ok, _ := s.Get([]byte("members")); ok {
		t.Fatal("meta visible as data")
	}
}

// TestHints drives the hint API with random operations against a model,
// reopening the store now and then.
func TestHints(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	fs := vfs.NewMem()
	s := open(t, fs, "", Options{NoSync: true})
	model := map[uint64]map[string]string{} // target → key → value
	targets := []uint64{1, 2, 0xfeed, ^uint64(0)}
	check := func() {
		t.Helper()
		counts, err := s.HintTargets()
		if err != nil {
			t.Fatal(err)
		}
		want := map[uint64]int{}
		for tg, m := range model {
			if len(m) > 0 {
				want[tg] = len(m)
			}
		}
		if !maps.Equal(counts, want) {
			t.Fatalf("HintTargets = %v, want %v", counts, want)
		}
		if got := s.Metrics().HintsPending; got != sumCounts(want) {
			t.Fatalf("Metrics().HintsPending = %d, want %d", got, sumCounts(want))
		}
		for _, tg := range targets {
			got := map[string]string{}
			var order []uint64
			err := s.Hints(tg, 0, func(k, v []byte) error {
				got[string(k)] = string(v)
				order = append(order, Hash(k))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, model[tg]) {
				t.Fatalf("Hints(%x) = %v, want %v", tg, got, model[tg])
			}
			if !slices.IsSorted(order) {
				t.Fatalf("Hints(%x) not in hash order", tg)
			}
			n := 0
			if err := s.Hints(tg, 3, func(k, v []byte) error { n++; return nil }); err != nil {
				t.Fatal(err)
			}
			if want := min(3, len(model[tg])); n != want {
				t.Fatalf("Hints(%x, limit 3) gave %d, want %d", tg, n, want)
			}
		}
	}
	for i := range 3000 {
		tg := targets[rng.IntN(len(targets))]
		k := fmt.Sprintf("k%d", rng.IntN(40))
		if model[tg] == nil {
			model[tg] = map[string]string{}
		}
		cur, ok := model[tg][k]
		switch op := rng.IntN(10); {
		case op < 5: // store or merge
			v := fmt.Sprintf("v%d", i)
			err := s.UpdateHint(tg, []byte(k), func(old []byte, had bool) ([]byte, bool, error) {
				if had != ok || string(old) != cur {
					t.Fatalf("UpdateHint fn got (%q, %v), want (%q, %v)", old, had, cur, ok)
				}
				return []byte(v), true, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			model[tg][k] = v
		case op < 8: // delete what was delivered: matches
			del, err := s.DeleteHint(tg, []byte(k), []byte(cur))
			if err != nil || del != ok {
				t.Fatalf("DeleteHint of current value: %v %v, want %v", del, err, ok)
			}
			delete(model[tg], k)
		case op < 9: // delete a stale value: no-op
			del, err := s.DeleteHint(tg, []byte(k), []byte(cur+"stale"))
			if err != nil || del {
				t.Fatalf("DeleteHint of a stale value: %v %v", del, err)
			}
		default: // a hint for one target is not another's
			if _, ok, _ := s.Get([]byte(k)); ok {
				t.Fatal("hint visible as data")
			}
		}
		if i%500 == 499 {
			check()
			s.Close()
			s = open(t, fs, "", Options{NoSync: true})
			check()
		}
	}
}

func sumCounts(m map[uint64]int) int {
	n := 0
	for _, c := range m {
		n += c
	}
	return n
}

// TestCorrupt damages the store's records and data through pebble
// directly: every one is reported as ErrCorrupt, none panics.
func TestCorrupt(t *testing.T) {
	good := encodeRecord(42)
	flipped := bytes.Clone(good)
	flipped[5] ^= 1
	badFormat := bytes.Clone(good)
	badFormat[0] = 2
	cases := []struct {
		name  string
		key   string
		value []byte // nil: delete
	}{
		{"id truncated", nameID, good[:8]},
		{"id too long", nameID, append(bytes.Clone(good), 0)},
		{"id empty", nameID, []byte{}},
		{"id bad checksum", nameID, flipped},
		{"id unknown format", nameID, badFormat},
		{"id zero", nameID, encodeRecord(0)},
		{"counter bad checksum", nameCounter, flipped},
		{"counter truncated", nameCounter, good[:1]},
		{"counter missing", nameCounter, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fs := vfs.NewMem()
			s := open(t, fs, "", Options{})
			var err error
			if c.value == nil {
				err = s.db.Delete(metaKey(c.key), pebble.Sync)
			} else {
				err = s.db.Set(metaKey(c.key), c.value, pebble.Sync)
			}
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			_, err = Open(Options{FS: fs, Logger: quiet})
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: %v, want ErrCorrupt", err)
			}
		})
	}

	t.Run("data", func(t *testing.T) {
		s := open(t, vfs.NewMem(), "", Options{})
		set(t, s, []byte("fine"), []byte("v"))
		// A key stored under the wrong hash, an empty value, a stub key.
		if err := s.db.Set(dataKey(Hash([]byte("x"))+1, []byte("x")), []byte("v"), nil); err != nil {
			t.Fatal(err)
		}
		if err := s.db.Set(dataKey(Hash([]byte("empty")), []byte("empty")), []byte{}, nil); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Get([]byte("empty")); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Get of an empty value: %v", err)
		}
		if _, err := s.Update([]byte("empty"), func([]byte, bool) ([]byte, bool, error) { return []byte("v"), true, nil }); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Update of an empty value: %v", err)
		}
		if err := s.Scan(0, 0, func(uint64, []byte, []byte) error { return nil }); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Scan over corrupt data: %v", err)
		}
		if err := s.db.Set(append(hintPrefix(7), 3), []byte("v"), nil); err != nil {
			t.Fatal(err)
		}
		if err := s.Hints(7, 0, func(k, v []byte) error { return nil }); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Hints over a stub key: %v", err)
		}
	})
}

func TestClosed(t *testing.T) {
	s := open(t, vfs.NewMem(), "", Options{})
	set(t, s, []byte("k"), []byte("v"))

	// Close waits for a scan in progress; calls from inside it fail fast.
	inScan, release := make(chan struct{}), make(chan struct{})
	scanDone := make(chan error)
	go func() {
		scanDone <- s.Scan(0, 0, func(uint64, []byte, []byte) error {
			close(inScan)
			<-release
			if _, _, err := s.Get([]byte("k")); !errors.Is(err, ErrClosed) {
				return fmt.Errorf("Get during Close: %v", err)
			}
			return nil
		})
	}()
	<-inScan
	closed := make(chan error)
	go func() { closed <- s.Close() }()
	for !s.closed.Load() { // wait for Close to start
		runtime.Gosched()
	}
	select {
	case <-closed:
		t.Fatal("Close returned during a scan")
	default:
	}
	close(release)
	if err := <-scanDone; err != nil {
		t.Fatal(err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	k := []byte("k")
	fn := func([]byte, bool) ([]byte, bool, error) { return []byte("v"), true, nil }
	errs := map[string]error{}
	_, _, errs["Get"] = s.Get(k)
	_, errs["Update"] = s.Update(k, fn)
	errs["Scan"] = s.Scan(0, 0, func(uint64, []byte, []byte) error { return nil })
	_, errs["NextCounter"] = s.NextCounter()
	_, _, errs["GetMeta"] = s.GetMeta("m")
	errs["PutMeta"] = s.PutMeta("m", nil)
	errs["UpdateHint"] = s.UpdateHint(1, k, fn)
	errs["Hints"] = s.Hints(1, 0, func(k, v []byte) error { return nil })
	_, errs["DeleteHint"] = s.DeleteHint(1, k, k)
	_, errs["HintTargets"] = s.HintTargets()
	for name, err := range errs {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s on a closed store: %v", name, err)
		}
	}
	if m := s.Metrics(); m != (Metrics{}) {
		t.Errorf("Metrics on a closed store: %+v", m)
	}
}

func TestMetrics(t *testing.T) {
	s := open(t, vfs.NewMem(), "", Options{})
	for i := range 100 {
		set(t, s, fmt.Appendf(nil, "k%d", i), bytes.Repeat([]byte("v"), 100))
	}
	m := s.Metrics()
	if m.Writes < 100 || m.SyncedWrites < 100 || m.WALSyncs == 0 || m.WALBytesWritten < 100*100 || m.DiskUsage == 0 ||
		m.WALSyncTime <= 0 || m.MemTables < 1 || m.MemTableBytes == 0 {
		t.Fatalf("implausible metrics after 100 synced writes: %+v", m)
	}
	// A flush makes a table in some level; the levels add up to Tables.
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	m = s.Metrics()
	var tables int64
	for _, l := range m.Levels {
		tables += l.Tables
		if (l.Tables > 0) != (l.Bytes > 0) {
			t.Errorf("level with %d tables of %d bytes", l.Tables, l.Bytes)
		}
	}
	if m.Flushes < 1 || tables < 1 || tables != m.Tables {
		t.Fatalf("after a flush: %d flushes, %d tables by level, %d in all", m.Flushes, tables, m.Tables)
	}
	if m.Levels[0].Tables > 0 && m.Levels[0].Sublevels < 1 {
		t.Errorf("L0 holds %d tables in %d sublevels", m.Levels[0].Tables, m.Levels[0].Sublevels)
	}
}

// UpdateMany writes many keys in one batch with the same semantics as
// Update, a key listed twice seeing the earlier choice, and OnChange called
// once per change.
func TestUpdateMany(t *testing.T) {
	var changes []string
	s := open(t, vfs.NewMem(), "db", Options{OnChange: func(_ uint64, key, old, new []byte) {
		changes = append(changes, fmt.Sprintf("%s:%s->%s", key, old, new))
	}})
	put := func(k, v string) {
		t.Helper()
		if _, err := s.Update([]byte(k), func([]byte, bool) ([]byte, bool, error) { return []byte(v), true, nil }); err != nil {
			t.Fatal(err)
		}
	}
	put("a", "1")
	put("d", "x")
	changes = nil
	keys := [][]byte{[]byte("a"), []byte("b"), []byte("a"), []byte("c"), []byte("d"), []byte("d")}
	written, err := s.UpdateMany(keys, func(i int, old []byte, ok bool) ([]byte, bool, error) {
		switch i {
		case 0: // a: 1 -> 2
			return []byte("2"), true, nil
		case 1: // b: created
			return []byte("b"), true, nil
		case 2: // a again: sees 2
			if string(old) != "2" || !ok {
				return nil, false, fmt.Errorf("second a saw %q %v", old, ok)
			}
			return append(old, '+'), true, nil
		case 3: // c: left alone
			return nil, false, nil
		case 4: // d: deleted
			return nil, true, nil
		default: // d again: absent now
			if ok {
				return nil, false, fmt.Errorf("deleted d still seen: %q", old)
			}
			return nil, false, nil
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{true, true, true, false, true, false}; !slices.Equal(written, want) {
		t.Fatalf("written %v, want %v", written, want)
	}
	for k, want := range map[string]string{"a": "2+", "b": "b"} {
		if v, ok, err := s.Get([]byte(k)); err != nil || !ok || string(v) != want {
			t.Fatalf("%s = %q %v %v, want %q", k, v, ok, err, want)
		}
	}
	for _, k := range []string{"c", "d"} {
		if _, ok, _ := s.Get([]byte(k)); ok {
			t.Fatalf("%s exists", k)
		}
	}
	want := []string{"a:1->2", "b:->b", "a:2->2+", "d:x->"}
	if !slices.Equal(changes, want) {
		t.Fatalf("OnChange calls %q, want %q", changes, want)
	}
	// An error from fn writes nothing.
	_, err = s.UpdateMany([][]byte{[]byte("e"), []byte("f")}, func(i int, _ []byte, _ bool) ([]byte, bool, error) {
		if i == 1 {
			return nil, false, errors.New("boom")
		}
		return []byte("e"), true, nil
	})
	if err == nil {
		t.Fatal("fn error not returned")
	}
	if _, ok, _ := s.Get([]byte("e")); ok {
		t.Fatal("a failed UpdateMany wrote something")
	}
}

// A synced UpdateMany survives a crash that keeps no unsynced data.
func TestUpdateManyDurable(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s := open(t, fs, "db", Options{})
	var keys [][]byte
	for i := range 300 {
		keys = append(keys, fmt.Appendf(nil, "k%d", i))
	}
	if _, err := s.UpdateMany(keys, func(int, []byte, bool) ([]byte, bool, error) { return []byte("v"), true, nil }); err != nil {
		t.Fatal(err)
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, crashed, "db", Options{})
	for _, k := range keys {
		if _, ok, err := s.Get(k); err != nil || !ok {
			t.Fatalf("%s lost after a crash (%v)", k, err)
		}
	}
}

func TestDeleteRange(t *testing.T) {
	s := open(t, vfs.NewMem(), "db", Options{})
	model := map[string]uint64{}
	for i := range 2000 {
		k := fmt.Appendf(nil, "k%d", i)
		if _, err := s.Update(k, func([]byte, bool) ([]byte, bool, error) { return []byte("v"), true, nil }); err != nil {
			t.Fatal(err)
		}
		model[string(k)] = Hash(k)
	}
	start, end := uint64(1)<<62, uint64(3)<<62
	if err := s.DeleteRange(start, end); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(uint64(7)<<61, 0); err != nil { // to the end
		t.Fatal(err)
	}
	for k, h := range model {
		_, ok, err := s.Get([]byte(k))
		if err != nil {
			t.Fatal(err)
		}
		gone := (h >= start && h < end) || h >= uint64(7)<<61
		if ok == gone {
			t.Fatalf("%s (hash %016x): present %v after deleting ranges", k, h, ok)
		}
	}
}
