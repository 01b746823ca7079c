package crdt

import (
	"fmt"
	"testing"
)

// benchRegister has siblings versions from different actors, each with a
// context over ctxActors actors and a value of valueSize bytes: a typical
// key after a partition healed.
func benchRegister(siblings, ctxActors, valueSize int) Register {
	var r Register
	for i := range siblings {
		ctx := VV{}
		for a := range ctxActors {
			ctx[ActorID(0x1000+a)] = uint64(1000 * (a + 1))
		}
		actor := ActorID(0x9e3779b97f4a7c15 * uint64(i+1))
		r = r.Join(Register{}.Write(Dot{actor, uint64(5000 + i)}, ctx, Timestamp(i), make([]byte, valueSize), false))
	}
	return r
}

func BenchmarkJoin(b *testing.B) {
	for _, n := range []int{1, 3, 10} {
		x := benchRegister(n, 5, 100)
		y := benchRegister(n+1, 5, 100)
		b.Run(fmt.Sprintf("siblings=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				x.Join(y)
			}
		})
	}
}

func BenchmarkWrite(b *testing.B) {
	r := benchRegister(3, 5, 100)
	ctx := r.Context()
	value := make([]byte, 100)
	b.ReportAllocs()
	for b.Loop() {
		r.Write(Dot{1, 1 << 40}, ctx, 1, value, false)
	}
}

func BenchmarkMarshal(b *testing.B) {
	r := benchRegister(3, 5, 100)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.MarshalBinary(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	enc, err := benchRegister(3, 5, 100).MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeRegister(enc, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

// benchActor spreads actor ids as random node ids are.
func benchActor(i int) ActorID { return ActorID(0x9e3779b97f4a7c15 * uint64(i+1)) }

func benchMember(i int) string { return fmt.Sprintf("member-%08d", i) }

// bigSet builds a set of n members added by 8 actors, member i with the
// dot (actor i%8, i/8+1), without paying for n joins.
func bigSet(n int) ORSet {
	s := ORSet{entries: make(map[string][]Dot, n), ctx: DotContext{vv: VV{}}}
	for i := range n {
		d := Dot{benchActor(i % 8), uint64(i/8 + 1)}
		s.entries[benchMember(i)] = []Dot{d}
		s.ctx.vv.add(d)
	}
	return s
}

func BenchmarkSet100k(b *testing.B) {
	s := bigSet(100_000)
	// Another replica: the same set with 1% of the members removed and 1%
	// added by a fifth actor.
	o := s.Join(ORSet{})
	for i := range 1000 {
		o.Merge(o.Remove([]byte(benchMember(i * 97))))
		o.Merge(o.Add(benchActor(9), []byte(benchMember(100_000+i))))
	}
	delta := s.Add(benchActor(3), []byte("one more member"))
	enc, err := s.MarshalBinary()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Join", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.Join(o)
		}
	})
	b.Run("JoinDelta", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.Join(delta)
		}
	})
	b.Run("MergeAddRemove", func(b *testing.B) {
		c := s.Join(ORSet{})
		c.Merge(ORSet{}) // builds the dot index once
		i := 0
		b.ReportAllocs()
		for b.Loop() { // a write: a new member's delta, then a remove's
			i++
			m := []byte(benchMember(200_000 + i))
			c.Merge(c.Add(benchActor(i%8), m))
			c.Merge(c.Remove(m))
		}
	})
	b.Run("Marshal", func(b *testing.B) {
		b.SetBytes(int64(len(enc)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.MarshalBinary(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("MarshalDelta", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			d, err := delta.MarshalBinary()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(len(d)), "delta-bytes")
		}
	})
	b.Run("Decode", func(b *testing.B) {
		b.SetBytes(int64(len(enc)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeSet(enc, Limits{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkCounterJoin(b *testing.B) {
	x, y := Counter{}, Counter{}
	for i := range 16 {
		x[benchActor(i)] = PN{Inc: uint64(i), Dec: 1}
		y[benchActor(i+4)] = PN{Inc: uint64(2 * i)}
	}
	b.ReportAllocs()
	for b.Loop() {
		x.Join(y)
	}
}

// BenchmarkSetPartitionHeal reports the bytes a 100k-member set's heal
// ships as delta groups, per byte of changed members (the issue asks for at
// most 2).
func BenchmarkSetPartitionHeal(b *testing.B) {
	for b.Loop() {
		r := partitionHeal(b, 100_000, 1500)
		b.ReportMetric(float64(r.sent), "sent-bytes")
		b.ReportMetric(float64(r.sent)/float64(r.changed), "sent/changed")
	}
}
