package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rumorkv/rumor/crdt"
	"github.com/rumorkv/rumor/ring"
)

// freeAddr returns a loopback address whose port is free for both TCP and
// UDP (memberlist binds both).
func freeAddr(t testing.TB) string {
	t.Helper()
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return addr
	}
	t.Fatal("no free port")
	return ""
}

type testNode struct {
	*Node
	cfg *Config
}

// testConfig is a config with fast failure detection for in-process
// clusters on loopback.
func testConfig(t testing.TB, name, dir string, join ...string) *Config {
	cfg := DefaultConfig(name, dir)
	cfg.Insecure = true // no gossip key, TLS or tokens here
	cfg.BindAddr = freeAddr(t)
	cfg.RPCAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Join = join
	cfg.Memberlist.ProbeInterval = 100 * time.Millisecond
	cfg.Memberlist.ProbeTimeout = 50 * time.Millisecond
	cfg.Memberlist.GossipInterval = 20 * time.Millisecond
	cfg.Memberlist.PushPullInterval = time.Second
	cfg.Memberlist.SuspicionMult = 2
	cfg.Memberlist.DeadNodeReclaimTime = time.Second
	cfg.RejoinInterval = 300 * time.Millisecond
	cfg.HintInterval = 100 * time.Millisecond
	cfg.ReplicaTimeout = time.Second
	cfg.NoSync = true // durability is the storage package's test; keep this fast
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	} else {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return cfg
}

func openNode(t testing.TB, cfg *Config) *testNode {
	t.Helper()
	n, err := Open(cfg)
	if err != nil {
		t.Fatalf("open %s: %v", cfg.Name, err)
	}
	t.Cleanup(func() { n.Close() })
	return &testNode{Node: n, cfg: cfg}
}

// startCluster opens size nodes on loopback, all joining through the first.
func startCluster(t testing.TB, size int, tweak func(*Config)) []*testNode {
	t.Helper()
	var nodes []*testNode
	var seed string
	for i := 0; i < size; i++ {
		cfg := testConfig(t, fmt.Sprintf("n%d", i+1), t.TempDir())
		if seed != "" {
			cfg.Join = []string{seed}
		}
		if tweak != nil {
			tweak(cfg)
		}
		nd := openNode(t, cfg)
		if seed == "" {
			seed = nd.GossipAddr()
		}
		nodes = append(nodes, nd)
	}
	waitMembers(t, nodes, size)
	return nodes
}

// waitMembers waits until every node sees want members alive.
func waitMembers(t testing.TB, nodes []*testNode, want int) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		for _, n := range nodes {
			alive := 0
			for _, m := range n.Members() {
				if m.State == StateAlive {
					alive++
				}
			}
			if alive != want || n.view.Load().ring.Len() < want {
				return fmt.Errorf("%s sees %d alive, ring of %d; want %d", n.Name(), alive, n.view.Load().ring.Len(), want)
			}
		}
		return nil
	})
}

func eventually(t testing.TB, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func values(t testing.TB, res *Result) []string {
	t.Helper()
	var out []string
	for _, v := range res.Values() {
		out = append(out, string(v))
	}
	sort.Strings(out)
	return out
}

var bg = context.Background()

func TestPutGetAcrossNodes(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	if _, err := nodes[0].Put(bg, []byte("hello"), []byte("world"), nil); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes[1:] {
		res, err := n.Get(bg, []byte("hello"), nil)
		if err != nil {
			t.Fatalf("get on %s: %v", n.Name(), err)
		}
		if got := values(t, res); !slices.Equal(got, []string{"world"}) {
			t.Fatalf("get on %s: %q", n.Name(), got)
		}
	}
	// With N=3 on three nodes every node is a replica: each own copy has it
	// (W=1 acknowledges after one, the others follow).
	eventually(t, 5*time.Second, func() error {
		for _, n := range nodes {
			res, err := n.Get(bg, []byte("hello"), &ReadOptions{Local: true})
			if err != nil {
				return fmt.Errorf("%s local: %v", n.Name(), err)
			}
			if got := values(t, res); !slices.Equal(got, []string{"world"}) {
				return fmt.Errorf("%s local: %q", n.Name(), got)
			}
		}
		return nil
	})
	if _, err := nodes[2].Get(bg, []byte("absent"), nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("absent key: %v, want ErrNotFound", err)
	}
}

func TestSiblingsAndContext(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	key := []byte("k")
	if _, err := nodes[0].Put(bg, key, []byte("a"), &WriteOptions{W: All}); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[1].Put(bg, key, []byte("b"), &WriteOptions{W: All}); err != nil {
		t.Fatal(err)
	}
	res, err := nodes[2].Get(bg, key, &ReadOptions{R: All})
	if err != nil {
		t.Fatal(err)
	}
	if got := values(t, res); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("concurrent puts: %q, want both as siblings", got)
	}
	// A write with the read context supersedes exactly what was read.
	if _, err := nodes[2].Put(bg, key, []byte("c"), &WriteOptions{Context: res.Context, W: All}); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		res, err := n.Get(bg, key, &ReadOptions{R: All})
		if err != nil {
			t.Fatal(err)
		}
		if got := values(t, res); !slices.Equal(got, []string{"c"}) {
			t.Fatalf("after context write, %s reads %q", n.Name(), got)
		}
	}
	// A stale context (from before "c") leaves "c" as a sibling.
	if _, err := nodes[0].Put(bg, key, []byte("d"), &WriteOptions{Context: res.Context, W: All}); err != nil {
		t.Fatal(err)
	}
	res, err = nodes[1].Get(bg, key, &ReadOptions{R: All})
	if err != nil {
		t.Fatal(err)
	}
	if got := values(t, res); !slices.Equal(got, []string{"c", "d"}) {
		t.Fatalf("stale-context write: %q, want c and d", got)
	}
	// Delete with the context: gone everywhere, and the not-found read
	// still carries a context.
	if _, err := nodes[1].Delete(bg, key, &WriteOptions{Context: res.Context, W: All}); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		res, err := n.Get(bg, key, &ReadOptions{R: All})
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("after delete, %s: %v %v", n.Name(), res, err)
		}
		if res.Context == "" {
			t.Fatal("not-found read has no context")
		}
	}
}

// A forged "future" context may only supersede what the coordinator holds:
// a write that has not reached the coordinator survives it.
func TestForgedContextDoesNotErase(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	key := []byte("forge")
	// n3 holds a version nobody else has seen yet (its replication is
	// "in flight": written straight into its own copy).
	c, err := nodes[2].store.NextCounter()
	if err != nil {
		t.Fatal(err)
	}
	unseen := crdt.Register{}.Write(crdt.Dot{Actor: crdt.ActorID(nodes[2].ID()), Counter: c}, nil, nodes[2].clock.Now(), []byte("unseen"), false)
	if _, _, err := nodes[2].mergeLocal(key, unseen); err != nil {
		t.Fatal(err)
	}
	// A client claims to have seen far into the future of every member.
	forged := crdt.VV{}
	for _, n := range nodes {
		forged[crdt.ActorID(n.ID())] = 1 << 40
	}
	if _, err := nodes[1].Put(bg, key, []byte("forger"), &WriteOptions{Context: crdt.EncodeContext(forged), W: All}); err != nil {
		t.Fatal(err)
	}
	res, err := nodes[0].Get(bg, key, &ReadOptions{R: All})
	if err != nil {
		t.Fatal(err)
	}
	if got := values(t, res); !slices.Equal(got, []string{"forger", "unseen"}) {
		t.Fatalf("after a forged context: %q, want both (the unseen write must survive)", got)
	}
}

func TestKillAndRestart(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	victim := nodes[2]
	if err := victim.Close(); err != nil {
		t.Fatal(err)
	}
	// Puts and gets on the others keep working, without waiting for the
	// failure detector.
	for i := 0; i < 20; i++ {
		key := []byte(fmt.Sprintf("missed-%d", i))
		if _, err := nodes[i%2].Put(bg, key, []byte("v"), nil); err != nil {
			t.Fatalf("put %s with a node down: %v", key, err)
		}
		res, err := nodes[(i+1)%2].Get(bg, key, nil)
		if err != nil || !slices.Equal(values(t, res), []string{"v"}) {
			t.Fatalf("get %s with a node down: %v %v", key, res, err)
		}
	}
	// W=all still succeeds through hints (sloppy quorum) ...
	if _, err := nodes[0].Put(bg, []byte("missed-all"), []byte("v"), &WriteOptions{W: All}); err != nil {
		t.Fatalf("W=all with a node down: %v", err)
	}
	// ... but R=all needs every replica.
	if _, err := nodes[0].Get(bg, []byte("missed-all"), &ReadOptions{R: All}); !errors.Is(err, ErrUnavailable) {
		waitMembers(t, nodes[:2], 2)
		if _, err := nodes[0].Get(bg, []byte("missed-all"), &ReadOptions{R: All}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("R=all with a node down: %v, want ErrUnavailable", err)
		}
	}

	// Restart on the same data directory and addresses: hints bring it the
	// writes it missed.
	cfg := *victim.cfg
	restarted := openNode(t, &cfg)
	waitMembers(t, []*testNode{nodes[0], nodes[1], restarted}, 3)
	start := time.Now()
	eventually(t, 10*time.Second, func() error {
		for i := 0; i < 20; i++ {
			key := []byte(fmt.Sprintf("missed-%d", i))
			res, err := restarted.Get(bg, key, &ReadOptions{Local: true})
			if err != nil {
				return fmt.Errorf("local %s: %v", key, err)
			}
			if got := values(t, res); !slices.Equal(got, []string{"v"}) {
				return fmt.Errorf("local %s: %q", key, got)
			}
		}
		return nil
	})
	t.Logf("restarted node held all missed writes %v after rejoining", time.Since(start).Round(time.Millisecond))
	// Anti-entropy may get there first; the hints are handed off anyway,
	// and none stays pending.
	eventually(t, 10*time.Second, func() error {
		delivered, pending := uint64(0), 0
		for _, n := range nodes[:2] {
			m := n.Metrics()
			delivered += m.HintsDelivered
			for _, c := range m.HintsPending {
				pending += c
			}
		}
		if delivered == 0 || pending > 0 {
			return fmt.Errorf("%d hints delivered, %d pending", delivered, pending)
		}
		return nil
	})
}

// W=primary needs the key's first replica: a node cut off from it cannot
// accept the write.
func TestWritePrimary(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	key := []byte("primary-key")
	pref := nodes[0].view.Load().ring.Preference(ring.KeyHash(key), 3)
	var primary *testNode
	var others []*testNode
	for _, n := range nodes {
		if ring.NodeID(n.ID()) == pref[0] {
			primary = n
		} else {
			others = append(others, n)
		}
	}
	if _, err := others[0].Put(bg, key, []byte("v1"), &WriteOptions{W: Primary}); err != nil {
		t.Fatalf("W=primary with the primary up: %v", err)
	}
	primary.Close()
	waitMembers(t, others, 2)
	if _, err := others[0].Put(bg, key, []byte("v2"), &WriteOptions{W: Primary}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("W=primary with the primary down: %v, want ErrUnavailable", err)
	}
	if _, err := others[0].Put(bg, key, []byte("v3"), nil); err != nil {
		t.Fatalf("W=1 with the primary down: %v", err)
	}
}

// With more nodes than replicas, a node that is not a replica forwards the
// write to a primary; the value lands on exactly the N replicas.
func TestForwardingAndPlacement(t *testing.T) {
	nodes := startCluster(t, 5, nil)
	for i := 0; i < 30; i++ {
		key := []byte(fmt.Sprintf("key-%d", i))
		if _, err := nodes[i%5].Put(bg, key, []byte("v"), &WriteOptions{W: All}); err != nil {
			t.Fatal(err)
		}
		pref := nodes[0].view.Load().ring.Preference(ring.KeyHash(key), 3)
		for _, n := range nodes {
			_, err := n.Get(bg, key, &ReadOptions{Local: true})
			isReplica := slices.Contains(pref, ring.NodeID(n.ID()))
			if isReplica && err != nil {
				t.Fatalf("%s is a replica of %s but has no copy: %v", n.Name(), key, err)
			}
			if !isReplica && !errors.Is(err, ErrNotFound) {
				t.Fatalf("%s is not a replica of %s but has a copy (%v)", n.Name(), key, err)
			}
		}
	}
	forwarded := uint64(0)
	for _, n := range nodes {
		forwarded += n.Metrics().Forwarded
	}
	if forwarded == 0 {
		t.Fatal("no write was forwarded to a primary")
	}
}

// Read repair: a replica that missed a write gets it when a read sees it
// stale.
func TestReadRepair(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	key := []byte("rr")
	// Write only into n1's local copy, bypassing replication.
	reg := crdt.Register{}.Write(crdt.Dot{Actor: crdt.ActorID(nodes[0].ID()), Counter: 1 << 50}, nil, nodes[0].clock.Now(), []byte("x"), false)
	if _, _, err := nodes[0].mergeLocal(key, reg); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[1].Get(bg, key, &ReadOptions{R: All}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error {
		for _, n := range nodes {
			if _, err := n.Get(bg, key, &ReadOptions{Local: true}); err != nil {
				return fmt.Errorf("%s: %v", n.Name(), err)
			}
		}
		return nil
	})
}

func TestHTTPAPI(t *testing.T) {
	nodes := startCluster(t, 3, func(c *Config) { c.MaxKeySize = 64; c.MaxValueSize = 1024 })
	base := "http://" + nodes[0].HTTPAddr()
	do := func(method, path string, body []byte, hdr map[string]string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, _ := do("PUT", "/v1/kv/a%2Fb%20c", []byte("one"), nil)
	if resp.StatusCode != 200 || resp.Header.Get(ContextHeader) == "" {
		t.Fatalf("PUT: %d %v", resp.StatusCode, resp.Header)
	}
	resp, b := do("GET", "/v1/kv/a%2Fb%20c", nil, nil)
	if resp.StatusCode != 200 || string(b) != "one" {
		t.Fatalf("GET: %d %q", resp.StatusCode, b)
	}
	// A key with a slash and dots is taken literally, not cleaned.
	do("PUT", "/v1/kv/x/../y", []byte("dots"), nil)
	if _, err := nodes[1].Get(bg, []byte("x/../y"), nil); err != nil {
		t.Fatalf("literal key: %v", err)
	}
	// Concurrent write → 300 with JSON.
	if _, err := nodes[1].Put(bg, []byte("a/b c"), []byte("two"), &WriteOptions{W: All}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() error {
		resp, b := do("GET", "/v1/kv/a%2Fb%20c?r=all", nil, nil)
		if resp.StatusCode != 300 || !strings.Contains(string(b), `"one"`) || !strings.Contains(string(b), `"two"`) {
			return fmt.Errorf("siblings: %d %s", resp.StatusCode, b)
		}
		return nil
	})
	resp, b = do("GET", "/v1/kv/nope", nil, map[string]string{"Accept": "application/json"})
	if resp.StatusCode != 404 || !strings.Contains(string(b), "not found") {
		t.Fatalf("missing key: %d %s", resp.StatusCode, b)
	}
	resp, b = do("PUT", "/v1/kv/"+strings.Repeat("k", 65), []byte("v"), nil)
	if resp.StatusCode != 413 || !strings.Contains(string(b), "limit") {
		t.Fatalf("long key: %d %s", resp.StatusCode, b)
	}
	resp, b = do("PUT", "/v1/kv/big", bytes.Repeat([]byte("v"), 1025), nil)
	if resp.StatusCode != 413 {
		t.Fatalf("big value: %d %s", resp.StatusCode, b)
	}
	resp, b = do("PUT", "/v1/kv/k", []byte("v"), map[string]string{ContextHeader: "!!not-a-context!!"})
	if resp.StatusCode != 400 {
		t.Fatalf("malformed context: %d %s", resp.StatusCode, b)
	}
	resp, b = do("GET", "/v1/kv/k?r=bogus", nil, nil)
	if resp.StatusCode != 400 {
		t.Fatalf("bad r: %d %s", resp.StatusCode, b)
	}
	// This node's own copy as an encoded state.
	resp, b = do("GET", "/v1/state/a%2Fb%20c", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("state: %d %s", resp.StatusCode, b)
	}
	if reg, err := decodeReg(b); err != nil || len(reg.Live()) == 0 {
		t.Fatalf("state does not decode to a live register: %v %v", reg, err)
	}
	if resp, b = do("GET", "/v1/state/nope", nil, nil); resp.StatusCode != 404 {
		t.Fatalf("state of a missing key: %d %s", resp.StatusCode, b)
	}
	for _, p := range []string{"/v1/members", "/v1/ring", "/v1/health", "/v1/status"} {
		resp, b := do("GET", p, nil, nil)
		if resp.StatusCode != 200 || !strings.HasPrefix(strings.TrimSpace(string(b)), "{") && !strings.HasPrefix(string(b), "[") {
			t.Fatalf("%s: %d %s", p, resp.StatusCode, b)
		}
	}
}

// An agent whose seed is unreachable keeps running and joins once the seed
// comes up.
func TestUnreachableSeedRetried(t *testing.T) {
	seedAddr := freeAddr(t)
	lonely := openNode(t, testConfig(t, "lonely", t.TempDir(), seedAddr))
	time.Sleep(500 * time.Millisecond)
	seedCfg := testConfig(t, "seed", t.TempDir())
	seedCfg.BindAddr = seedAddr
	seed := openNode(t, seedCfg)
	waitMembers(t, []*testNode{lonely, seed}, 2)
}
