package crdt

import (
	"fmt"
	"sync"
	"time"
)

// Timestamp is a hybrid logical clock reading: Unix milliseconds in the high
// 48 bits, a logical counter in the low 16. Timestamps compare as integers.
type Timestamp uint64

const (
	logicalBits = 16
	maxMillis   = 1<<(64-logicalBits) - 1
)

// MaxDrift is how far ahead of local physical time a remote timestamp may be
// for [Clock.Update] to adopt it. A timestamp further ahead is ignored, so a
// forged or badly skewed one cannot drag the clock into the future.
const MaxDrift = 10 * time.Minute

// MakeTimestamp returns the timestamp with physical part t (Unix
// milliseconds, clamped to the representable range) and logical part l.
func MakeTimestamp(t time.Time, l uint16) Timestamp {
	return Timestamp(millis(t)<<logicalBits | uint64(l))
}

func millis(t time.Time) uint64 {
	ms := t.UnixMilli()
	switch {
	case ms < 0:
		return 0
	case uint64(ms) > maxMillis:
		return maxMillis
	}
	return uint64(ms)
}

// Time returns the physical part of t.
func (t Timestamp) Time() time.Time { return time.UnixMilli(int64(t >> logicalBits)) }

// Logical returns the logical part of t.
func (t Timestamp) Logical() uint16 { return uint16(t) }

// String formats t as RFC 3339 time (UTC, milliseconds) plus "+logical".
func (t Timestamp) String() string {
	return fmt.Sprintf("%s+%d", t.Time().UTC().Format("2006-01-02T15:04:05.000Z"), t.Logical())
}

// Clock is a hybrid logical clock: it follows physical time, never goes
// backwards, and moves past every timestamp it has seen from others. It is
// safe for concurrent use.
type Clock struct {
	now func() time.Time

	mu struct {
		sync.Mutex
		last Timestamp
	}
}

// NewClock returns a clock reading physical time from now (time.Now in
// production, a fake in tests).
func NewClock(now func() time.Time) *Clock {
	return &Clock{now: now}
}

// Now returns a timestamp greater than every timestamp this clock returned
// before and every one it adopted with Update. When physical time does not
// advance (or goes backwards), the logical part counts up; if that
// overflows, the carry moves the physical part one millisecond ahead.
func (c *Clock) Now() Timestamp {
	pt := MakeTimestamp(c.now(), 0)
	c.mu.Lock()
	defer c.mu.Unlock()
	if pt > c.mu.last {
		c.mu.last = pt
	} else {
		c.mu.last++
	}
	return c.mu.last
}

// Update applies the HLC receive rule: later calls to Now return timestamps
// greater than remote. A remote timestamp more than MaxDrift ahead of local
// physical time is ignored.
func (c *Clock) Update(remote Timestamp) {
	limit := MakeTimestamp(c.now().Add(MaxDrift), 1<<logicalBits-1)
	if remote > limit {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if remote > c.mu.last {
		c.mu.last = remote
	}
}
