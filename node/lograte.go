package node

import (
	"sync"
	"time"
)

// logRepeatEvery is how often a recurring log line (a hot key's siblings, a
// failing disk seen by every write, anti-entropy repairs) is written at
// most; the lines held back in between are counted in the next one.
const logRepeatEvery = time.Minute

// logLimiter lets a recurring log line through at most once per interval
// so that no event that can happen per request floods the log. The zero
// value is ready to use.
type logLimiter struct {
	mu struct {
		sync.Mutex
		last   time.Time
		events int // held back since last, plus the current one
		sum    int
	}
}

// note records an event with amount and reports whether to log it now; if
// so, events and sum cover every event since the last logged one, this one
// included.
func (l *logLimiter) note(every time.Duration, amount int) (ok bool, events, sum int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mu.events++
	l.mu.sum += amount
	now := time.Now()
	if !l.mu.last.IsZero() && now.Sub(l.mu.last) < every {
		return false, 0, 0
	}
	events, sum = l.mu.events, l.mu.sum
	l.mu.last, l.mu.events, l.mu.sum = now, 0, 0
	return true, events, sum
}

// logLimits holds the node's limiters, one per recurring line.
type logLimits struct {
	siblings   logLimiter
	hintStore  logLimiter
	readRepair logLimiter
	aeRepaired logLimiter
	seeds      logLimiter
}
