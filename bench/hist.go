package main

import (
	"math"
	"math/bits"
	"time"
)

// histogram records durations in log-linear buckets, as HdrHistogram does:
// values below 2^(subBits+1) ns have a bucket each; above, every power of
// two is cut into 2^subBits equal buckets, so a bucket's width is at most
// 1/128 (0.8%) of the values in it. Recording is a few instructions and
// never allocates; one histogram per worker, merged at the end. The zero
// value is not usable: call newHistogram.
type histogram struct {
	counts   []uint64
	n        uint64
	sum      float64 // nanoseconds
	min, max uint64
}

const (
	subBits  = 7
	subCount = 1 << subBits
	// maxBucket covers values up to 2^63 ns (292 years).
	maxBucket = (64-subBits)*subCount + subCount
)

func newHistogram() *histogram {
	return &histogram{counts: make([]uint64, maxBucket), min: math.MaxUint64}
}

// bucketOf returns the bucket of v nanoseconds.
func bucketOf(v uint64) int {
	e := bits.Len64(v) - subBits - 1
	if e <= 0 {
		return int(v)
	}
	return e<<subBits + int(v>>uint(e))
}

// bucketHigh returns the largest value in bucket i (HdrHistogram's
// "highest equivalent value"): percentiles are reported as this, so they
// never understate.
func bucketHigh(i int) uint64 {
	if i < 2*subCount {
		return uint64(i)
	}
	e := i>>subBits - 1
	sub := uint64(i - e<<subBits) // in [subCount, 2*subCount)
	return (sub+1)<<uint(e) - 1
}

// record adds one observation.
func (h *histogram) record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[bucketOf(v)]++
	h.n++
	h.sum += float64(v)
	h.min = min(h.min, v)
	h.max = max(h.max, v)
}

// merge adds every observation of o to h.
func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// quantile returns the value at quantile q in [0, 1]: the smallest bucket
// bound with at least ceil(q·n) observations at or below it, capped at the
// exact maximum.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(bucketHigh(i), h.max))
		}
	}
	return time.Duration(h.max)
}

func (h *histogram) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// latencySummary is a histogram's report, in milliseconds.
type latencySummary struct {
	Count  uint64  `json:"count"`
	MeanMS float64 `json:"mean_ms"`
	MinMS  float64 `json:"min_ms"`
	P50MS  float64 `json:"p50_ms"`
	P95MS  float64 `json:"p95_ms"`
	P99MS  float64 `json:"p99_ms"`
	P999MS float64 `json:"p999_ms"`
	MaxMS  float64 `json:"max_ms"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func (h *histogram) summary() latencySummary {
	if h.n == 0 {
		return latencySummary{}
	}
	return latencySummary{
		Count:  h.n,
		MeanMS: ms(h.mean()),
		MinMS:  ms(time.Duration(h.min)),
		P50MS:  ms(h.quantile(0.50)),
		P95MS:  ms(h.quantile(0.95)),
		P99MS:  ms(h.quantile(0.99)),
		P999MS: ms(h.quantile(0.999)),
		MaxMS:  ms(time.Duration(h.max)),
	}
}

// spectrum returns (quantile, latency) points for a percentile plot: a few
// points per decade of 1/(1-q) up to the maximum.
func (h *histogram) spectrum() (qs []float64, lat []time.Duration) {
	if h.n == 0 {
		return nil, nil
	}
	for _, q := range []float64{0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99999} {
		if q > 0 && 1/(1-q) > float64(h.n) {
			break
		}
		qs = append(qs, q)
		lat = append(lat, h.quantile(q))
	}
	return qs, lat
}
