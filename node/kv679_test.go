package node

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/rumorkv/rumor/crdt"
)

// Riak's kv679 class of bugs: a node that lost its copy of a key (disk
// replaced, key handed off or reaped) restarted the key's dot counter and
// issued dots its peers had already seen, so its new writes were discarded
// as "already seen"; and a version vector context that covers a dot its
// writer never saw erases that write. These tests lose a copy, restart a
// node and replace its data directory, and check that no dot is issued
// twice, that the new writes survive as siblings of the old ones, and that
// no context covers a value its writer never saw.
//
// They look at dots only from the outside (contexts, siblings): the
// counter is per node; the actor is the node's, however it is derived.

// localVersions returns n's own copy of key as sorted "dot=value"
// strings (live versions only).
func localVersions(t *testing.T, n *testNode, key string) []string {
	t.Helper()
	res, err := n.Get(bg, []byte(key), &ReadOptions{Local: true})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("%s: local copy of %q: %v", n.Name(), key, err)
	}
	var out []string
	for _, s := range res.Siblings {
		out = append(out, s.Dot+"="+string(s.Value))
	}
	sort.Strings(out)
	return out
}

// writtenDot decodes the context a write returned and finds the write's own
// dot: the one actor whose counter is above the context the write was sent
// with (sent). It fails the test if there is not exactly one.
func writtenDot(t *testing.T, sent crdt.VV, ctx string) crdt.Dot {
	t.Helper()
	vv, err := crdt.DecodeContext(ctx, 1<<10)
	if err != nil {
		t.Fatalf("write returned a bad context %q: %v", ctx, err)
	}
	var dots []crdt.Dot
	for a, c := range vv {
		if c > sent[a] {
			dots = append(dots, crdt.Dot{Actor: a, Counter: c})
		}
	}
	if len(dots) != 1 {
		t.Fatalf("context %v sent with %v names %d new dots, want 1", vv, sent, len(dots))
	}
	return dots[0]
}

// putDot writes key=value through n (W=all, so every replica has it when
// it returns) with the context ctx, and returns the write's dot.
func putDot(t *testing.T, n *testNode, key, value, ctx string) crdt.Dot {
	t.Helper()
	sent, err := crdt.DecodeContext(ctx, 1<<10)
	if err != nil {
		t.Fatal(err)
	}
	out, err := n.Put(bg, []byte(key), []byte(value), &WriteOptions{Context: ctx, W: All})
	if err != nil {
		t.Fatalf("put %s=%s on %s: %v", key, value, n.Name(), err)
	}
	return writtenDot(t, sent, out)
}

// waitLocal waits until every node's own copy of key holds exactly want
// (localVersions form).
func waitLocal(t *testing.T, nodes []*testNode, key string, want []string) {
	t.Helper()
	sort.Strings(want)
	eventually(t, 10*time.Second, func() error {
		for _, n := range nodes {
			if got := localVersions(t, n, key); !slices.Equal(got, want) {
				return fmt.Errorf("%s holds %q, want %q", n.Name(), got, want)
			}
		}
		return nil
	})
}

func dotValue(d crdt.Dot, v string) string { return d.String() + "=" + v }

// loseCopy deletes n's copy of key from its store, as if its disk had been
// replaced for that key or the key reaped (the store's delete keeps the
// anti-entropy index in step, as a restart's rebuild would).
func loseCopy(t *testing.T, n *testNode, key string) {
	t.Helper()
	if _, err := n.store.Update([]byte(key), func([]byte, bool) ([]byte, bool, error) { return nil, true, nil }); err != nil {
		t.Fatal(err)
	}
	if got := localVersions(t, n, key); got != nil {
		t.Fatalf("%s still holds %q", n.Name(), got)
	}
}

// noPeriodicAE: only the anti-entropy sessions with peers that become
// reachable run (forming the cluster needs them), so a node stays without
// a lost copy until it writes again (the window before a repair), and only
// writes and read repair move data.
func noPeriodicAE(c *Config) { c.AEInterval = time.Hour }

// TestKV679LostCopy: node A writes k, the write reaches every replica, A
// loses its copy of k, and A writes k again without a context. The new dot
// must be above the old one (one counter per node, never reused), and every
// replica must keep both values as siblings: nothing superseded the first.
func TestKV679LostCopy(t *testing.T) {
	nodes := startCluster(t, 3, noPeriodicAE)
	a := nodes[0]
	const key = "k"

	d1 := putDot(t, a, key, "v1", "")
	waitLocal(t, nodes, key, []string{dotValue(d1, "v1")})
	loseCopy(t, a, key)

	d2 := putDot(t, a, key, "v2", "")
	if d2.Counter <= d1.Counter {
		t.Fatalf("A's write after losing its copy has dot %v, not above %v: a counter reused", d2, d1)
	}
	// A wrote from nothing: its copy holds only the new version, so the
	// scenario really ran without the old copy.
	if got := localVersions(t, a, key); !slices.Equal(got, []string{dotValue(d2, "v2")}) {
		t.Fatalf("A's copy right after the write: %q", got)
	}
	// Replication ships A's copy ({d2}) to B and C, which hold d1: they
	// must keep both. With a reused dot (d2 == d1) the join would keep one
	// of the two values and drop the other.
	both := []string{dotValue(d1, "v1"), dotValue(d2, "v2")}
	waitLocal(t, nodes[1:], key, both)
	res, err := nodes[1].Get(bg, []byte(key), &ReadOptions{R: All})
	if err != nil {
		t.Fatal(err)
	}
	if got := values(t, res); !slices.Equal(got, []string{"v1", "v2"}) {
		t.Fatalf("R=all read: %q, want both siblings", got)
	}
	// Read repair gives A its copy back, with both.
	waitLocal(t, nodes, key, both)

	// What the test guards against: the same dot on two different values
	// keeps only one of them.
	reused := crdt.Register{}.Write(d1, nil, 1, []byte("v1"), false).
		Join(crdt.Register{}.Write(d1, nil, 2, []byte("v2"), false))
	if len(reused.Versions) != 1 {
		t.Fatalf("a reused dot kept %d versions; this test could not detect reuse", len(reused.Versions))
	}
}

// TestKV679ContextFromLostCopy: after A lost its copy of k and wrote k
// again, a client that reads k from A alone sees only the new value; a
// write with that context must not remove the old value, which it never
// saw. (A version vector entry A:n covers every dot of A up to n: exact
// only while every state holding A:n for a key also holds every earlier
// dot of A for it. Riak fixed this with a new actor epoch when the
// coordinating vnode has no local copy.)
func TestKV679ContextFromLostCopy(t *testing.T) {
	nodes := startCluster(t, 3, noPeriodicAE)
	a := nodes[0]
	const key = "k"
	d1 := putDot(t, a, key, "v1", "")
	waitLocal(t, nodes, key, []string{dotValue(d1, "v1")})
	loseCopy(t, a, key)
	putDot(t, a, key, "v2", "")
	res, err := a.Get(bg, []byte(key), &ReadOptions{R: One})
	if err != nil {
		t.Fatal(err)
	}
	if got := values(t, res); !slices.Equal(got, []string{"v2"}) {
		t.Fatalf("R=1 read at A: %q, want only v2 (A's copy)", got)
	}
	putDot(t, a, key, "v3", res.Context)
	res, err = nodes[1].Get(bg, []byte(key), &ReadOptions{R: All})
	if err != nil {
		t.Fatal(err)
	}
	if got := values(t, res); !slices.Equal(got, []string{"v1", "v3"}) {
		t.Fatalf("R=all read: %q, want [v1 v3]: v1, which the writer of v3 never saw, must stay", got)
	}
}

// TestKV679RestartAndNewIdentity: a restart on the same data directory
// keeps the node's identity and resumes its counter above every dot it
// issued before; a node started on a new data directory with the same name
// and addresses is a new identity, whose dots cannot collide with the old
// incarnation's, and the old incarnation's versions stay (and can still be
// superseded with a context that saw them).
func TestKV679RestartAndNewIdentity(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	a := nodes[0]
	oldID := a.ID()
	const key = "k"

	// Concurrent writes through A on other keys, then k.
	type result struct {
		dot crdt.Dot
		err error
	}
	results := make(chan result, 40)
	for i := range 40 {
		go func() {
			k := fmt.Sprintf("other-%d", i)
			out, err := a.Put(bg, []byte(k), []byte("x"), nil)
			if err != nil {
				results <- result{err: fmt.Errorf("put %s: %w", k, err)}
				return
			}
			vv, err := crdt.DecodeContext(out, 16)
			if err != nil || len(vv) != 1 {
				results <- result{err: fmt.Errorf("put %s: context %v (%v), want one dot", k, vv, err)}
				return
			}
			for a, c := range vv {
				results <- result{dot: crdt.Dot{Actor: a, Counter: c}}
			}
		}()
	}
	oldActors := map[crdt.ActorID]bool{}
	seen := map[uint64]bool{}
	var maxBefore uint64
	for range 40 {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		if seen[r.dot.Counter] {
			t.Fatalf("counter %d issued twice", r.dot.Counter)
		}
		seen[r.dot.Counter] = true
		oldActors[r.dot.Actor] = true
		maxBefore = max(maxBefore, r.dot.Counter)
	}
	d1 := putDot(t, a, key, "v1", "")
	oldActors[d1.Actor] = true
	maxBefore = max(maxBefore, d1.Counter)

	// Restart A on the same directory and addresses.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := *a.cfg
	a = openNode(t, &cfg)
	if a.ID() != oldID || a.store.Fresh() {
		t.Fatalf("restart on the same directory: id %016x (fresh %v), want %016x", a.ID(), a.store.Fresh(), oldID)
	}
	nodes[0] = a
	waitMembers(t, nodes, 3)
	d2 := putDot(t, a, "after-restart", "y", "")
	if d2.Counter <= maxBefore {
		t.Fatalf("first dot after the restart is %v, not above %d", d2, maxBefore)
	}
	d3 := putDot(t, a, key, "v2", "")
	if d3.Counter <= d2.Counter {
		t.Fatalf("dot %v after %v", d3, d2)
	}
	oldActors[d2.Actor], oldActors[d3.Actor] = true, true
	waitLocal(t, nodes, key, []string{dotValue(d1, "v1"), dotValue(d3, "v2")})

	// Replace A's data directory: same name, same addresses, new disk.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	cfg = *a.cfg
	cfg.DataDir = t.TempDir()
	a = openNode(t, &cfg)
	if a.ID() == oldID || !a.store.Fresh() {
		t.Fatalf("new data directory: id %016x (fresh %v), want a new identity (old %016x)", a.ID(), a.store.Fresh(), oldID)
	}
	nodes[0] = a
	waitMembers(t, nodes, 3)
	eventually(t, 10*time.Second, func() error {
		for _, n := range nodes {
			for _, m := range n.Members() {
				if m.Name == a.Name() && m.ID != fmt.Sprintf("%016x", a.ID()) {
					return fmt.Errorf("%s still lists %s as %s", n.Name(), m.Name, m.ID)
				}
			}
		}
		return nil
	})
	// The new incarnation's counter starts again, under actors the old
	// one never used.
	d4 := putDot(t, a, key, "v3", "")
	if oldActors[d4.Actor] {
		t.Fatalf("the new incarnation wrote with dot %v, an actor of the old one's", d4)
	}
	all := []string{dotValue(d1, "v1"), dotValue(d3, "v2"), dotValue(d4, "v3")}
	waitLocal(t, nodes, key, all)

	// The old incarnation's versions are ordinary versions: a read's
	// context covers them, and a write with it supersedes all three.
	res, err := nodes[1].Get(bg, []byte(key), &ReadOptions{R: All})
	if err != nil {
		t.Fatal(err)
	}
	if got := values(t, res); !slices.Equal(got, []string{"v1", "v2", "v3"}) {
		t.Fatalf("R=all read: %q", got)
	}
	d5 := putDot(t, a, key, "v4", res.Context)
	waitLocal(t, nodes, key, []string{dotValue(d5, "v4")})
}

// TestWriteContextCoversOnlyItsWrite: a write's acknowledged context is
// documented to cover exactly what the write superseded plus itself. A
// blind write through the coordinator of an older sibling returns {A:n},
// which as a version vector also covers the sibling's A:m (m < n), so the
// writer's next write with it would remove a value it never saw.
func TestWriteContextCoversOnlyItsWrite(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	a := nodes[0]
	const key = "k"
	putDot(t, a, key, "v1", "")                                            // another client's write
	c2, err := a.Put(bg, []byte(key), []byte("v2"), &WriteOptions{W: All}) // blind: a sibling of v1
	if err != nil {
		t.Fatal(err)
	}
	res, err := nodes[1].Get(bg, []byte(key), &ReadOptions{R: All})
	if err != nil {
		t.Fatal(err)
	}
	if got := values(t, res); !slices.Equal(got, []string{"v1", "v2"}) {
		t.Fatalf("after the blind write: %q", got)
	}
	// The writer of v2 replaces its own value, with the context its write
	// returned.
	putDot(t, a, key, "v3", c2)
	res, err = nodes[1].Get(bg, []byte(key), &ReadOptions{R: All})
	if err != nil {
		t.Fatal(err)
	}
	if got := values(t, res); !slices.Equal(got, []string{"v1", "v3"}) {
		t.Fatalf("R=all read: %q, want [v1 v3]: v1, which the writer of v3 never saw, must stay", got)
	}
}
