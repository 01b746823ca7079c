package ring

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// model is a plain re-implementation of the ring from its definition: a
// list of (token, member) sorted by the token's hash before snapping (low
// idxBits bits dropped), then by id; the owner of h is the first entry
// whose snapped token is greater than h; preference lists walk from there.
type model struct {
	members []Member
	entries []modelEntry
}

type modelEntry struct {
	raw, token uint64
	m          Member
}

func newModel(members []Member, vnodes int) *model {
	byID := map[NodeID]Member{}
	for _, m := range members {
		if old, ok := byID[m.ID]; !ok || m.Zone < old.Zone {
			byID[m.ID] = m
		}
	}
	md := &model{}
	for _, m := range byID {
		md.members = append(md.members, m)
	}
	slices.SortFunc(md.members, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	var drop uint64
	for 1<<drop < len(md.members) {
		drop++
	}
	for _, m := range md.members {
		raw, snapped := rawTokens(m.ID, vnodes), Tokens(m.ID, vnodes)
		for i := range raw {
			md.entries = append(md.entries, modelEntry{raw: raw[i], token: snapped[i], m: m})
		}
	}
	slices.SortFunc(md.entries, func(a, b modelEntry) int {
		return cmp.Or(cmp.Compare(a.raw>>drop, b.raw>>drop), cmp.Compare(a.m.ID, b.m.ID))
	})
	return md
}

func (md *model) start(h uint64) int {
	for i, e := range md.entries {
		if e.token > h {
			return i
		}
	}
	return 0
}

// walk returns the distinct members clockwise from the owner of h.
func (md *model) walk(h uint64) []Member {
	var out []Member
	s := md.start(h)
	for k := range md.entries {
		e := md.entries[(s+k)%len(md.entries)]
		if !slices.Contains(out, e.m) {
			out = append(out, e.m)
		}
	}
	return out
}

func (md *model) preference(h uint64, n int) []NodeID {
	if n <= 0 || len(md.members) == 0 {
		return nil
	}
	order := md.walk(h)
	zoned := false
	for _, m := range md.members {
		zoned = zoned || m.Zone != ""
	}
	var out []NodeID
	var taken []Member
	if zoned {
		zones := map[string]bool{}
		for _, m := range order {
			if len(out) < n && !zones[m.Zone] {
				zones[m.Zone] = true
				out = append(out, m.ID)
				taken = append(taken, m)
			}
		}
	}
	for _, m := range order {
		if len(out) < n && !slices.Contains(taken, m) {
			out = append(out, m.ID)
			taken = append(taken, m)
		}
	}
	return out
}

// randomRing draws members (some with zones) for property tests.
func randomRing(rng *rand.Rand) ([]Member, int) {
	n := rng.IntN(12)
	vnodes := 1 + rng.IntN(48)
	if rng.IntN(8) == 0 {
		n, vnodes = 2+rng.IntN(2), 4096 // dense: many tokens share a leaf
	}
	zones := 0
	if rng.IntN(2) == 0 {
		zones = 1 + rng.IntN(4)
	}
	ms := make([]Member, n)
	for i := range ms {
		ms[i].ID = NodeID(rng.Uint64())
		if rng.IntN(4) == 0 && i > 0 {
			ms[i].ID = ms[rng.IntN(i)].ID // duplicate id
		}
		if zones > 0 && rng.IntN(6) > 0 {
			ms[i].Zone = fmt.Sprintf("z%d", rng.IntN(zones))
		}
	}
	return ms, vnodes
}

// probes returns hashes worth asking about: random ones, both ends of
// leaves, and the neighbourhood of tokens.
func probes(rng *rand.Rand, r *Ring, count int) []uint64 {
	hs := []uint64{0, ^uint64(0), 1 << 63}
	for range count {
		hs = append(hs, rng.Uint64())
		if len(r.tokens) > 0 {
			t := r.tokens[rng.IntN(len(r.tokens))]
			hs = append(hs, t, t-1, t+1, t|leafMask)
		}
	}
	return hs
}

func distinctZones(r *Ring, ids []NodeID) int {
	zones := map[string]bool{}
	for _, id := range ids {
		i, _ := slices.BinarySearchFunc(r.members, id, func(m Member, id NodeID) int { return cmp.Compare(m.ID, id) })
		zones[r.members[i].Zone] = true
	}
	return len(zones)
}

func TestPreferenceProperties(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 200 {
		ms, vnodes := randomRing(rng)
		r, md := New(ms, vnodes), newModel(ms, vnodes)
		if r.Len() != len(md.members) || !slices.Equal(r.Members(), md.members) {
			t.Fatalf("ring %d: members %v, want %v", iter, r.Members(), md.members)
		}
		nzones := distinctZones(r, memberIDs(r))
		ranges := r.Ranges(3)
		for _, h := range probes(rng, r, 20) {
			for n := 0; n <= r.Len()+1; n++ {
				got, want := r.Preference(h, n), md.preference(h, n)
				if !slices.Equal(got, want) {
					t.Fatalf("ring %d (%v, vnodes %d): Preference(%#x, %d) = %v, model %v", iter, ms, vnodes, h, n, got, want)
				}
				if len(got) != min(max(n, 0), r.Len()) {
					t.Fatalf("Preference(%#x, %d) has %d nodes of %d", h, n, len(got), r.Len())
				}
				if len(got) > 0 && got[0] != r.Owner(h) {
					t.Fatalf("Preference(%#x, %d) = %v does not start with the owner %v", h, n, got, r.Owner(h))
				}
				if len(slices.Compact(slices.Sorted(slices.Values(got)))) != len(got) {
					t.Fatalf("Preference(%#x, %d) = %v repeats a node", h, n, got)
				}
				if r.zoned && distinctZones(r, got) != min(len(got), nzones) {
					t.Fatalf("Preference(%#x, %d) = %v spans %d zones, want %d", h, n, got, distinctZones(r, got), min(len(got), nzones))
				}
			}
			var walked []NodeID
			r.Walk(h, func(id NodeID) bool { walked = append(walked, id); return true })
			var want []NodeID
			for _, m := range md.walk(h) {
				want = append(want, m.ID)
			}
			if !slices.Equal(walked, want) {
				t.Fatalf("Walk(%#x) = %v, want %v", h, walked, want)
			}
			if len(ranges) > 0 {
				rg := rangeOf(ranges, LeafOf(h))
				if want := r.Preference(h, 3); !slices.Equal(rg.Replicas, want) {
					t.Fatalf("range %d-%d has %v, Preference(%#x) = %v", rg.Lo, rg.Hi, rg.Replicas, h, want)
				}
			}
		}
	}
}

func memberIDs(r *Ring) []NodeID {
	var ids []NodeID
	for _, m := range r.Members() {
		ids = append(ids, m.ID)
	}
	return ids
}

func rangeOf(rs []Range, leaf uint32) Range {
	i, _ := slices.BinarySearchFunc(rs, leaf, func(r Range, leaf uint32) int {
		if r.Hi <= leaf {
			return -1
		}
		if r.Lo > leaf {
			return 1
		}
		return 0
	})
	return rs[i]
}

func TestWalkStops(t *testing.T) {
	r := New(randomMembers(7, 10), 64)
	calls := 0
	r.Walk(12345, func(NodeID) bool { calls++; return calls < 4 })
	if calls != 4 {
		t.Fatalf("Walk called fn %d times after it returned false at 4", calls)
	}
}

func TestZonesFirst(t *testing.T) {
	// Three zones of two members and one member without a zone (its own
	// zone ""): any 4 replicas span all four zones, 5 add the nearest
	// remaining member clockwise.
	var ms []Member
	for i, z := range []string{"a", "a", "b", "b", "c", "c", ""} {
		ms = append(ms, Member{ID: NodeID(1000 + i), Zone: z})
	}
	r := New(ms, 16)
	rng := rand.New(rand.NewPCG(3, 4))
	for range 1000 {
		h := rng.Uint64()
		p := r.Preference(h, 5)
		if distinctZones(r, p[:4]) != 4 {
			t.Fatalf("Preference(%#x, 5) = %v: first 4 span %d zones", h, p, distinctZones(r, p))
		}
		// The fifth is the first member clockwise not yet taken.
		var fifth NodeID
		r.Walk(h, func(id NodeID) bool {
			if slices.Contains(p[:4], id) {
				return true
			}
			fifth = id
			return false
		})
		if p[4] != fifth {
			t.Fatalf("Preference(%#x, 5) = %v, fifth should be %v", h, p, fifth)
		}
	}
}

func TestRanges(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	check := func(name string, r *Ring, n int) {
		t.Helper()
		rs := r.Ranges(n)
		if len(rs) == 0 || rs[0].Lo != 0 || rs[len(rs)-1].Hi != 1<<LeafBits {
			t.Fatalf("%s: Ranges(%d) does not cover the space: %d ranges", name, n, len(rs))
		}
		edges := map[uint32]bool{}
		for _, tok := range r.tokens {
			if tok&leafMask != 0 {
				t.Fatalf("%s: token %#x is not on a leaf edge", name, tok)
			}
			edges[LeafOf(tok)] = true
		}
		for i, rg := range rs {
			if rg.Lo >= rg.Hi {
				t.Fatalf("%s: range %d is empty: [%d, %d)", name, i, rg.Lo, rg.Hi)
			}
			if i > 0 {
				if rg.Lo != rs[i-1].Hi {
					t.Fatalf("%s: range %d starts at %d, previous ends at %d", name, i, rg.Lo, rs[i-1].Hi)
				}
				if slices.Equal(rg.Replicas, rs[i-1].Replicas) {
					t.Fatalf("%s: ranges %d and %d have equal replicas %v: not maximal", name, i-1, i, rg.Replicas)
				}
				if !edges[rg.Lo] {
					t.Fatalf("%s: range %d starts at leaf %d, not at a token", name, i, rg.Lo)
				}
			}
			for _, leaf := range []uint32{rg.Lo, rg.Hi - 1, rg.Lo + rng.Uint32N(rg.Hi-rg.Lo)} {
				for _, h := range []uint64{uint64(leaf) << (64 - LeafBits), uint64(leaf)<<(64-LeafBits) | leafMask,
					uint64(leaf)<<(64-LeafBits) | rng.Uint64()&leafMask} {
					if p := r.Preference(h, n); !slices.Equal(p, rg.Replicas) {
						t.Fatalf("%s: range %d [%d, %d) has %v, Preference(%#x, %d) = %v", name, i, rg.Lo, rg.Hi, rg.Replicas, h, n, p)
					}
				}
			}
		}
	}
	for iter := range 200 {
		ms, vnodes := randomRing(rng)
		for n := 0; n <= 4; n++ {
			check(fmt.Sprintf("ring %d", iter), New(ms, vnodes), n)
		}
	}
	check("64 nodes", New(randomMembers(9, 64), 0), 3)
	for _, v := range []int{1, 4096} {
		for _, id := range []NodeID{0, 1, 42} {
			for _, tok := range Tokens(id, v) {
				if tok%(1<<(64-LeafBits)) != 0 {
					t.Fatalf("Tokens(%d, %d) has %#x, not on a leaf edge", id, v, tok)
				}
			}
		}
	}
}

func TestHash(t *testing.T) {
	ms := []Member{{1, "a"}, {2, "b"}, {3, "a"}, {4, ""}}
	base := New(ms, 8).Hash()
	rng := rand.New(rand.NewPCG(7, 8))
	for range 10 {
		shuffled := slices.Clone(ms)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if h := New(append(shuffled, ms[0]), 8).Hash(); h != base {
			t.Fatalf("same members in another order hash to %#x, want %#x", h, base)
		}
	}
	differ := map[string]*Ring{
		"zone changed":   New([]Member{{1, "a"}, {2, "b"}, {3, "b"}, {4, ""}}, 8),
		"zone added":     New([]Member{{1, "a"}, {2, "b"}, {3, "a"}, {4, "c"}}, 8),
		"member changed": New([]Member{{1, "a"}, {2, "b"}, {3, "a"}, {5, ""}}, 8),
		"member removed": New([]Member{{1, "a"}, {2, "b"}, {3, "a"}}, 8),
		"member added":   New([]Member{{1, "a"}, {2, "b"}, {3, "a"}, {4, ""}, {6, ""}}, 8),
		"vnodes":         New(ms, 9),
		"zone boundary":  New([]Member{{1, "a"}, {2, "b"}, {3, "a"}, {4, "\x00"}}, 8),
	}
	for name, r := range differ {
		if r.Hash() == base {
			t.Errorf("%s: Hash unchanged", name)
		}
	}
}

func TestEdgeCases(t *testing.T) {
	empty := New(nil, 0)
	if empty.Len() != 0 || empty.VNodes() != DefaultVNodes || empty.Owner(5) != 0 ||
		empty.Preference(5, 3) != nil || len(empty.Ownership()) != 0 || len(empty.Members()) != 0 {
		t.Fatalf("empty ring misbehaves")
	}
	empty.Walk(5, func(NodeID) bool { t.Fatal("Walk on an empty ring called fn"); return true })
	if rs := empty.Ranges(3); len(rs) != 1 || rs[0].Lo != 0 || rs[0].Hi != 1<<LeafBits || rs[0].Replicas != nil {
		t.Fatalf("empty ring Ranges = %v", rs)
	}

	one := New([]Member{{ID: 7}}, 1)
	if p := one.Preference(^uint64(0), 3); !slices.Equal(p, []NodeID{7}) {
		t.Fatalf("one-member Preference = %v", p)
	}
	if own := one.Ownership(); own[7] != 1 {
		t.Fatalf("one-member Ownership = %v", own)
	}
	if rs := one.Ranges(3); len(rs) != 1 || !slices.Equal(rs[0].Replicas, []NodeID{7}) {
		t.Fatalf("one-member Ranges = %v", rs)
	}
	if got := MovedPrimary(empty, one); got != 1 {
		t.Fatalf("MovedPrimary(empty, one) = %v, want 1", got)
	}
	if got := MovedPrimary(one, empty); got != 1 {
		t.Fatalf("MovedPrimary(one, empty) = %v, want 1", got)
	}
	if got := MovedReplicas(empty, one, 3); got != 1.0/3 {
		t.Fatalf("MovedReplicas(empty, one, 3) = %v, want 1/3", got)
	}
	if got := MovedReplicas(one, one, 3); got != 0 {
		t.Fatalf("MovedReplicas(one, one, 3) = %v", got)
	}

	dup := New([]Member{{5, "b"}, {5, "a"}, {6, "c"}, {5, "c"}}, 2)
	if got := dup.Members(); !slices.Equal(got, []Member{{5, "a"}, {6, "c"}}) {
		t.Fatalf("duplicates: Members = %v", got)
	}
	if len(dup.tokens) != 4 {
		t.Fatalf("duplicates: %d tokens, want 4", len(dup.tokens))
	}
	if LeafOf(^uint64(0)) != 1<<LeafBits-1 || LeafOf(1<<(64-LeafBits)-1) != 0 {
		t.Fatal("LeafOf")
	}
}

// TestPreferenceAllocs: the hot path allocates the result and nothing else.
func TestPreferenceAllocs(t *testing.T) {
	ms := randomMembers(11, 64)
	for i := range ms {
		ms[i].Zone = fmt.Sprintf("z%d", i%3)
	}
	for _, r := range []*Ring{New(randomMembers(11, 64), 256), New(ms, 256)} {
		h := uint64(0)
		if a := testing.AllocsPerRun(100, func() { h += 0x9e3779b97f4a7c15; r.Preference(h, 3) }); a != 1 {
			t.Errorf("Preference allocates %v times, want 1", a)
		}
	}
}

// TestMovedModel checks MovedPrimary and MovedReplicas against a leaf by
// leaf count on small rings.
func TestMovedModel(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(12, 13))
	for iter := range 2 {
		ms := randomMembers(uint64(100+iter), 6)
		for i := range ms {
			if iter > 0 {
				ms[i].Zone = fmt.Sprintf("z%d", rng.IntN(3))
			}
		}
		a := New(ms[:4], 8)
		b := New(append(slices.Clone(ms[1:4]), ms[4:]...), 8) // one leaves, two join
		const n = 3
		var primary, replicas int
		for leaf := uint64(0); leaf < 1<<LeafBits; leaf += 1 {
			h := leaf << (64 - LeafBits)
			pa, pb := a.Preference(h, n), b.Preference(h, n)
			if pa[0] != pb[0] {
				primary++
			}
			for _, x := range pb {
				if !slices.Contains(pa, x) {
					replicas++
				}
			}
		}
		if got, want := MovedPrimary(a, b), float64(primary)/(1<<LeafBits); got != want {
			t.Errorf("MovedPrimary = %v, leaf count %v", got, want)
		}
		if got, want := MovedReplicas(a, b, n), float64(replicas)/(1<<LeafBits)/n; got != want {
			t.Errorf("MovedReplicas = %v, leaf count %v", got, want)
		}
	}
}

// sizeStep is the stride through cluster sizes of the figure tests: every
// size normally, every third under the race detector (it adds nothing to
// these single-threaded tests but time).
func sizeStep() int {
	if raceEnabled {
		return 3
	}
	return 1
}

func TestOwnershipBalance(t *testing.T) {
	t.Parallel()
	worst := 0.0
	for n := 3; n <= 64; n += sizeStep() {
		r := New(randomMembers(uint64(n), n), 0)
		sum := 0.0
		for _, s := range r.Ownership() {
			sum += s
		}
		if sum != 1 {
			t.Errorf("n=%d: shares sum to %v", n, sum)
		}
		mm := maxOverMean(r)
		worst = max(worst, mm)
		t.Logf("n=%2d  max/mean %.4f", n, mm)
		if mm > 1.10 {
			t.Errorf("n=%d: max/mean ownership %.4f > 1.10", n, mm)
		}
	}
	t.Logf("worst max/mean %.4f at %d vnodes", worst, DefaultVNodes)
}

func TestJoinMovement(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(14, 15))
	const replicas = 3
	ms := randomMembers(99, 64)
	for n := 3; n <= 63; n += sizeStep() {
		a, b := New(ms[:n], 0), New(ms[:n+1], 0)
		p, rep := MovedPrimary(a, b), MovedReplicas(a, b, replicas)
		bound := 1.2 / float64(n+1)
		t.Logf("join  %2d→%2d  primary %.4f  replicas %.4f  ×(n+1): %.3f %.3f", n, n+1, p, rep, p*float64(n+1), rep*float64(n+1))
		if p > bound || rep > bound {
			t.Errorf("join %d→%d moves primary %.4f, replicas %.4f; bound %.4f", n, n+1, p, rep, bound)
		}
		// Consistent hashing: only the keys the new node now owns move.
		if own := b.Ownership()[ms[n].ID]; p != own {
			t.Errorf("join %d→%d: moved %v, but the new node owns %v", n, n+1, p, own)
		}
	}
	for n := 4; n <= 64; n += sizeStep() {
		k := rng.IntN(n)
		a := New(ms[:n], 0)
		b := New(slices.Delete(slices.Clone(ms[:n]), k, k+1), 0)
		p, rep := MovedPrimary(a, b), MovedReplicas(a, b, replicas)
		bound := 1.2 / float64(n)
		t.Logf("leave %2d→%2d  primary %.4f  replicas %.4f  ×n: %.3f %.3f", n, n-1, p, rep, p*float64(n), rep*float64(n))
		if p > bound || rep > bound {
			t.Errorf("leave %d→%d moves primary %.4f, replicas %.4f; bound %.4f", n, n-1, p, rep, bound)
		}
		if own := a.Ownership()[ms[k].ID]; p != own {
			t.Errorf("leave %d→%d: moved %v, but the leaving node owned %v", n, n-1, p, own)
		}
	}
}

func FuzzPreference(f *testing.F) {
	f.Add([]byte{3, 1, 2, 3, 4, 5, 6, 7, 8, 9}, uint64(0), uint8(3), uint8(8))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff}, ^uint64(0), uint8(2), uint8(1))
	f.Add([]byte("abcdefghijklmnopqrstuvwxyz0123456789"), uint64(1)<<63, uint8(5), uint8(40))
	f.Fuzz(func(t *testing.T, data []byte, h uint64, n, vnodes uint8) {
		// Each 9 bytes are a member: 8 of id (short ids collide), 1 of zone.
		var ms []Member
		for len(data) >= 9 && len(ms) < 16 {
			var id uint64
			for _, b := range data[:8] {
				id = id<<3 ^ uint64(b) // few bits: duplicates happen
			}
			z := ""
			if data[8]%4 != 0 {
				z = string('a' + rune(data[8]%3))
			}
			ms = append(ms, Member{ID: NodeID(id), Zone: z})
			data = data[9:]
		}
		v := int(vnodes%64) + 1
		r, md := New(ms, v), newModel(ms, v)
		for _, hh := range []uint64{h, h &^ leafMask, h | leafMask} {
			if got, want := r.Preference(hh, int(n%8)), md.preference(hh, int(n%8)); !slices.Equal(got, want) {
				t.Fatalf("Preference(%#x, %d) = %v, model %v (members %v, vnodes %d)", hh, n%8, got, want, ms, v)
			}
		}
		rs := r.Ranges(int(n%8) + 1)
		if rg := rangeOf(rs, LeafOf(h)); !slices.Equal(rg.Replicas, r.Preference(h, int(n%8)+1)) {
			t.Fatalf("Ranges disagree with Preference at %#x", h)
		}
	})
}

func BenchmarkPreference(b *testing.B) {
	for _, zones := range []int{0, 3} {
		ms := randomMembers(1, 64)
		for i := range ms {
			if zones > 0 {
				ms[i].Zone = fmt.Sprintf("z%d", i%zones)
			}
		}
		r := New(ms, 0)
		b.Run(fmt.Sprintf("zones=%d", zones), func(b *testing.B) {
			b.ReportAllocs()
			h := uint64(0)
			for b.Loop() {
				h += 0x9e3779b97f4a7c15
				r.Preference(h, 3)
			}
		})
	}
}

func BenchmarkNew(b *testing.B) {
	ms := randomMembers(1, 64)
	b.ReportAllocs()
	for b.Loop() {
		New(ms, 0)
	}
}

func BenchmarkRanges(b *testing.B) {
	r := New(randomMembers(1, 64), 0)
	b.ReportAllocs()
	for b.Loop() {
		r.Ranges(3)
	}
}

func BenchmarkMovedReplicas(b *testing.B) {
	ms := randomMembers(1, 65)
	r1, r2 := New(ms[:64], 0), New(ms, 0)
	for b.Loop() {
		MovedReplicas(r1, r2, 3)
	}
}
