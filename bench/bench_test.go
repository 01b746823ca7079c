package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"testing"
	"time"
)

// runApp runs the program as the shell would and returns its output; it
// fails the test on a non-zero exit.
func runApp(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := run(append([]string{"bench"}, args...), &out, &errOut); code != 0 {
		t.Fatalf("bench %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out.String(), errOut.String())
	}
	return out.String()
}

func readJSON(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func checkImage(t *testing.T, name, magic string) {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b[:min(len(b), 512)], []byte(magic)) {
		t.Fatalf("%s does not look like %s: %q", name, magic, b[:min(len(b), 32)])
	}
}

func TestRebalance(t *testing.T) {
	dir := t.TempDir()
	js, png := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.png")
	out := runApp(t, "rebalance", "--from", "3", "--to", "8", "--vnodes", "256", "--keys", "20000",
		"--json", js, "--plot", png)
	if !strings.Contains(out, "7→8") || !strings.Contains(out, "sampled check") {
		t.Fatalf("summary lacks the table:\n%s", out)
	}
	checkImage(t, png, "PNG")
	var res rebalanceResult
	readJSON(t, js, &res)
	if len(res.Steps) != 5 {
		t.Fatalf("%d steps, want 5", len(res.Steps))
	}
	for _, s := range res.Steps {
		n := float64(s.From)
		if math.Abs(s.Moved.ModN-n/(n+1)) > 1e-12 {
			t.Errorf("%d→%d: mod-N moved %v, want %v", s.From, s.To, s.Moved.ModN, n/(n+1))
		}
		if math.Abs(s.Ideal-1/(n+1)) > 1e-12 {
			t.Errorf("%d→%d: ideal %v", s.From, s.To, s.Ideal)
		}
		// 256 vnodes: the new node takes close to its fair share, and only
		// that moves.
		if math.Abs(s.Moved.VNodes-s.Ideal) > 0.05 {
			t.Errorf("%d→%d: vnodes moved %v, ideal %v", s.From, s.To, s.Moved.VNodes, s.Ideal)
		}
		if s.Moved.Ring < 0 || s.Moved.Ring > 1 || s.Imbalance.Ring < 1 || s.Imbalance.VNodes < 1 || s.Imbalance.VNodes > 1.5 {
			t.Errorf("%d→%d: implausible %+v %+v", s.From, s.To, s.Moved, s.Imbalance)
		}
		// Consistent hashing moves keys only to the new node: the replica
		// sets change by at most what the primaries do, per replica.
		if s.MovedReplicas.VNodes <= 0 || s.MovedReplicas.VNodes > 1 {
			t.Errorf("%d→%d: moved replicas %v", s.From, s.To, s.MovedReplicas.VNodes)
		}
	}
	// Real keys agree with the exact figures within sampling error (5σ,
	// plus a leaf of slack for the rings).
	d := res.SampledMaxDiff
	if d == nil {
		t.Fatal("no sampled check")
	}
	if lim := 5*res.SampledSigma + 1e-5; d.ModN > lim || d.Ring > lim || d.VNodes > lim {
		t.Errorf("sampled differs from exact by %+v (limit %v)", *d, lim)
	}

	svg := filepath.Join(dir, "r.svg")
	runApp(t, "rebalance", "--to", "5", "--vnodes", "64", "--keys", "0", "--trials", "3", "--plot", svg)
	checkImage(t, svg, "<svg")
}

func TestModNExact(t *testing.T) {
	for n := 1; n < 200; n++ {
		if got, want := modNMoved(n), 1-1/float64(n+1); math.Abs(got-want) > 1e-15 {
			t.Errorf("modNMoved(%d) = %v, want %v", n, got, want)
		}
		if got := modNImbalance(n); got < 1 || got > 1+1e-15 {
			t.Errorf("modNImbalance(%d) = %v", n, got)
		}
	}
	// Brute force on a small space the formula generalizes: of 0..P-1 with
	// P = n(n+1), exactly n stay.
	for n := 1; n < 30; n++ {
		stay := 0
		for h := 0; h < n*(n+1); h++ {
			if h%n == h%(n+1) {
				stay++
			}
		}
		if stay != n {
			t.Errorf("n=%d: %d hashes stay in one period, want %d", n, stay, n)
		}
	}
}

func TestLoad(t *testing.T) {
	for _, cl := range []string{"embedded", "http"} {
		t.Run(cl, func(t *testing.T) {
			dir := t.TempDir()
			js, tp, lat := filepath.Join(dir, "l.json"), filepath.Join(dir, "tp.svg"), filepath.Join(dir, "lat.png")
			out := runApp(t, "load", "--nodes", "1", "--client", cl, "--concurrency", "4", "--duration", "300ms",
				"--warmup", "0", "--keys", "500", "--dir", dir, "--json", js, "--plot", tp, "--latency-plot", lat)
			var res loadResult
			readJSON(t, js, &res)
			var names []string
			for _, p := range res.Phases {
				names = append(names, p.Name)
				if p.Ops == 0 || p.Throughput <= 0 || p.Latency.P50MS <= 0 || p.Latency.MaxMS < p.Latency.P99MS {
					t.Errorf("%s: implausible %+v", p.Name, p)
				}
				if p.Errors != nil {
					t.Errorf("%s: errors %+v", p.Name, p.Errors)
				}
				if p.CPU.ProcessSeconds <= 0 || p.CPU.ClientShare == nil || *p.CPU.ClientShare < 0 || *p.CPU.ClientShare > 1 {
					t.Errorf("%s: CPU %+v", p.Name, p.CPU)
				}
			}
			if !slices.Equal(names, []string{"put", "get", "mixed"}) {
				t.Fatalf("phases %v\n%s", names, out)
			}
			if m := res.Phases[2].ByOp; m["get"] == nil || m["put"] == nil || m["get"].Ops+m["put"].Ops != res.Phases[2].Ops {
				t.Errorf("mixed by op: %+v", m)
			}
			checkImage(t, tp, "<svg")
			checkImage(t, lat, "PNG")
		})
	}
}

// A read phase first fills the keys; zipf draws; --ops bounds a phase.
func TestLoadFillZipfOps(t *testing.T) {
	dir := t.TempDir()
	js := filepath.Join(dir, "l.json")
	runApp(t, "load", "--nodes", "1", "--client", "embedded", "--concurrency", "3", "--ops", "400", "--warmup", "0",
		"--keys", "300", "--dist", "zipf", "--phases", "get", "--no-sync", "--client-cpu=false", "--dir", dir, "--json", js)
	var res loadResult
	readJSON(t, js, &res)
	if res.Fill == nil || res.Fill.Ops != 300 {
		t.Fatalf("fill: %+v", res.Fill)
	}
	if len(res.Phases) != 1 || res.Phases[0].Ops != 400 || res.Phases[0].Errors != nil {
		t.Fatalf("get phase: %+v", res.Phases)
	}
	if res.Phases[0].CPU.ClientShare != nil {
		t.Errorf("client share measured with --client-cpu=false")
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"load", "--client", "grpc"},
		{"load", "--addrs", "127.0.0.1:1", "--client", "embedded"},
		{"load", "--phases", "put,scan"},
		{"load", "--dist", "zipf", "--zipf-s", "1"},
		{"load", "--w", "most"},
		{"load", "--plot", "x.jpg"},
		{"rebalance", "--from", "5", "--to", "5"},
		{"rebalance", "--plot", "/nonexistent/dir/x.png"},
	} {
		var out, errOut bytes.Buffer
		if code := run(append([]string{"bench"}, args...), &out, &errOut); code != 1 || errOut.Len() == 0 {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut.String())
		}
	}
}

// The histogram's quantiles are within its precision of the exact ones,
// and merging equals recording everything in one.
func TestHistogram(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 20 {
		n := 1 + rng.IntN(5000)
		var all []time.Duration
		a, b, both := newHistogram(), newHistogram(), newHistogram()
		for i := range n {
			// Log-uniform from 1 ns to ~10 s.
			d := time.Duration(math.Exp(rng.Float64() * math.Log(1e10)))
			all = append(all, d)
			both.record(d)
			if i%2 == 0 {
				a.record(d)
			} else {
				b.record(d)
			}
		}
		a.merge(b)
		slices.Sort(all)
		for _, q := range []float64{0, 0.1, 0.5, 0.9, 0.95, 0.99, 0.999, 1} {
			rank := max(int(math.Ceil(q*float64(n))), 1)
			exact := all[rank-1]
			got := both.quantile(q)
			if got < exact || float64(got) > float64(exact)*(1+1.0/subCount)+1 {
				t.Fatalf("trial %d: q=%v of %d: got %v, exact %v", trial, q, n, got, exact)
			}
			if a.quantile(q) != got {
				t.Fatalf("trial %d: merged histogram differs at q=%v", trial, q)
			}
		}
		if both.quantile(1) != all[n-1] || time.Duration(both.min) != all[0] || both.n != uint64(n) {
			t.Fatalf("trial %d: max/min/count wrong", trial)
		}
	}
}

func TestBuckets(t *testing.T) {
	prev := -1
	for _, v := range []uint64{0, 1, 255, 256, 257, 511, 512, 1 << 20, 1<<20 + 1, 1 << 40, math.MaxUint64} {
		i := bucketOf(v)
		if i < prev || i >= maxBucket {
			t.Fatalf("bucketOf(%d) = %d (previous %d, max %d)", v, i, prev, maxBucket)
		}
		if hi := bucketHigh(i); hi < v || (v >= 256 && float64(hi-v) > float64(v)/subCount) {
			t.Fatalf("bucketHigh(bucketOf(%d)) = %d", v, hi)
		}
		prev = i
	}
	// Every bucket's high bound maps back to the bucket, and the next
	// value to the next bucket.
	for i := 0; i < maxBucket-1; i++ {
		hi := bucketHigh(i)
		if bucketOf(hi) != i || bucketOf(hi+1) != i+1 {
			t.Fatalf("bucket %d: high %d maps to %d, next to %d", i, hi, bucketOf(hi), bucketOf(hi+1))
		}
	}
}

// pb encodes a protobuf message for the profile tests.
type pb []byte

func (b pb) varint(field int, v uint64) pb {
	b = binary.AppendUvarint(b, uint64(field)<<3)
	return binary.AppendUvarint(b, v)
}

func (b pb) bytes(field int, v []byte) pb {
	b = binary.AppendUvarint(b, uint64(field)<<3|2)
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// syntheticProfile has a labelled sample of 100 ns (values unpacked), an
// unlabelled one of 300 ns (values packed) and one labelled otherwise.
func syntheticProfile() []byte {
	var p pb
	label := pb(nil).varint(1, 1).varint(2, 2)
	p = p.bytes(2, pb(nil).varint(1, 7).varint(2, 1).varint(2, 100).bytes(3, label))
	packed := binary.AppendUvarint(binary.AppendUvarint(nil, 1), 300)
	p = p.bytes(2, pb(nil).bytes(2, packed))
	p = p.bytes(2, pb(nil).varint(2, 50).bytes(3, pb(nil).varint(1, 1).varint(2, 3)))
	for _, s := range []string{"", labelKey, labelClient, "server"} {
		p = p.bytes(6, []byte(s))
	}
	return p
}

func TestLabelShare(t *testing.T) {
	l, all, err := labelShare(syntheticProfile(), labelKey, labelClient)
	if err != nil || l != 100 || all != 450 {
		t.Fatalf("synthetic: %d of %d, %v; want 100 of 450", l, all, err)
	}
	for _, bad := range [][]byte{{0x12, 0x05, 0x01}, {0x1f, 0x8b, 0x00}, {0x0b}, {0x10, 0x80}} {
		if _, _, err := labelShare(bad, labelKey, labelClient); err == nil {
			t.Errorf("%x: no error", bad)
		}
	}

	// A real profile: a labelled goroutine burns CPU, so it has samples.
	prof, err := startCPUProfile()
	if err != nil {
		t.Skip("CPU profiling unavailable:", err)
	}
	done := make(chan struct{})
	go func() {
		pprof.SetGoroutineLabels(clientLabels)
		x := 0
		for start := time.Now(); time.Since(start) < 400*time.Millisecond; {
			x++
		}
		_ = x
		close(done)
	}()
	<-done
	l, all, err = labelShare(prof.stop(), labelKey, labelClient)
	if err != nil {
		t.Fatal(err)
	}
	if all == 0 || l == 0 || l > all {
		t.Fatalf("real profile: %d of %d labelled", l, all)
	}
}

func FuzzLabelShare(f *testing.F) {
	f.Add(syntheticProfile())
	f.Add([]byte{})
	f.Add([]byte{0x1f, 0x8b, 0x08, 0x00})
	f.Add([]byte{0x12, 0x03, 0x1a, 0x01, 0x08})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _, _ = labelShare(data, labelKey, labelClient) // must not panic
	})
}
