package node

import (
	"os"
	"runtime"
)

// SetProcs raises GOMAXPROCS for a process that runs nodes, unless the
// GOMAXPROCS environment variable is set; it returns the value in effect.
//
// Every acknowledged write waits for a WAL fdatasync. The Go runtime lets
// a goroutine in a plain blocking syscall keep its P until sysmon takes it
// back, and sysmon checks only every 20 µs to 10 ms, so with GOMAXPROCS
// equal to a small core count the Ps sit in fsyncs while runnable
// goroutines wait. With two cores, four Ps gave 2.5 times the puts per
// second of two in the load benchmark (three in-process nodes, 50
// writers, fsync on; see docs/benchmarks.md). The OS still shares the
// cores; extra Ps only let other goroutines run while one waits on the
// disk. A library does not change this behind its caller's back:
// programs that embed nodes call it if they want it (the rumor agent and
// the benchmarks do).
func SetProcs() int {
	if os.Getenv("GOMAXPROCS") != "" {
		return runtime.GOMAXPROCS(0)
	}
	want := max(4, 2*runtime.NumCPU())
	if runtime.GOMAXPROCS(0) < want {
		runtime.GOMAXPROCS(want)
	}
	return runtime.GOMAXPROCS(0)
}
