//go:build race

package ring

// raceEnabled: the race detector slows this package's (single-threaded)
// figure tests tenfold, so they sample cluster sizes instead of trying all.
const raceEnabled = true
