//go:build race

package node

// raceEnabled: the race detector slows these tests about tenfold; the
// largest measurements run at full size only without it.
const raceEnabled = true
