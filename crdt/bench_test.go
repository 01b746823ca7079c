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
