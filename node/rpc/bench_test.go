package rpc

import (
	"testing"
	"time"
)

// BenchmarkCallParallel measures pipelined calls with 64-byte bodies over
// loopback TCP from b.N goroutines spread by RunParallel (tune with -cpu).
func BenchmarkCallParallel(b *testing.B) {
	for _, conns := range []int{1, 2} {
		b.Run(map[int]string{1: "conns=1", 2: "conns=2"}[conns], func(b *testing.B) {
			_, addr := tcpServer(b, echo, ServerOptions{})
			c := newClient(b, ClientOptions{ConnsPerPeer: conns})
			body := make([]byte, 64)
			if _, err := c.Call(bg, addr, 1, body); err != nil {
				b.Fatal(err)
			}
			b.SetParallelism(16) // many calls in flight per CPU, as a coordinator has
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.Call(bg, addr, 1, body); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
			st := c.Stats()
			b.ReportMetric(float64(st.FramesSent)/float64(max(1, st.Flushes)), "frames/flush")
		})
	}
}

// BenchmarkCallSerial is one call at a time: the round-trip latency.
func BenchmarkCallSerial(b *testing.B) {
	_, addr := tcpServer(b, echo, ServerOptions{})
	c := newClient(b, ClientOptions{})
	body := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Call(bg, addr, 1, body); err != nil {
			b.Fatal(err)
		}
	}
}
