package ring

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

var vnodeTable = flag.Bool("vnodetable", false, "measure ownership balance per vnodes count (slow; TestVNodeTable)")

// randomMembers returns n members with random ids from seed.
func randomMembers(seed uint64, n int) []Member {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	ms := make([]Member, n)
	for i := range ms {
		ms[i] = Member{ID: NodeID(rng.Uint64())}
	}
	return ms
}

// maxOverMean returns the largest ownership share divided by the mean.
func maxOverMean(r *Ring) float64 {
	worst := 0.0
	for _, s := range r.Ownership() {
		worst = max(worst, s)
	}
	return worst * float64(r.Len())
}

// TestVNodeTable measures, for each vnodes count, ownership max/mean over
// cluster sizes 3..64 and 50 random id sets per size, and the worst
// one-node join movement relative to 1/(n+1). It chose DefaultVNodes:
//
//	go test -run TestVNodeTable -vnodetable -v ./ring
func TestVNodeTable(t *testing.T) {
	if !*vnodeTable {
		t.Skip("run with -vnodetable")
	}
	const seeds = 50
	for _, v := range []int{256, 512, 1024, 2048, 4096, 8192} {
		type result struct {
			worst, sum, join float64
			worstN           int
			count            int
		}
		var mu sync.Mutex
		var res result
		var wg sync.WaitGroup
		work := make(chan int)
		for range 2 {
			wg.Go(func() {
				for n := range work {
					var local result
					for s := range seeds {
						ms := randomMembers(uint64(s)<<8|uint64(n), n+1)
						r := New(ms[:n], v)
						mm := maxOverMean(r)
						local.sum += mm
						local.count++
						if mm > local.worst {
							local.worst, local.worstN = mm, n
						}
						if n < 64 && s < 10 { // join movement, fewer sets: it is slower
							moved := MovedPrimary(r, New(ms, v)) * float64(n+1)
							local.join = max(local.join, moved)
						}
					}
					mu.Lock()
					res.sum += local.sum
					res.count += local.count
					res.join = max(res.join, local.join)
					if local.worst > res.worst {
						res.worst, res.worstN = local.worst, local.worstN
					}
					mu.Unlock()
				}
			})
		}
		for n := 3; n <= 64; n++ {
			work <- n
		}
		close(work)
		wg.Wait()
		t.Logf("vnodes %5d: max/mean worst %.4f (n=%d), mean over sets %.4f; join moved worst %.3f×1/(n+1); 64 nodes = %d tokens, %s",
			v, res.worst, res.worstN, res.sum/float64(res.count), res.join, 64*v, fmtBytes(64*v*12))
	}
}

func fmtBytes(b int) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
