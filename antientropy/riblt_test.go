package antientropy

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// randomSets returns two sets sharing common items, with onlyA and onlyB
// items exclusive to each.
func randomSets(rng *rand.Rand, common, onlyA, onlyB int) (a, b, wantA, wantB []uint64) {
	for range common {
		it := rng.Uint64()
		a = append(a, it)
		b = append(b, it)
	}
	for range onlyA {
		it := rng.Uint64()
		a = append(a, it)
		wantA = append(wantA, it)
	}
	for range onlyB {
		it := rng.Uint64()
		b = append(b, it)
		wantB = append(wantB, it)
	}
	rng.Shuffle(len(a), func(i, j int) { a[i], a[j] = a[j], a[i] })
	rng.Shuffle(len(b), func(i, j int) { b[i], b[j] = b[j], b[i] })
	return a, b, wantA, wantB
}

func sorted(s []uint64) []uint64 {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestRIBLTDecodes streams symbols of a remote set into a decoder holding the
// local set until it decodes, and checks the difference is exact; it logs
// the symbols needed per difference.
func TestRIBLTDecodes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct{ common, onlyLocal, onlyRemote int }{
		{0, 0, 1}, {0, 1, 0}, {100, 0, 0}, {1000, 1, 1}, {1000, 10, 0}, {1000, 0, 10},
		{5000, 50, 50}, {10000, 500, 500}, {20000, 3000, 1000}, {0, 2000, 2000},
	} {
		local, remote, wantLocal, wantRemote := randomSets(rng, tc.common, tc.onlyLocal, tc.onlyRemote)
		enc := newEncoder(slices.Clone(remote))
		dec := newDecoder(slices.Clone(local))
		d := tc.onlyLocal + tc.onlyRemote
		n := 0
		for !dec.done() {
			dec.add(enc.produce(1))
			n++
			if n > 10*d+100 {
				t.Fatalf("%+v: not decoded after %d symbols", tc, n)
			}
		}
		if !slices.Equal(sorted(dec.remote.items), sorted(wantRemote)) || !slices.Equal(sorted(dec.mine.items), sorted(wantLocal)) {
			t.Fatalf("%+v: decoded %d remote / %d local, want %d / %d", tc, len(dec.remote.items), len(dec.mine.items), len(wantRemote), len(wantLocal))
		}
		if d > 0 {
			t.Logf("common %6d, differences %5d: %5d symbols (%.2f per difference)", tc.common, d, n, float64(n)/float64(d))
		}
	}
}

// TestRIBLTOverhead checks the average symbols per difference for mid-size
// differences, over several seeds, against the paper's figure (about 1.35–1.7).
func TestRIBLTOverhead(t *testing.T) {
	for _, d := range []int{100, 1000, 5000} {
		total, runs := 0, 5
		for seed := range runs {
			rng := rand.New(rand.NewPCG(uint64(seed), uint64(d)))
			local, remote, _, _ := randomSets(rng, 10000, d/2, d-d/2)
			enc := newEncoder(remote)
			dec := newDecoder(local)
			n := 0
			for !dec.done() {
				dec.add(enc.produce(8))
				n += 8
			}
			total += n
		}
		ratio := float64(total) / float64(runs*d)
		t.Logf("d=%d: %.2f symbols per difference", d, ratio)
		if ratio > 2.0 {
			t.Errorf("d=%d: %.2f symbols per difference, want <= 2", d, ratio)
		}
	}
}

// The mapping is deterministic and starts at 0 with strictly increasing
// indices.
func TestMappingIncreasing(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 1000 {
		m := newMapping(checksum(rng.Uint64()))
		if m.idx != 0 {
			t.Fatal("mapping does not start at 0")
		}
		prev := m.idx
		for range 50 {
			m.next()
			if m.idx == maxIndex {
				break // capped: beyond any stream
			}
			if m.idx <= prev {
				t.Fatalf("index %d after %d", m.idx, prev)
			}
			prev = m.idx
		}
	}
	// Density: index i is hit with probability about 1/(1+i/2).
	hits := make([]int, 64)
	const items = 20000
	for range items {
		m := newMapping(checksum(rng.Uint64()))
		for m.idx < 64 {
			hits[m.idx]++
			m.next()
		}
	}
	for _, i := range []int{1, 4, 16, 63} {
		got, want := float64(hits[i])/items, 1/(1+float64(i)/2)
		if got < want*0.85 || got > want*1.15 {
			t.Errorf("index %d hit with probability %.3f, want about %.3f", i, got, want)
		}
	}
}
