package crdt

import (
	"sync"
	"testing"
	"time"
)

// fakeTime is a settable clock for tests.
type fakeTime struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeTime) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeTime) set(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = t
}

var epoch = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func TestTimestamp(t *testing.T) {
	ts := MakeTimestamp(epoch.Add(1234*time.Microsecond), 7)
	if got, want := ts.Time(), epoch.Add(time.Millisecond); !got.Equal(want) {
		t.Errorf("Time() = %v, want %v (milliseconds, truncated)", got, want)
	}
	if ts.Logical() != 7 {
		t.Errorf("Logical() = %d, want 7", ts.Logical())
	}
	if got, want := ts.String(), "2026-05-01T12:00:00.001Z+7"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if MakeTimestamp(time.Unix(-5, 0), 0) != 0 {
		t.Error("time before 1970 is not clamped to 0")
	}
	if MakeTimestamp(epoch, 0xffff) >= MakeTimestamp(epoch.Add(time.Millisecond), 0) {
		t.Error("logical part overflows into the next millisecond")
	}
}

func TestClockMonotonic(t *testing.T) {
	ft := &fakeTime{t: epoch}
	c := NewClock(ft.now)
	var last Timestamp
	step := func(what string) {
		t.Helper()
		ts := c.Now()
		if ts <= last {
			t.Fatalf("%s: Now() = %v after %v", what, ts, last)
		}
		last = ts
	}
	step("first")
	if want := MakeTimestamp(epoch, 0); last != want {
		t.Fatalf("first reading %v, want physical time %v", last, want)
	}
	step("same millisecond")
	if last.Logical() != 1 {
		t.Fatalf("same millisecond: logical %d, want 1", last.Logical())
	}
	ft.set(epoch.Add(-time.Hour))
	for range 3 {
		step("clock went backwards")
	}
	if !last.Time().Equal(epoch) {
		t.Fatalf("clock followed physical time backwards: %v", last)
	}
	ft.set(epoch.Add(time.Second))
	step("clock moved forward")
	if last != MakeTimestamp(epoch.Add(time.Second), 0) {
		t.Fatalf("did not follow physical time forward: %v", last)
	}
	// Logical overflow carries into the physical part, still increasing.
	for range 1 << 16 {
		step("logical overflow")
	}
	if !last.Time().After(epoch.Add(time.Second)) {
		t.Fatalf("logical overflow did not carry: %v", last)
	}
}

func TestClockUpdate(t *testing.T) {
	ft := &fakeTime{t: epoch}
	tests := []struct {
		name    string
		remote  Timestamp
		adopted bool
	}{
		{"behind", MakeTimestamp(epoch.Add(-time.Minute), 5), false},
		{"ahead", MakeTimestamp(epoch.Add(time.Minute), 5), true},
		{"ahead at the drift bound", MakeTimestamp(epoch.Add(MaxDrift), 0xffff), true},
		{"beyond the drift bound", MakeTimestamp(epoch.Add(MaxDrift+time.Millisecond), 0), false},
		{"forged far future", Timestamp(^uint64(0)), false},
	}
	for _, tt := range tests {
		c := NewClock(ft.now)
		before := c.Now()
		c.Update(tt.remote)
		got := c.Now()
		if got <= before {
			t.Errorf("%s: Now() %v not after %v", tt.name, got, before)
		}
		if tt.adopted && got != tt.remote+1 {
			t.Errorf("%s: Now() = %v, want just after remote %v", tt.name, got, tt.remote)
		}
		if !tt.adopted && got != before+1 {
			t.Errorf("%s: Now() = %v, want %v (remote ignored)", tt.name, got, before+1)
		}
	}
	// An ignored forged timestamp becomes acceptable once physical time
	// catches up with it.
	c := NewClock(ft.now)
	far := MakeTimestamp(epoch.Add(time.Hour), 3)
	c.Update(far)
	if c.Now() > far {
		t.Fatal("adopted a timestamp an hour ahead")
	}
	ft.set(epoch.Add(time.Hour - MaxDrift))
	c.Update(far)
	if c.Now() <= far {
		t.Fatal("did not adopt a timestamp within the drift bound")
	}
}

func TestClockConcurrent(t *testing.T) {
	ft := &fakeTime{t: epoch}
	c := NewClock(ft.now)
	const goroutines, each = 4, 500
	out := make(chan []Timestamp, goroutines)
	for g := range goroutines {
		go func() {
			var ts []Timestamp
			for i := range each {
				if i%50 == 0 {
					c.Update(MakeTimestamp(epoch.Add(time.Duration(g)*time.Millisecond), 9))
				}
				ts = append(ts, c.Now())
			}
			out <- ts
		}()
	}
	seen := map[Timestamp]bool{}
	for range goroutines {
		ts := <-out
		for i, x := range ts {
			if i > 0 && x <= ts[i-1] {
				t.Fatalf("not increasing within a goroutine: %v after %v", x, ts[i-1])
			}
			if seen[x] {
				t.Fatalf("timestamp %v returned twice", x)
			}
			seen[x] = true
		}
	}
}
