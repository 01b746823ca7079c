package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rumorkv/rumor/ring"
)

// faultNode opens node i (1-based) on fn, joining through node 1.
func faultNode(t testing.TB, fn *FaultNetwork, i int, tweak func(*Config)) *testNode {
	t.Helper()
	cfg := testConfig(t, fmt.Sprintf("n%d", i), "")
	cfg.InMemory = true
	cfg.Network = fn
	cfg.BindAddr = HostAddr(i, 7946)
	cfg.RPCAddr = HostAddr(i, 7947)
	cfg.HTTPAddr = ""
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("RUMOR_DEBUG_NODE") == cfg.Name {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if i > 1 {
		cfg.Join = []string{HostAddr(1, 7946)}
	}
	if tweak != nil {
		tweak(cfg)
	}
	return openNode(t, cfg)
}

// waitStatus waits until every node in nodes sees every node in of with
// status want, and no transfer under way.
func waitSettled(t testing.TB, nodes []*testNode, members int, d time.Duration) {
	t.Helper()
	eventually(t, d, func() error {
		for _, n := range nodes {
			v := n.view.Load()
			if v.transfer() || v.ring.Len() != members {
				return fmt.Errorf("%s: ring of %d (want %d), moving %v", n.Name(), v.ring.Len(), members, v.transfer())
			}
			if st := n.Transfers(); st.ObsoleteKeys > 0 {
				return fmt.Errorf("%s still holds %d keys it no longer replicates", n.Name(), st.ObsoleteKeys)
			}
		}
		return nil
	})
}

// TestScaleOutAndIn is issue 6's acceptance test: grow 3→5 and shrink 5→3
// under continuous writes and reads. No acknowledged write is lost, no read
// of a key written before the change began returns not-found, and each
// join moves at most 1.2 × the ideal share of the data.
func TestScaleOutAndIn(t *testing.T) {
	const preload = 3000
	fn := NewFaultNetwork(7)
	tweak := func(c *Config) { c.AEInterval = 300 * time.Millisecond }
	var nodes []*testNode
	for i := 1; i <= 3; i++ {
		nodes = append(nodes, faultNode(t, fn, i, tweak))
	}
	waitMembers(t, nodes, 3)
	waitSettled(t, nodes, 3, 15*time.Second)
	for i := range preload {
		if _, err := nodes[i%3].Put(bg, fmt.Appendf(nil, "pre-%d", i), []byte("v"), &WriteOptions{W: All}); err != nil {
			t.Fatal(err)
		}
	}

	// Clients: writers put unique keys through the nodes that are members
	// now; readers read preloaded keys and must always find them.
	var (
		mu      sync.Mutex
		live    = slices.Clone(nodes) // nodes clients may use
		acked   []string
		ackedAt = map[string]string{} // key → node and phase, for failures
		phase   = "grow"
		missing atomic.Int64
		reads   atomic.Int64
		stop    = make(chan struct{})
		stopped sync.Once
		wg      sync.WaitGroup
	)
	halt := func() {
		stopped.Do(func() { close(stop) })
		wg.Wait()
	}
	t.Cleanup(halt) // also when the test fails half way
	pick := func(r *rand.Rand) *testNode {
		mu.Lock()
		defer mu.Unlock()
		return live[r.IntN(len(live))]
	}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d-%d", w, i)
				n := pick(r)
				if _, err := n.Put(bg, []byte(key), []byte(key), nil); err == nil {
					mu.Lock()
					acked = append(acked, key)
					ackedAt[key] = n.Name() + " during " + phase + " at " + time.Now().Format("15:04:05.000")
					mu.Unlock()
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 2))
			for {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Appendf(nil, "pre-%d", r.IntN(preload))
				n := pick(r)
				_, err := n.Get(bg, key, nil)
				reads.Add(1)
				if errors.Is(err, ErrNotFound) {
					missing.Add(1)
					// Say who holds what, to tell a lost copy from a
					// routing mistake.
					var held []string
					mu.Lock()
					for _, x := range live {
						_, ok, _ := x.store.Get(key)
						held = append(held, fmt.Sprintf("%s:%v", x.Name(), ok))
					}
					mu.Unlock()
					v := n.view.Load()
					var pref []string
					for _, id := range v.ring.Preference(ring.KeyHash(key), 3) {
						pref = append(pref, fmt.Sprintf("%s(%v)", v.byID[uint64(id)].Name, n.mem.reachable(v.byID[uint64(id)].Name)))
					}
					t.Errorf("read of %s on %s: not found during the change; its replicas %v (moving %v); copies %v",
						key, n.Name(), pref, v.transfer(), held)
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}

	copies := func() uint64 {
		var s uint64
		for _, n := range nodes {
			s += uint64(n.AntiEntropy().Keys)
		}
		return s
	}
	// Grow 3 → 5, one node at a time. What moves is what the new node
	// pulls from the owners (new writes reach it directly).
	for i := 4; i <= 5; i++ {
		mu.Lock()
		phase = fmt.Sprintf("join of n%d", i)
		mu.Unlock()
		total := copies()
		oldRing := nodes[0].view.Load().ring
		start := time.Now()
		n := faultNode(t, fn, i, tweak)
		nodes = append(nodes, n)
		waitSettled(t, nodes, i, 3*time.Minute)
		mu.Lock()
		live = append(live, n)
		mu.Unlock()
		frac := float64(n.AntiEntropy().KeysPulled) / float64(total)
		ideal := ring.MovedReplicas(oldRing, nodes[0].view.Load().ring, 3)
		t.Logf("join n%d: settled in %v; moved %.4f of the copies (ideal %.4f, 1/(n+1) = %.4f)",
			i, time.Since(start).Round(time.Millisecond), frac, ideal, 1/float64(i))
		if frac > 1.2/float64(i) {
			byPeer := map[string]uint64{}
			for name, p := range n.AntiEntropy().Peers {
				byPeer[name] = p.KeysPulled
			}
			t.Errorf("join n%d moved %.4f of the data, more than 1.2 × %.4f; it holds %d keys, pulled %d (by peer %v)",
				i, frac, 1/float64(i), n.AntiEntropy().Keys, n.AntiEntropy().KeysPulled, byPeer)
		}
	}
	// Shrink 5 → 3: each leaving node hands its ranges over, then stops.
	for i := 5; i >= 4; i-- {
		n := nodes[i-1]
		mu.Lock()
		phase = fmt.Sprintf("leave of n%d", i)
		live = slices.DeleteFunc(live, func(x *testNode) bool { return x == n })
		mu.Unlock()
		start := time.Now()
		ctx, cancel := context.WithTimeout(bg, 60*time.Second)
		err := n.Leave(ctx)
		cancel()
		if err != nil {
			t.Fatalf("n%d leave: %v", i, err)
		}
		n.Close()
		nodes = nodes[:i-1]
		waitSettled(t, nodes, i-1, 3*time.Minute)
		t.Logf("leave n%d: done in %v", i, time.Since(start).Round(time.Millisecond))
	}
	halt()

	// Every acknowledged write is there.
	mu.Lock()
	defer mu.Unlock()
	for _, key := range acked {
		res, err := nodes[len(key)%3].Get(bg, []byte(key), &ReadOptions{R: All})
		if err != nil || !slices.Equal(values(t, res), []string{key}) {
			t.Fatalf("acknowledged %s (written through %s) after the changes: %v %v", key, ackedAt[key], res, err)
		}
	}
	t.Logf("%d writes acknowledged and present, %d reads during the changes, %d not found", len(acked), reads.Load(), missing.Load())
	for _, n := range nodes {
		checkItemCache(t, n.Node) // after ranges were dropped
	}
}
