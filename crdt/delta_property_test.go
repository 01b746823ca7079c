package crdt

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
)

// The delta property tests run random histories on 3–5 replicas the way
// delta-state replication runs them: replica i's actor mutates replica i's
// copy, each mutation's delta is joined locally and shipped to some other
// replicas over a network that loses, duplicates, delays and reorders, and
// now and then a replica joins another's whole state (anti-entropy). At the
// end, every replica receives every delta ever made in a random order with
// duplicates, and must reach exactly the join of all full states, which
// must also be the join of all deltas in any order and grouping.

// lattice is what the delta types have in common.
type lattice[T any] interface {
	Join(T) T
	Equal(T) bool
	MarshalBinary() ([]byte, error)
	String() string
}

type deltaMsg[T any] struct {
	to    int
	delta T
}

type deltaSim[T lattice[T]] struct {
	t        *testing.T
	seed     uint64
	rng      *rand.Rand
	replicas []T
	deltas   []T
	net      []deltaMsg[T]
	pool     []T
	steps    int
	// mutate makes a mutation on replica i and returns its delta.
	mutate func(s *deltaSim[T], i int) T
	// decode decodes an encoding made by MarshalBinary.
	decode func([]byte) (T, error)
	// merge, if set, joins src into *dst in place. Each replica then has a
	// twin that only ever merges in place what the replica joins; twins
	// and replicas must stay equal.
	merge func(dst *T, src T)
	twins []T
}

func newDeltaSim[T lattice[T]](t *testing.T, seed uint64, mutate func(*deltaSim[T], int) T, decode func([]byte) (T, error)) *deltaSim[T] {
	rng := rand.New(rand.NewPCG(seed, 0xde17a))
	return &deltaSim[T]{t: t, seed: seed, rng: rng, replicas: make([]T, 3+rng.IntN(3)), mutate: mutate, decode: decode}
}

func (s *deltaSim[T]) run(steps int) {
	for range steps {
		s.step()
	}
}

func (s *deltaSim[T]) step() {
	s.steps++
	n := len(s.replicas)
	i, j := s.rng.IntN(n), s.rng.IntN(n)
	switch x := s.rng.IntN(100); {
	case x < 45:
		before := s.replicas[i]
		d := s.mutate(s, i)
		after := before.Join(d)
		s.mergeTwin(i, d)
		if !after.Join(before).Equal(after) {
			s.t.Fatalf("seed %d step %d: mutation not inflationary", s.seed, s.steps)
		}
		s.replicas[i] = after
		s.deltas = append(s.deltas, d)
		s.pool = append(s.pool, d, after)
		for k := range n {
			if k != i && s.rng.IntN(3) != 0 { // a third are never sent
				s.net = append(s.net, deltaMsg[T]{k, d})
			}
		}
	case x < 80:
		if len(s.net) == 0 {
			return
		}
		k := s.rng.IntN(len(s.net))
		m := s.net[k]
		s.replicas[m.to] = s.replicas[m.to].Join(m.delta)
		s.mergeTwin(m.to, m.delta)
		s.pool = append(s.pool, s.replicas[m.to])
		if s.rng.IntN(4) != 0 { // else delivered again later
			s.net = slices.Delete(s.net, k, k+1)
		}
	case x < 90:
		if len(s.net) > 0 { // lost
			k := s.rng.IntN(len(s.net))
			s.net = slices.Delete(s.net, k, k+1)
		}
	default: // anti-entropy: a whole state
		s.mergeTwin(j, s.replicas[i])
		s.replicas[j] = s.replicas[j].Join(s.replicas[i])
		s.pool = append(s.pool, s.replicas[j])
	}
	for k, tw := range s.twins {
		if !tw.Equal(s.replicas[k]) {
			s.t.Fatalf("seed %d step %d: replica %d merged in place %v, joined %v", s.seed, s.steps, k, tw, s.replicas[k])
		}
	}
}

// mergeTwin merges src into replica i's twin.
func (s *deltaSim[T]) mergeTwin(i int, src T) {
	if s.merge == nil {
		return
	}
	if s.twins == nil {
		s.twins = make([]T, len(s.replicas))
	}
	s.merge(&s.twins[i], src)
}

// converge checks the final exchanges and returns the converged state.
func (s *deltaSim[T]) converge() T {
	t := s.t
	t.Helper()
	var full T
	for _, r := range s.replicas {
		full = full.Join(r)
	}
	want := s.mustEncode(full)
	// Every replica receives every delta, shuffled, some twice.
	for i, r := range s.replicas {
		for _, k := range s.rng.Perm(len(s.deltas)) {
			r = r.Join(s.deltas[k])
			if s.rng.IntN(5) == 0 {
				r = r.Join(s.deltas[s.rng.IntN(len(s.deltas))])
			}
		}
		if !r.Equal(full) || !bytes.Equal(s.mustEncode(r), want) {
			t.Fatalf("seed %d: replica %d after all deltas:\n%v\nfull-state join:\n%v", s.seed, i, r, full)
		}
	}
	// All deltas, in a random order and grouping, from nothing.
	perm := s.rng.Perm(len(s.deltas))
	var acc, group T
	for _, k := range perm {
		group = group.Join(s.deltas[k])
		if s.rng.IntN(4) == 0 {
			acc = acc.Join(group)
			var zero T
			group = zero
		}
	}
	acc = group.Join(acc)
	if !acc.Equal(full) || !bytes.Equal(s.mustEncode(acc), want) {
		t.Fatalf("seed %d: join of delta groups:\n%v\nfull-state join:\n%v", s.seed, acc, full)
	}
	// Late states change nothing.
	for _, old := range s.pool {
		if j := full.Join(old); !j.Equal(full) {
			t.Fatalf("seed %d: late state %v changed the converged one", s.seed, old)
		}
	}
	return full
}

func (s *deltaSim[T]) mustEncode(x T) []byte {
	s.t.Helper()
	b, err := x.MarshalBinary()
	if err != nil {
		s.t.Fatalf("seed %d: encode %v: %v", s.seed, x, err)
	}
	return b
}

// checkLaws checks the join laws, canonical encoding and the decode round
// trip on states and deltas reached by the history.
func (s *deltaSim[T]) checkLaws(triples int) {
	t := s.t
	t.Helper()
	pick := func() T { return s.pool[s.rng.IntN(len(s.pool))] }
	same := func(law string, x, y T) {
		t.Helper()
		if !x.Equal(y) || !bytes.Equal(s.mustEncode(x), s.mustEncode(y)) {
			t.Fatalf("seed %d: %s fails:\n%v\n%v", s.seed, law, x, y)
		}
	}
	for range triples {
		a, b, c := pick(), pick(), pick()
		same("commutativity", a.Join(b), b.Join(a))
		same("associativity", a.Join(b).Join(c), a.Join(b.Join(c)))
		same("idempotence", a.Join(a), a)
		same("absorption", a.Join(a.Join(b)), a.Join(b))
	}
	for _, x := range s.pool {
		enc := s.mustEncode(x)
		got, err := s.decode(enc)
		if err != nil {
			t.Fatalf("seed %d: decode %v: %v", s.seed, x, err)
		}
		if !got.Equal(x) || !bytes.Equal(s.mustEncode(got), enc) {
			t.Fatalf("seed %d: round trip of %v gives %v", s.seed, x, got)
		}
	}
}

func simSeeds(t *testing.T, n int) int {
	if testing.Short() {
		return n / 5
	}
	return n
}

func TestCounterDeltaConvergence(t *testing.T) {
	for seed := range uint64(simSeeds(t, 100)) {
		var sum int64
		s := newDeltaSim(t, seed, func(s *deltaSim[Counter], i int) Counter {
			n := int64(s.rng.IntN(21) - 8)
			sum += n
			d := s.replicas[i].Add(replicaActor(i), n)
			before, _ := s.replicas[i].Value()
			after, exact := s.replicas[i].Join(d).Value()
			if !exact || after != before+n {
				t.Fatalf("seed %d: %d + %d = %d (exact %v)", seed, before, n, after, exact)
			}
			return d
		}, func(b []byte) (Counter, error) { return DecodeCounter(b, Limits{}) })
		s.run(200)
		final := s.converge()
		if v, exact := final.Value(); v != sum || !exact {
			t.Fatalf("seed %d: converged to %d (exact %v), increments sum to %d", seed, v, exact, sum)
		}
		s.checkLaws(100)
	}
}

// setModel records every add's dot and every dot a mutation replaced or
// removed: the converged set holds exactly the added dots not killed.
type setModel struct {
	added  map[Dot]string
	killed map[Dot]bool
}

func setMutation(m *setModel, members []string) func(*deltaSim[ORSet], int) ORSet {
	return func(s *deltaSim[ORSet], i int) ORSet {
		cur := s.replicas[i]
		member := []byte(members[s.rng.IntN(len(members))])
		for _, d := range cur.Dots(member) {
			m.killed[d] = true
		}
		if s.rng.IntN(5) < 3 {
			d := cur.Add(replicaActor(i), member)
			for _, dt := range d.Dots(member) {
				m.added[dt] = string(member)
			}
			if next := cur.Join(d); !next.Contains(member) || len(next.Dots(member)) != 1 {
				s.t.Fatalf("seed %d: after add, %q has dots %v", s.seed, member, next.Dots(member))
			}
			return d
		}
		d := cur.Remove(member)
		if cur.Join(d).Contains(member) {
			s.t.Fatalf("seed %d: %q still there after a local remove", s.seed, member)
		}
		return d
	}
}

func TestSetDeltaConvergenceAgainstModel(t *testing.T) {
	var present, absent int
	for seed := range uint64(simSeeds(t, 100)) {
		m := &setModel{added: map[Dot]string{}, killed: map[Dot]bool{}}
		s := newDeltaSim(t, seed, setMutation(m, []string{"a", "b", "c", "", "\x00", "long member"}),
			func(b []byte) (ORSet, error) { return DecodeSet(b, Limits{}) })
		s.merge = (*ORSet).Merge
		s.run(250)
		final := s.converge()
		want := map[string][]Dot{}
		for d, member := range m.added {
			if !m.killed[d] {
				want[member] = append(want[member], d)
			}
		}
		for member, ds := range want {
			slices.SortFunc(ds, compareDots)
			if got := final.Dots([]byte(member)); !slices.Equal(got, ds) {
				t.Fatalf("seed %d: %q has dots %v, model says %v\n%v", seed, member, got, ds, final)
			}
		}
		if final.Len() != len(want) {
			t.Fatalf("seed %d: %d members, model says %d: %v", seed, final.Len(), len(want), final)
		}
		present += final.Len()
		absent += 6 - final.Len()
		s.checkLaws(100)
	}
	// The histories must be interesting: members end both ways.
	if present == 0 || absent == 0 {
		t.Fatalf("histories too tame: %d present, %d absent", present, absent)
	}
}

func TestMapDeltaConvergence(t *testing.T) {
	for seed := range uint64(simSeeds(t, 60)) {
		sums := map[string]int64{}
		counters := make([]uint64, 5)
		s := newDeltaSim(t, seed, func(s *deltaSim[Map], i int) Map {
			cur := s.replicas[i]
			name := []string{"x", "y", "z"}[s.rng.IntN(3)]
			member := []byte{'a' + byte(s.rng.IntN(3))}
			switch s.rng.IntN(5) {
			case 0:
				n := int64(s.rng.IntN(10) - 3)
				sums[name] += n
				return cur.AddCounter(replicaActor(i), name, n)
			case 1:
				return cur.AddMember(replicaActor(i), name, member)
			case 2:
				return cur.RemoveMember(name, member)
			default:
				counters[i] += 1 + uint64(s.rng.IntN(3))
				reg := cur.Register(name)
				return cur.WriteRegister(name, Dot{replicaActor(i), counters[i]}, reg.Context(), Timestamp(s.steps),
					[]byte(name), s.rng.IntN(4) == 0)
			}
		}, func(b []byte) (Map, error) { return DecodeMap(b, Limits{}) })
		s.merge = (*Map).Merge
		s.run(200)
		final := s.converge()
		for name, sum := range sums {
			if v, _ := final.Counter(name).Value(); v != sum {
				t.Fatalf("seed %d: counter field %q is %d, increments sum to %d", seed, name, v, sum)
			}
		}
		s.checkLaws(60)
	}
}
