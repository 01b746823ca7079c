package node

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rumorkv/rumor/ring"
)

// faultCluster opens size in-process nodes on a FaultNetwork, joined
// through the first.
func faultCluster(t testing.TB, size int) (*FaultNetwork, []*testNode) {
	t.Helper()
	return faultClusterWith(t, size, nil)
}

func hosts(nodes []*testNode) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.GossipAddr())
	}
	return out
}

// Both sides of a partition keep accepting writes (W=1, sloppy quorum);
// after the heal the cluster re-forms by itself and hinted handoff brings
// every replica every write, with concurrent writes as siblings.
func TestPartitionWritesBothSidesAndHeal(t *testing.T) {
	fn, nodes := faultCluster(t, 5)
	left, right := nodes[:3], nodes[3:]
	fn.Partition(hosts(left), hosts(right))
	waitMembers(t, left, 3)
	waitMembers(t, right, 2)

	type write struct{ key, value string }
	var acked []write
	for i := 0; i < 40; i++ {
		for side, group := range [][]*testNode{left, right} {
			key := fmt.Sprintf("k%d", i)
			if i%2 == 1 {
				key = fmt.Sprintf("k%d-side%d", i, side) // distinct keys per side
			}
			val := fmt.Sprintf("v%d-side%d", i, side)
			if _, err := group[i%len(group)].Put(bg, []byte(key), []byte(val), nil); err != nil {
				t.Fatalf("side %d put %s during partition: %v", side, key, err)
			}
			acked = append(acked, write{key, val})
		}
	}
	healed := time.Now()
	fn.Heal()
	waitMembers(t, nodes, 5)
	t.Logf("one membership %v after heal", time.Since(healed).Round(time.Millisecond))

	// Every replica's own copy holds every acknowledged write.
	eventually(t, 15*time.Second, func() error {
		for _, w := range acked {
			pref := nodes[0].view.Load().ring.Preference(ring.KeyHash([]byte(w.key)), 3)
			for _, n := range nodes {
				if !slices.Contains(pref, ring.NodeID(n.ID())) {
					continue
				}
				res, err := n.Get(bg, []byte(w.key), &ReadOptions{Local: true})
				if err != nil {
					return fmt.Errorf("%s local %s: %v", n.Name(), w.key, err)
				}
				if got := values(t, res); !slices.Contains(got, w.value) {
					return fmt.Errorf("%s local %s = %q, missing %q", n.Name(), w.key, got, w.value)
				}
			}
		}
		return nil
	})
	t.Logf("replicas hold every acknowledged write %v after heal", time.Since(healed).Round(time.Millisecond))
}

// A cut that the failure detector has not noticed yet: replicate calls
// fail, hints are stored, nothing acknowledged is lost.
func TestCutBeforeDetection(t *testing.T) {
	fn, nodes := faultCluster(t, 3)
	fn.Isolate(nodes[2].GossipAddr())
	if _, err := nodes[0].Put(bg, []byte("x"), []byte("1"), &WriteOptions{W: Quorum}); err != nil {
		t.Fatal(err)
	}
	// R=all cannot succeed while n3 is cut off.
	if _, err := nodes[0].Get(bg, []byte("x"), &ReadOptions{R: All}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("R=all across a cut: %v, want ErrUnavailable", err)
	}
	fn.Heal()
	waitMembers(t, nodes, 3)
	eventually(t, 10*time.Second, func() error {
		res, err := nodes[2].Get(bg, []byte("x"), &ReadOptions{Local: true})
		if err != nil {
			return err
		}
		if !slices.Equal(values(t, res), []string{"1"}) {
			return fmt.Errorf("n3 has %q", values(t, res))
		}
		return nil
	})
}
