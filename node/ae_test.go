package node

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rumorkv/rumor/crdt"
	"github.com/rumorkv/rumor/ring"
)

// faultClusterWith opens size in-process nodes on a FaultNetwork, joined
// through the first, each configured by tweak.
func faultClusterWith(t testing.TB, size int, tweak func(*Config)) (*FaultNetwork, []*testNode) {
	t.Helper()
	fn := NewFaultNetwork(1)
	var nodes []*testNode
	for i := 1; i <= size; i++ {
		nodes = append(nodes, faultNode(t, fn, i, tweak))
	}
	waitMembers(t, nodes, size)
	return fn, nodes
}

// localStates returns every key a node stores with its encoded state.
func localStates(t testing.TB, n *testNode) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	if err := n.ScanLocal(func(key, state []byte) error {
		out[string(key)] = bytes.Clone(state)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// replicasIdentical checks that no hint is pending (a write acknowledged
// through a hint lives nowhere else until handed off) and that every key
// any node stores is held, byte for byte identical, by each of its N
// replicas.
func replicasIdentical(t testing.TB, nodes []*testNode) error {
	t.Helper()
	for _, n := range nodes {
		for target, c := range n.Metrics().HintsPending {
			if c > 0 {
				return fmt.Errorf("%s holds %d hints for %s", n.Name(), c, target)
			}
		}
	}
	// Cheap first: every pair's index agrees on the ranges they share.
	for _, a := range nodes {
		va := a.view.Load()
		for _, b := range nodes {
			if s := va.shared[ring.NodeID(b.ID())]; a.ID() < b.ID() && len(s) > 0 {
				if a.ae.index.SetHash(s) != b.ae.index.SetHash(s) {
					return fmt.Errorf("%s and %s differ on the ranges they share", a.Name(), b.Name())
				}
			}
		}
	}
	byName := map[string]map[string][]byte{}
	keys := map[string]bool{}
	for _, n := range nodes {
		byName[n.Name()] = localStates(t, n)
		for k := range byName[n.Name()] {
			keys[k] = true
		}
	}
	for k := range keys {
		var first []byte
		for i, r := range nodes[0].Replicas([]byte(k)) {
			st, ok := byName[r][k]
			if !ok {
				return fmt.Errorf("key %q: replica %s has no copy", k, r)
			}
			if i == 0 {
				first = st
			} else if !bytes.Equal(st, first) {
				return fmt.Errorf("key %q: replicas differ", k)
			}
		}
	}
	return nil
}

type ackedWrite struct{ key, value string }

// TestPartitionHealConverges is issue 3's acceptance test: five nodes cut
// 3|2, writes on both sides (the same keys, new keys, deletes), then healed:
// every replica is identical within a stated bound, every acknowledged
// write is present (concurrent ones as siblings), no deleted key is back.
func TestPartitionHealConverges(t *testing.T) {
	const bound = 10 * time.Second
	fn, nodes := faultClusterWith(t, 5, func(c *Config) { c.AEInterval = 500 * time.Millisecond })
	left, right := nodes[:3], nodes[3:]

	// Before the cut: keys both sides will write, and keys one side will
	// delete (on every replica, W=all).
	for i := range 40 {
		if _, err := nodes[i%5].Put(bg, fmt.Appendf(nil, "same-%d", i), []byte("base"), &WriteOptions{W: All}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		if _, err := nodes[i%5].Put(bg, fmt.Appendf(nil, "del-%d", i), []byte("doomed"), &WriteOptions{W: All}); err != nil {
			t.Fatal(err)
		}
	}
	// Each del- key is deleted on one side: one where it has a replica (a
	// side without any replica of a key cannot read it).
	deleter := map[string]int{}
	for i := range 20 {
		key := fmt.Sprintf("del-%d", i)
		side := i % 2
		hasReplica := func(group []*testNode) bool {
			for _, r := range nodes[0].Replicas([]byte(key)) {
				for _, n := range group {
					if n.Name() == r {
						return true
					}
				}
			}
			return false
		}
		if side == 1 && !hasReplica(right) {
			side = 0
		}
		deleter[key] = side
	}

	fn.Partition(hosts(left), hosts(right))
	waitMembers(t, left, 3)
	waitMembers(t, right, 2)

	var acked []ackedWrite
	for side, group := range [][]*testNode{left, right} {
		tag := []string{"L", "R"}[side]
		for i := range 40 {
			key, val := fmt.Sprintf("same-%d", i), fmt.Sprintf("%s-%d", tag, i)
			if _, err := group[i%len(group)].Put(bg, []byte(key), []byte(val), nil); err != nil {
				t.Fatalf("%s put %s: %v", tag, key, err)
			}
			acked = append(acked, ackedWrite{key, val})
		}
		for i := range 60 {
			key := fmt.Sprintf("new-%s-%d", tag, i)
			if _, err := group[i%len(group)].Put(bg, []byte(key), []byte(key), nil); err != nil {
				t.Fatalf("%s put %s: %v", tag, key, err)
			}
			acked = append(acked, ackedWrite{key, key})
		}
		// Each side deletes its del- keys with the context of a read on
		// its side: it supersedes exactly what it saw.
		for i := range 20 {
			key := []byte(fmt.Sprintf("del-%d", i))
			if deleter[string(key)] != side {
				continue
			}
			n := group[i%len(group)]
			res, err := n.Get(bg, key, nil)
			if err != nil {
				t.Fatalf("%s read %s before deleting: %v", tag, key, err)
			}
			if _, err := n.Delete(bg, key, &WriteOptions{Context: res.Context}); err != nil {
				t.Fatalf("%s delete %s: %v", tag, key, err)
			}
		}
	}

	healed := time.Now()
	fn.Heal()
	waitMembers(t, nodes, 5)
	t.Logf("one membership %v after heal", time.Since(healed).Round(time.Millisecond))
	eventually(t, bound, func() error { return replicasIdentical(t, nodes) })
	took := time.Since(healed)
	t.Logf("every replica identical %v after heal (bound %v)", took.Round(time.Millisecond), bound)

	// Every acknowledged write is present; concurrent ones as siblings.
	want := map[string][]string{}
	for i := range 40 {
		want[fmt.Sprintf("same-%d", i)] = []string{"base"}
	}
	for _, w := range acked {
		want[w.key] = append(want[w.key], w.value)
	}
	for key, vals := range want {
		res, err := nodes[len(key)%5].Get(bg, []byte(key), &ReadOptions{R: All})
		if err != nil {
			t.Fatalf("read %s after heal: %v", key, err)
		}
		got := values(t, res)
		for _, v := range vals {
			if !slices.Contains(got, v) {
				t.Fatalf("%s = %q after heal: acknowledged %q lost", key, got, v)
			}
		}
	}
	// No deleted key is back, on any replica.
	for i := range 20 {
		key := []byte(fmt.Sprintf("del-%d", i))
		for _, n := range nodes {
			if res, err := n.Get(bg, key, &ReadOptions{Local: true}); !errors.Is(err, ErrNotFound) {
				t.Fatalf("deleted %s is back on %s: %v %v", key, n.Name(), values(t, res), err)
			}
		}
	}
}

// seedKeys writes count keys straight into every replica's store (one
// version each, the same on all replicas), quickly: the write path is not
// what the tests using it measure.
func seedKeys(t testing.TB, nodes []*testNode, count int, value []byte) {
	t.Helper()
	byName := map[string]*testNode{}
	for _, n := range nodes {
		byName[n.Name()] = n
	}
	actor := crdt.ActorID(nodes[0].ID())
	batches := map[*testNode][]aePair{}
	flush := func(n *testNode) {
		if _, err := n.mergeBatch(batches[n]); err != nil {
			t.Fatal(err)
		}
		batches[n] = batches[n][:0]
	}
	for i := range count {
		key := fmt.Appendf(nil, "seed-%07d", i)
		c, err := nodes[0].store.NextCounter()
		if err != nil {
			t.Fatal(err)
		}
		reg := crdt.Register{}.Write(crdt.Dot{Actor: actor, Counter: c}, nil, nodes[0].clock.Now(), value, false)
		state, err := reg.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range nodes[0].Replicas(key) {
			n := byName[r]
			if batches[n] = append(batches[n], aePair{Key: key, State: state}); len(batches[n]) >= 1000 {
				flush(n)
			}
		}
	}
	for n := range batches {
		flush(n)
	}
}

// divergence measures what replicas must receive to converge: for every
// (key, replica) whose state is not the join of all replicas' states, one
// transfer of len(key) + len(join) bytes.
func divergence(t testing.TB, nodes []*testNode) (keys int, bytes int) {
	t.Helper()
	byName := map[string]map[string][]byte{}
	all := map[string]bool{}
	for _, n := range nodes {
		byName[n.Name()] = localStates(t, n)
		for k := range byName[n.Name()] {
			all[k] = true
		}
	}
	for k := range all {
		reps := nodes[0].Replicas([]byte(k))
		var join crdt.Register
		states := make([]crdt.Register, len(reps))
		for i, r := range reps {
			reg, err := decodeReg(byName[r][k])
			if err != nil {
				t.Fatal(err)
			}
			states[i] = reg
			join = join.Join(reg)
		}
		enc, err := join.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range states {
			if !st.Equal(join) {
				keys++
				bytes += len(k) + len(enc)
			}
		}
	}
	return keys, bytes
}

func aeTotals(nodes []*testNode) (bytes, pulled uint64) {
	for _, n := range nodes {
		st := n.AntiEntropy()
		bytes += st.BytesSent + st.BytesReceived
		pulled += st.KeysPulled
	}
	return bytes, pulled
}

// TestAntiEntropyEfficiency is issue 3's measurement: 100k keys on five
// nodes, 1k keys diverged on each side of a 3|2 partition, hints off so
// anti-entropy does all the repair. It reports anti-entropy bytes per
// diverged byte and keys transferred per key that truly needed one, and
// what an in-sync cluster costs per (range, peer) per round.
func TestAntiEntropyEfficiency(t *testing.T) {
	keys, perSide := 100_000, 1000
	if testing.Short() || raceEnabled {
		keys, perSide = 10_000, 200 // the full size runs without -race
	}
	fn, nodes := faultClusterWith(t, 5, func(c *Config) {
		c.DisableHints = true
		c.AEInterval = 300 * time.Millisecond
	})
	left, right := nodes[:3], nodes[3:]
	value := bytes.Repeat([]byte("v"), 100)
	start := time.Now()
	seedKeys(t, nodes, keys, value)
	t.Logf("seeded %d keys on their replicas in %v", keys, time.Since(start).Round(time.Millisecond))
	eventually(t, 30*time.Second, func() error { return replicasIdentical(t, nodes) })

	fn.Partition(hosts(left), hosts(right))
	waitMembers(t, left, 3)
	waitMembers(t, right, 2)
	// Per side: half overwrites of existing keys (the same keys on both
	// sides: concurrent siblings), half new keys; values of 100 bytes.
	for side, group := range [][]*testNode{left, right} {
		written := 0
		for i := 0; written < perSide; i++ {
			key := fmt.Appendf(nil, "seed-%07d", i*7)
			if i%2 == 1 {
				key = fmt.Appendf(nil, "new-%d-%d", side, i)
			}
			if _, err := group[i%len(group)].Put(bg, key, value, nil); err != nil {
				continue // all replicas on the other side and no hints: not acknowledged
			}
			written++
		}
	}
	diffKeys, diffBytes := divergence(t, nodes)
	bytes0, pulled0 := aeTotals(nodes)

	healed := time.Now()
	fn.Heal()
	waitMembers(t, nodes, 5)
	eventually(t, 60*time.Second, func() error { return replicasIdentical(t, nodes) })
	took := time.Since(healed)
	bytes1, pulled1 := aeTotals(nodes)
	aeBytes, transferred := bytes1-bytes0, pulled1-pulled0
	t.Logf("heal: %d (key, replica) pairs differed, %d bytes; converged in %v", diffKeys, diffBytes, took.Round(time.Millisecond))
	t.Logf("anti-entropy sent %d bytes: %.3f per diverged byte (goal <= 1.5)", aeBytes, float64(aeBytes)/float64(diffBytes))
	t.Logf("keys transferred %d: %.4f per differing key (goal <= 1.01)", transferred, float64(transferred)/float64(diffKeys))
	var byMethod [16]uint64
	for _, n := range nodes {
		for m := range byMethod {
			byMethod[m] += n.ae.bytesByMethod[m].Load()
		}
	}
	t.Logf("bytes by method (whole test): sync %d, pull %d, pull-range %d, done %d", byMethod[methodAESync], byMethod[methodAEPull], byMethod[methodAEPullRange], byMethod[methodAEDone])
	if ratio := float64(transferred) / float64(diffKeys); ratio > 1.01 {
		t.Errorf("keys transferred per differing key %.4f > 1.01", ratio)
	}
	if ratio := float64(aeBytes) / float64(diffBytes); ratio > 1.5 {
		t.Errorf("anti-entropy bytes per diverged byte %.3f > 1.5", ratio)
	}

	// In sync: what a round costs per (range, peer).
	before, _ := aeTotals(nodes)
	sessions0 := uint64(0)
	for _, n := range nodes {
		sessions0 += n.AntiEntropy().Sessions
	}
	time.Sleep(3 * time.Second)
	after, _ := aeTotals(nodes)
	sessions, ranges := uint64(0), 0
	for _, n := range nodes {
		st := n.AntiEntropy()
		sessions += st.Sessions
		ranges += st.RangesTotal
	}
	sessions -= sessions0
	perSession := float64(after-before) / float64(sessions)
	perRange := perSession * float64(len(nodes)*(len(nodes)-1)) / float64(ranges)
	t.Logf("in sync: %d sessions, %.1f bytes per session (one per peer per round, both directions), %.3f bytes per (range, peer)",
		sessions, perSession, perRange)
	if perRange > 64 {
		t.Errorf("in-sync cost %.1f bytes per (range, peer) per round > 64", perRange)
	}
	if perSession > 128 {
		t.Errorf("in-sync session cost %.1f bytes > 128", perSession)
	}
}

// Anti-entropy alone (no hints) repairs a replica that missed writes while
// cut off, and a peer that comes back is synced at once, well before the
// next periodic round.
func TestAntiEntropyRepairsReturningPeer(t *testing.T) {
	fn, nodes := faultClusterWith(t, 3, func(c *Config) {
		c.DisableHints = true
		c.AEInterval = time.Hour // only the reachability trigger runs
	})
	fn.Isolate(nodes[2].GossipAddr())
	waitMembers(t, nodes[:2], 2)
	for i := range 50 {
		if _, err := nodes[i%2].Put(bg, fmt.Appendf(nil, "k%d", i), []byte("v"), nil); err != nil {
			t.Fatal(err)
		}
	}
	fn.Heal()
	healed := time.Now()
	eventually(t, 10*time.Second, func() error { return replicasIdentical(t, nodes) })
	t.Logf("returning peer repaired %v after heal", time.Since(healed).Round(time.Millisecond))
	if p := nodes[2].AntiEntropy().KeysPulled; p < 50 {
		t.Fatalf("returning node pulled %d keys, want >= 50", p)
	}
	// Each of the 50 keys was new to it: 50 copies repaired, each by a
	// state of at least a dot and the value.
	st := nodes[2].AntiEntropy()
	if st.KeysRepaired < 50 || st.BytesRepaired < 50*uint64(len("v")+8) {
		t.Fatalf("returning node: %d keys, %d bytes repaired", st.KeysRepaired, st.BytesRepaired)
	}
	if s := nodes[2].summary(); s.KeysRepaired != st.KeysRepaired || s.BytesRepaired != st.BytesRepaired {
		t.Fatalf("summary %+v disagrees with status %+v", s, st)
	}
}

// Tombstones are reaped once older than the grace period and held by every
// replica — and not while a replica is cut off.
func TestTombstoneReaping(t *testing.T) {
	const grace = 500 * time.Millisecond
	fn, nodes := faultClusterWith(t, 3, func(c *Config) {
		c.TombstoneGrace = grace
		c.ReapInterval = 100 * time.Millisecond
		c.AEInterval = 200 * time.Millisecond
	})
	del := func(key string) {
		t.Helper()
		res, err := nodes[0].Get(bg, []byte(key), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nodes[0].Delete(bg, []byte(key), &WriteOptions{Context: res.Context}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		if _, err := nodes[0].Put(bg, fmt.Appendf(nil, "gone-%d", i), []byte("v"), &WriteOptions{W: All}); err != nil {
			t.Fatal(err)
		}
	}
	// One replica cut off before the deletes: it keeps the live value, so
	// nothing may be reaped while it is away, whatever the age.
	fn.Isolate(nodes[2].GossipAddr())
	for i := range 10 {
		del(fmt.Sprintf("gone-%d", i))
	}
	time.Sleep(3 * grace)
	for i := range 10 {
		b, ok, err := nodes[0].store.Get(fmt.Appendf(nil, "gone-%d", i))
		if err != nil || !ok {
			t.Fatalf("tombstone gone-%d reaped while a replica was cut off (%v)", i, err)
		}
		_, reg, _ := decodeRecord(b)
		if !reg.Tombstoned() {
			t.Fatalf("gone-%d is not a tombstone: %v", i, reg)
		}
	}
	fn.Heal()
	// Once healed, the cut-off replica learns of the deletes, and then every
	// copy is reaped; the value never comes back.
	eventually(t, 15*time.Second, func() error {
		for _, n := range nodes {
			for i := range 10 {
				key := fmt.Appendf(nil, "gone-%d", i)
				if res, err := n.Get(bg, key, &ReadOptions{Local: true}); !errors.Is(err, ErrNotFound) {
					return fmt.Errorf("%s: %s came back: %v %v", n.Name(), key, res, err)
				}
				if _, ok, _ := n.store.Get(key); ok {
					return fmt.Errorf("%s still holds the tombstone of %s", n.Name(), key)
				}
			}
		}
		return nil
	})
	reaped := uint64(0)
	for _, n := range nodes {
		reaped += n.AntiEntropy().Tombstones
	}
	if reaped == 0 {
		t.Fatal("no tombstone reaped")
	}
	for _, n := range nodes {
		checkItemCache(t, n.Node)
	}
	t.Logf("%d tombstones reaped by first replicas", reaped)
}

// The index survives a clean restart through its snapshot and is rebuilt
// after an unclean one; either way it matches the data.
func TestIndexSnapshotAndRebuild(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, "solo", dir)
	n := openNode(t, cfg)
	for i := range 200 {
		if _, err := n.Put(bg, fmt.Appendf(nil, "k%d", i), []byte("v"), nil); err != nil {
			t.Fatal(err)
		}
	}
	want := n.ae.index.RangeHash(0, 1<<20)
	keys := n.ae.index.Keys()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	cfg2 := *cfg
	cfg2.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n2 := openNode(t, &cfg2)
	if got := n2.ae.index.RangeHash(0, 1<<20); got != want || n2.ae.index.Keys() != keys {
		t.Fatalf("after a clean restart: %x/%d keys, want %x/%d", got, n2.ae.index.Keys(), want, keys)
	}
	if !strings.Contains(logs.String(), "loaded from snapshot") {
		t.Fatalf("clean restart did not use the snapshot:\n%s", logs.String())
	}
	checkItemCache(t, n2.Node)
	// The clean marker is cleared while running: a crash now means rebuild.
	if b, _, _ := n2.store.GetMeta(metaAEClean); !bytes.Equal(b, []byte{0}) {
		t.Fatalf("clean marker while running: %v", b)
	}
	if err := n2.ae.load(); err != nil { // what the next start does without a clean marker
		t.Fatal(err)
	}
	if got := n2.ae.index.RangeHash(0, 1<<20); got != want {
		t.Fatalf("rebuilt index %x, want %x", got, want)
	}
	checkItemCache(t, n2.Node)
}
