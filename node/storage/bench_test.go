package storage

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
)

// BenchmarkUpdateSync measures synced Updates of distinct keys from many
// goroutines on a real disk: pebble's group commit covers concurrent
// writes with one fsync, so ops/s grows with the number of writers. It
// reports ops/s and writes/fsync.
//
//	go test -run='^$' -bench=UpdateSync -cpu 2 ./node/storage
func BenchmarkUpdateSync(b *testing.B) {
	procs := runtime.GOMAXPROCS(0)
	for _, g := range []int{2, 16, 64} {
		p := max(1, g/procs) // RunParallel starts p*GOMAXPROCS goroutines
		b.Run(fmt.Sprint("goroutines=", p*procs), func(b *testing.B) {
			s, err := Open(Options{Dir: b.TempDir(), Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			value := make([]byte, 100)
			var next atomic.Uint64
			before := s.Metrics()
			b.SetParallelism(p)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					k := binary.BigEndian.AppendUint64([]byte("bench-"), next.Add(1))
					_, err := s.Update(k, func([]byte, bool) ([]byte, bool, error) { return value, true, nil })
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			after := s.Metrics()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
			if syncs := after.WALSyncs - before.WALSyncs; syncs > 0 {
				b.ReportMetric(float64(after.SyncedWrites-before.SyncedWrites)/float64(syncs), "writes/fsync")
				b.ReportMetric(float64(after.WALSyncLatency.Microseconds()), "µs/fsync")
			}
		})
	}
}
