package node

import (
	"context"
	"sync"
	"time"
)

// rateLimiter is a token bucket over bytes: wait blocks until n bytes may
// be sent. A rate of 0 or less means unlimited.
type rateLimiter struct {
	rate  float64 // bytes per second
	burst float64
	mu    struct {
		sync.Mutex
		tokens float64
		last   time.Time
	}
}

func newRateLimiter(bytesPerSecond int64) *rateLimiter {
	l := &rateLimiter{rate: float64(bytesPerSecond), burst: max(float64(bytesPerSecond)/4, 1<<20)}
	l.mu.tokens = l.burst
	l.mu.last = time.Now()
	return l
}

func (l *rateLimiter) wait(ctx context.Context, n int) error {
	if l == nil || l.rate <= 0 {
		return nil
	}
	l.mu.Lock()
	now := time.Now()
	l.mu.tokens = min(l.burst, l.mu.tokens+now.Sub(l.mu.last).Seconds()*l.rate)
	l.mu.last = now
	l.mu.tokens -= float64(n)
	deficit := -l.mu.tokens
	l.mu.Unlock()
	if deficit <= 0 {
		return nil
	}
	t := time.NewTimer(time.Duration(deficit / l.rate * float64(time.Second)))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
