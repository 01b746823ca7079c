package crdt

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// The property tests run random histories of one key on 3–5 replicas the
// way the node layer runs them: replica i's actor writes only on replica
// i's copy (with a client context from a read of that copy, an older read,
// a read at another replica clamped to what this copy holds, or none), a
// counter that skips values (other keys use them), one-off actors that
// write once, and whole states travelling between replicas with duplicates,
// reordering and delays. A model records each write's dot and the dots its
// writer saw; after a full exchange the replicas must hold exactly the
// writes no other write saw.

// simWrite is the model's record of one write.
type simWrite struct {
	dot     Dot
	saw     []Dot // versions (live and tombstones) of the copy the writer read
	value   []byte
	deleted bool
}

type simMsg struct {
	to    int
	state Register
}

type sim struct {
	t        *testing.T
	rng      *rand.Rand
	replicas []Register
	reads    [][]Register // recent reads of each replica's own copy
	counter  []uint64     // each replica's actor's last counter (for all keys)
	writes   map[Dot]simWrite
	byActor  map[ActorID][]Dot // each actor's dots for the key, in order
	net      []simMsg
	pool     []Register // states reached at some point, for the join laws
	hlc      Timestamp
	oneOffs  int
	steps    int
}

func newSim(t *testing.T, seed uint64) *sim {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	n := 3 + rng.IntN(3)
	return &sim{
		t:        t,
		rng:      rng,
		replicas: make([]Register, n),
		reads:    make([][]Register, n),
		counter:  make([]uint64, n),
		writes:   map[Dot]simWrite{},
		byActor:  map[ActorID][]Dot{},
	}
}

// replicaActor gives replicas large, spread-out ids (as random node ids
// are) so encodings use every integer width.
func replicaActor(i int) ActorID { return ActorID(uint64(i+1) * 0x9e3779b97f4a7c15 >> (8 * (i % 4))) }

func (s *sim) run(steps int) {
	for range steps {
		s.step()
	}
}

func (s *sim) step() {
	s.steps++
	n := len(s.replicas)
	i, j := s.rng.IntN(n), s.rng.IntN(n)
	switch x := s.rng.IntN(100); {
	case x < 26:
		s.write(i, s.replicas[i], false)
	case x < 32:
		s.write(i, s.staleRead(i), false)
	case x < 38:
		s.write(i, Register{}, false) // no context
	case x < 44:
		s.write(i, s.replicas[j], false) // a client read elsewhere
	case x < 48:
		s.write(i, s.replicas[s.rng.IntN(n)], true)
	case x < 52:
		s.oneOff(i)
	case x < 70:
		s.net = append(s.net, simMsg{to: j, state: s.replicas[i]})
	case x < 92:
		s.deliver()
	default:
		s.replicas[j] = s.replicas[j].Join(s.replicas[i])
		s.pool = append(s.pool, s.replicas[j])
	}
	s.checkReplicas()
}

func (s *sim) staleRead(i int) Register {
	if len(s.reads[i]) == 0 {
		return Register{}
	}
	return s.reads[i][s.rng.IntN(len(s.reads[i]))]
}

// write makes replica i's actor write with the context of read, clamped to
// what replica i holds, as the node's coordinator does. A partial context
// lacks some actors (a client that trimmed or mangled it): it covers some
// versions but not the versions those superseded, which only the closure in
// Write keeps superseded.
func (s *sim) write(i int, read Register, partial bool) {
	cur := s.replicas[i]
	s.reads[i] = append(s.reads[i], cur)
	if len(s.reads[i]) > 6 {
		s.reads[i] = s.reads[i][1:]
	}
	s.counter[i] += 1 + uint64(s.rng.IntN(4)) // skipped counters went to other keys
	dot := Dot{replicaActor(i), s.counter[i]}
	ctx := read.Context().Meet(cur.Context())
	if partial {
		for a := range ctx {
			if s.rng.IntN(2) == 0 {
				delete(ctx, a)
			}
		}
	}
	var saw []Dot
	for _, v := range read.Versions {
		if ctx.Covers(v.Dot) {
			saw = append(saw, v.Dot)
		}
	}
	s.replicas[i] = cur.Write(dot, ctx, s.tick(), s.record(dot, saw), s.deleted(dot))
	s.pool = append(s.pool, s.replicas[i])
}

// oneOff is a write a node coordinates under a fresh actor because no
// replica was reachable: a blind write joined into replica i.
func (s *sim) oneOff(i int) {
	s.oneOffs++
	dot := Dot{ActorID(0xffff0000 + s.oneOffs), 1}
	reg := Register{}.Write(dot, nil, s.tick(), s.record(dot, nil), s.deleted(dot))
	s.replicas[i] = s.replicas[i].Join(reg)
	s.pool = append(s.pool, reg, s.replicas[i])
}

func (s *sim) tick() Timestamp {
	s.hlc += Timestamp(1 + s.rng.IntN(3))
	return s.hlc
}

func (s *sim) record(dot Dot, saw []Dot) []byte {
	value := []byte(dot.String())
	if s.rng.IntN(5) == 0 {
		value = []byte{} // empty values are values, not tombstones
	}
	s.writes[dot] = simWrite{dot: dot, saw: saw, value: value}
	s.byActor[dot.Actor] = append(s.byActor[dot.Actor], dot)
	return value
}

func (s *sim) deleted(dot Dot) bool {
	del := s.rng.IntN(4) == 0
	w := s.writes[dot]
	w.deleted = del
	if del {
		w.value = nil
	}
	s.writes[dot] = w
	return del
}

// deliver joins one message in flight into its target; a third of the time
// the message stays in flight and will be delivered again.
func (s *sim) deliver() {
	if len(s.net) == 0 {
		return
	}
	k := s.rng.IntN(len(s.net))
	m := s.net[k]
	s.replicas[m.to] = s.replicas[m.to].Join(m.state)
	s.pool = append(s.pool, s.replicas[m.to])
	if s.rng.IntN(3) != 0 {
		s.net = slices.Delete(s.net, k, k+1)
	}
}

// checkReplicas checks that every replica is canonical and keeps the
// invariant contexts rely on: a state holding A:x holds or supersedes every
// earlier dot of A. A failure here means the simulation does not model the
// node layer, not that the register is wrong.
func (s *sim) checkReplicas() {
	s.t.Helper()
	for i, r := range s.replicas {
		if err := r.check(); err != nil {
			s.t.Fatalf("step %d: replica %d not canonical: %v\n%v", s.steps, i, err, r)
		}
		superseded := VV{}
		held := map[Dot]bool{}
		for _, v := range r.Versions {
			superseded.joinInPlace(v.Ctx)
			held[v.Dot] = true
		}
		for _, v := range r.Versions {
			for _, d := range s.byActor[v.Dot.Actor] {
				if d.Counter >= v.Dot.Counter {
					break
				}
				if !held[d] && !superseded.Covers(d) {
					s.t.Fatalf("step %d: replica %d holds %v but neither holds nor supersedes %v\n%v",
						s.steps, i, v.Dot, d, r)
				}
			}
		}
	}
}

// exchange delivers everything in flight, in random order, then gossips
// twice around the ring: afterwards every replica has seen every state.
func (s *sim) exchange() {
	for _, k := range s.rng.Perm(len(s.net)) {
		m := s.net[k]
		s.replicas[m.to] = s.replicas[m.to].Join(m.state)
	}
	n := len(s.replicas)
	for range 2 {
		for i := range n {
			next := (i + 1) % n
			s.replicas[next] = s.replicas[next].Join(s.replicas[i])
		}
	}
}

// expected returns the writes no other write saw, sorted by dot.
func (s *sim) expected() []simWrite {
	seen := map[Dot]bool{}
	for _, w := range s.writes {
		for _, d := range w.saw {
			seen[d] = true
		}
	}
	var out []simWrite
	for _, w := range s.writes {
		if !seen[w.dot] {
			out = append(out, w)
		}
	}
	slices.SortFunc(out, func(a, b simWrite) int { return compareDots(a.dot, b.dot) })
	return out
}

func TestConvergenceAgainstModel(t *testing.T) {
	seeds, steps := 300, 250
	if testing.Short() {
		seeds = 50
	}
	var versions, live, tombstones int
	for seed := range uint64(seeds) {
		s := newSim(t, seed)
		s.run(steps)
		s.exchange()
		final := s.verify(seed)
		versions += len(final.Versions)
		live += len(final.Live())
		tombstones += len(final.Versions) - len(final.Live())

		// A delete that saw everything leaves one dominating tombstone,
		// even when written with a stale context at one replica while
		// old states are still in flight.
		i := s.rng.IntN(len(s.replicas))
		s.net = append(s.net, simMsg{to: (i + 1) % len(s.replicas), state: s.pool[s.rng.IntN(len(s.pool))]})
		s.counter[i]++
		dot := Dot{replicaActor(i), s.counter[i]}
		s.writes[dot] = simWrite{dot: dot, saw: dots(s.replicas[i].Versions), deleted: true}
		s.replicas[i] = s.replicas[i].Write(dot, s.replicas[i].Context(), s.tick(), nil, true)
		s.exchange()
		final = s.verify(seed)
		if len(final.Live()) != 0 || !final.Tombstoned() || len(final.Versions) != 1 || final.Versions[0].Dot != dot {
			t.Fatalf("seed %d: after a delete that saw everything: %v", seed, final)
		}
	}
	// The histories must be interesting: siblings and tombstones survive.
	t.Logf("%d histories: %d surviving versions, %d live, %d tombstones", seeds, versions, live, tombstones)
	if live <= seeds || tombstones < seeds/10 {
		t.Fatalf("histories too tame: %d versions, %d live, %d tombstones", versions, live, tombstones)
	}
}

// verify checks that all replicas are identical (as values and as bytes),
// that they hold exactly the writes the model says no other write saw, and
// that late, duplicate or reordered deliveries of any earlier state change
// nothing. It returns the converged state.
func (s *sim) verify(seed uint64) Register {
	t := s.t
	t.Helper()
	final := s.replicas[0]
	want, err := final.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range s.replicas {
		got, err := r.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !r.Equal(final) || !bytes.Equal(got, want) {
			t.Fatalf("seed %d: replica %d differs after full exchange:\n%v\n%v", seed, i, r, final)
		}
	}
	exp := s.expected()
	if len(exp) != len(final.Versions) {
		t.Fatalf("seed %d: %d versions survive, model says %d\ngot  %v\nwant %v",
			seed, len(final.Versions), len(exp), dots(final.Versions), expDots(exp))
	}
	for k, w := range exp {
		v := final.Versions[k]
		if v.Dot != w.dot || v.Deleted != w.deleted || !bytes.Equal(v.Value, w.value) {
			t.Fatalf("seed %d: version %d is %v, model says %v %q deleted=%v",
				seed, k, v, w.dot, w.value, w.deleted)
		}
	}
	for _, old := range s.pool {
		if j := final.Join(old); !j.Equal(final) {
			t.Fatalf("seed %d: a late old state changed the converged one:\nold %v\ngot %v", seed, old, j)
		}
	}
	return final
}

func expDots(ws []simWrite) []Dot {
	out := make([]Dot, len(ws))
	for i, w := range ws {
		out[i] = w.dot
	}
	return out
}

// The join laws on states reached by random histories.
func TestJoinLaws(t *testing.T) {
	seeds, triples := 60, 300
	if testing.Short() {
		seeds = 10
	}
	for seed := range uint64(seeds) {
		s := newSim(t, 1000+seed)
		s.run(200)
		pool := s.pool
		pick := func() Register { return pool[s.rng.IntN(len(pool))] }
		same := func(law string, x, y Register) {
			t.Helper()
			bx, err1 := x.MarshalBinary()
			by, err2 := y.MarshalBinary()
			if err1 != nil || err2 != nil || !x.Equal(y) || !bytes.Equal(bx, by) {
				t.Fatalf("seed %d: %s fails:\n%v\n%v (%v %v)", seed, law, x, y, err1, err2)
			}
		}
		for range triples {
			a, b, c := pick(), pick(), pick()
			same("commutativity", a.Join(b), b.Join(a))
			same("associativity", a.Join(b).Join(c), a.Join(b.Join(c)))
			same("idempotence", a.Join(a), a)
			same("absorption", a.Join(a.Join(b)), a.Join(b))
			if err := a.Join(b).check(); err != nil {
				t.Fatalf("seed %d: join not canonical: %v", seed, err)
			}
		}
	}
}

// A write is inflationary: the new state absorbs the old one, so a late
// copy of the old state cannot undo it.
func TestWriteInflationary(t *testing.T) {
	s := newSim(t, 77)
	for range 300 {
		before := slices.Clone(s.replicas)
		s.step()
		for i, r := range s.replicas {
			if j := r.Join(before[i]); !j.Equal(r) {
				t.Fatalf("step %d: replica %d lost ground: %v ⊔ %v = %v", s.steps, i, r, before[i], j)
			}
			if !r.Context().Descends(before[i].Context()) {
				t.Fatalf("step %d: replica %d context shrank", s.steps, i)
			}
		}
	}
}

func ExampleRegister() {
	// Two clients write concurrently at different replicas: siblings.
	a := Register{}.Write(Dot{Actor: 1, Counter: 1}, nil, 1, []byte("blue"), false)
	b := Register{}.Write(Dot{Actor: 2, Counter: 1}, nil, 2, []byte("green"), false)
	merged := a.Join(b)
	for _, v := range merged.Live() {
		fmt.Printf("%s\n", v.Value)
	}
	// A write with the read's context supersedes both.
	resolved := merged.Write(Dot{Actor: 1, Counter: 9}, merged.Context(), 3, []byte("teal"), false)
	fmt.Println(resolved)
	// Output:
	// blue
	// green
	// [0000000000000001:9{0000000000000001:1 0000000000000002:1}="teal"]
}
