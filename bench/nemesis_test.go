package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rumorkv/rumor/bench/netns"
)

// TestNemesisSchedule: the same seed draws the same schedule, another seed
// another; faults never overlap, stay within the duration, come only from
// the enabled kinds and cut the nodes as their shape says.
func TestNemesisSchedule(t *testing.T) {
	const nodes = 5
	d, iv := time.Minute, 3*time.Second
	a := planNemesis(7, d, iv, nodes, nemAllFaults)
	if b := planNemesis(7, d, iv, nodes, nemAllFaults); !reflect.DeepEqual(a, b) {
		t.Fatalf("seed 7 twice: different schedules\n%v\n%v", a, b)
	}
	if b := planNemesis(8, d, iv, nodes, nemAllFaults); reflect.DeepEqual(a, b) {
		t.Fatal("seeds 7 and 8 drew the same schedule")
	}
	if len(a) < 10 {
		t.Fatalf("%d faults in %v at %v", len(a), d, iv)
	}
	seen := map[string]bool{}
	for seed := range uint64(50) {
		kinds := nemAllFaults
		if seed%2 == 1 {
			kinds = []string{faultKill, faultRing}
		}
		sched := planNemesis(seed, d, iv, nodes, kinds)
		end := 0.0
		for i, f := range sched {
			seen[f.Kind] = true
			if !slices.Contains(kinds, f.Kind) {
				t.Fatalf("seed %d: fault %s not enabled", seed, f.Kind)
			}
			if f.At < end || f.For <= 0 || f.At+f.For > d.Seconds()+1e-9 {
				t.Fatalf("seed %d fault %d: at %.2f for %.2f after the previous ended at %.2f", seed, i, f.At, f.For, end)
			}
			end = f.At + f.For
			checkFaultShape(t, &f, nodes)
		}
	}
	for _, k := range nemAllFaults {
		if !seen[k] {
			t.Errorf("fault %s never drawn in 50 seeds", k)
		}
	}
	// Shorter than the healthy start: no fault at all.
	if s := planNemesis(1, time.Second, 3*time.Second, nodes, nemAllFaults); len(s) != 0 {
		t.Errorf("1 s run: %v", s)
	}
}

// checkFaultShape checks one fault's nodes.
func checkFaultShape(t *testing.T, f *nemFault, nodes int) {
	t.Helper()
	var in []int
	for _, g := range f.Groups {
		if len(g) == 0 {
			t.Fatalf("%s: empty side", f)
		}
		in = append(in, g...)
	}
	slices.Sort(in)
	switch f.Kind {
	case faultHalves, faultIsolate, faultBridge:
		want := nodes
		if f.Kind == faultBridge {
			want = nodes - 1
		}
		if len(f.Groups) != 2 || len(in) != want || len(slices.Compact(slices.Clone(in))) != want {
			t.Fatalf("%s: sides %v", f, f.Groups)
		}
		if f.Kind == faultIsolate && len(f.Groups[0]) != 1 {
			t.Fatalf("%s: isolates %v", f, f.Groups[0])
		}
		if f.Kind == faultHalves && len(f.Groups[0])-len(f.Groups[1]) > 1 {
			t.Fatalf("%s: not halves", f)
		}
	case faultRing:
		if len(f.Cuts) == 0 {
			t.Fatalf("%s: no cut", f)
		}
	case faultKill, faultPause, faultClock:
		if f.Node == nil || *f.Node < 0 || *f.Node >= nodes || f.Groups != nil {
			t.Fatalf("%s: node %v", f, f.Node)
		}
		if (f.Kind == faultClock) != (f.offset != 0) {
			t.Fatalf("%s: offset %v", f, f.offset)
		}
	}
}

// TestMajorityRing: with the cuts, every node sees a majority (itself
// included), and no two nodes see the same set.
func TestMajorityRing(t *testing.T) {
	for n := 3; n <= 9; n++ {
		ring := []int{}
		for i := range n {
			ring = append(ring, (i*5+2)%n) // a permutation for n not divisible by 5
		}
		if n%5 == 0 {
			ring = []int{4, 2, 0, 1, 3}
		}
		cut := map[[2]int]bool{}
		for _, c := range majorityRing(ring) {
			if c[0] >= c[1] {
				t.Fatalf("n=%d: cut %v not ordered", n, c)
			}
			cut[c] = true
		}
		views := map[string]bool{}
		for a := range n {
			var sees []int
			for b := range n {
				if a == b || !cut[[2]int{min(a, b), max(a, b)}] {
					sees = append(sees, b)
				}
			}
			if len(sees) <= n/2 {
				t.Errorf("n=%d: node %d sees %v, not a majority", n, a, sees)
			}
			views[fmt.Sprint(sees)] = true
		}
		if len(views) != n && n != 4 && n != 6 {
			// n=4 and n=6 cut opposite pairs: nodes still see different sets.
			t.Errorf("n=%d: %d distinct views of %d nodes", n, len(views), n)
		}
		if len(cut) == 0 {
			t.Errorf("n=%d: nothing cut", n)
		}
	}
}

// TestNemesisCheck feeds the nemesis checker histories shaped like the
// workload's (actors not attributed to nodes): each known fault is caught,
// and a superseded write is not lost.
func TestNemesisCheck(t *testing.T) {
	type counts struct{ present, superseded, lost, resurrected, diverged int }
	for _, tc := range []struct {
		name      string
		build     func(h *crashHistory)
		converged bool
		want      counts
		ok        bool
	}{
		{"clean", func(h *crashHistory) {
			h.write(1, opBlind, "k", "v1", nil, -1, vv(actorC, 1))
			h.write(2, opBlind, "k", "v2", nil, -1, vv(actorD, 1))
			h.final("k", ver(actorC, 1, nil, "v1"), ver(actorD, 1, nil, "v2"))
		}, true, counts{present: 2}, true},
		{"a lost write is caught", func(h *crashHistory) {
			h.write(1, opBlind, "k", "v1", nil, -1, vv(actorC, 1))
			h.write(2, opBlind, "k", "v2", nil, -1, vv(actorD, 1))
			h.final("k", ver(actorD, 1, nil, "v2"))
		}, true, counts{present: 1, lost: 1}, false},
		{"a superseded write is not lost", func(h *crashHistory) {
			h.write(1, opBlind, "k", "v1", nil, -1, vv(actorC, 1))
			h.write(2, opReadOverwrite, "k", "v2", vv(actorC, 1), -1, vv(actorC, 1, actorD, 1))
			h.final("k", ver(actorD, 1, vv(actorC, 1), "v2"))
		}, true, counts{present: 1, superseded: 1}, true},
		{"a resurrected delete is caught", func(h *crashHistory) {
			h.write(1, opBlind, "k", "v1", nil, -1, vv(actorC, 1))
			h.write(2, opDelete, "k", "", vv(actorC, 1), -1, vv(actorC, 1, actorD, 1))
			h.final("k", ver(actorC, 1, nil, "v1"), ver(actorD, 1, vv(actorC, 1), ""))
		}, true, counts{present: 2, resurrected: 1}, false},
		{"an unacknowledged write is never lost", func(h *crashHistory) {
			h.write(1, opBlind, "k", "v1", nil, -1, nil)
			h.final("k")
		}, true, counts{}, true},
		{"replicas differ", func(h *crashHistory) {
			h.write(1, opBlind, "k", "v1", nil, -1, vv(actorC, 1))
			h.final("k", ver(actorC, 1, nil, "v1")).Diverged = true
		}, false, counts{present: 1, diverged: 1}, false},
		{"not converged alone fails", func(h *crashHistory) {
			h.write(1, opBlind, "k", "v1", nil, -1, vv(actorC, 1))
			h.final("k", ver(actorC, 1, nil, "v1"))
		}, false, counts{present: 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHistory()
			tc.build(h)
			res := &nemResult{Converged: tc.converged}
			res.check(h.facts.Ops, h.facts.Final)
			got := counts{res.Present, res.Superseded, res.Lost, res.Resurrected, res.Diverged}
			if got != tc.want || res.OK != tc.ok {
				t.Fatalf("got %+v ok %v, want %+v ok %v; samples %q", got, res.OK, tc.want, tc.ok, res.Samples)
			}
			if res.Ops.Attempted != len(h.facts.Ops) || res.Ops.Acknowledged+res.Ops.Failed != res.Ops.Attempted {
				t.Fatalf("ops %+v", res.Ops)
			}
			var buf bytes.Buffer
			printNemesis(&buf, res)
			verdict := "nemesis: OK"
			if !tc.ok {
				verdict = "nemesis: FAILED"
			}
			if !strings.Contains(buf.String(), verdict) {
				t.Fatalf("summary lacks %q:\n%s", verdict, buf.String())
			}
		})
	}
}

// nemSeedWith returns the first seed from 1 whose schedule has every one of
// kinds.
func nemSeedWith(t *testing.T, d, iv time.Duration, nodes int, kinds ...string) uint64 {
	t.Helper()
	for seed := uint64(1); seed < 10000; seed++ {
		have := map[string]bool{}
		for _, f := range planNemesis(seed, d, iv, nodes, nemAllFaults) {
			have[f.Kind] = true
		}
		if !slices.ContainsFunc(kinds, func(k string) bool { return !have[k] }) {
			return seed
		}
	}
	t.Fatalf("no seed draws %v", kinds)
	return 0
}

// nemCheckJSON reads a single run's --json and checks the contract's
// fields and a clean verdict.
func nemCheckJSON(t *testing.T, name string) *nemSingle {
	t.Helper()
	var raw map[string]any
	readJSON(t, name, &raw)
	for _, f := range []string{"seed", "duration_s", "mode", "nodes", "faults", "ops", "present", "superseded",
		"lost", "resurrected", "converged", "heal_to_converged_s"} {
		if _, ok := raw[f]; !ok {
			t.Errorf("JSON lacks %q", f)
		}
	}
	ops, _ := raw["ops"].(map[string]any)
	for _, f := range []string{"attempted", "acknowledged", "failed", "by_kind"} {
		if _, ok := ops[f]; !ok {
			t.Errorf("ops lacks %q", f)
		}
	}
	var res nemSingle
	readJSON(t, name, &res)
	if !res.OK || res.Lost != 0 || res.Resurrected != 0 || !res.Converged || res.HealToConvergedS == nil {
		t.Fatalf("not clean: lost %d, resurrected %d, converged %v (%s); samples %q",
			res.Lost, res.Resurrected, res.Converged, res.Why, res.Samples)
	}
	if res.Present+res.Superseded+res.SupersededByUnacked != res.Ops.Acknowledged-res.UndeterminedDots {
		t.Fatalf("acknowledged writes unaccounted for: %+v", res.nemResult)
	}
	for _, k := range []string{opBlind, opReadOverwrite, opDelete} {
		if c := res.Ops.ByKind[k]; c == nil || c.Acknowledged == 0 {
			t.Errorf("no %s acknowledged: %+v", k, res.Ops.ByKind)
		}
	}
	if res.Superseded == 0 {
		t.Error("nothing superseded: the read-modify-writes should supersede")
	}
	return &res
}

// TestNemesisInproc runs the nemesis end to end in process with a seed whose
// schedule kills, pauses and skews a clock.
func TestNemesisInproc(t *testing.T) {
	d, iv := 6*time.Second, time.Second
	seed := nemSeedWith(t, d, iv, 3, faultKill, faultPause, faultClock)
	js := filepath.Join(t.TempDir(), "nem.json")
	out := runApp(t, "nemesis", "--nodes", "3", "--duration", d.String(), "--fault-interval", iv.String(),
		"--clients", "4", "--keys", "50", "--seed", fmt.Sprint(seed), "--settle-timeout", "60s", "--json", js)
	if !strings.Contains(out, fmt.Sprintf("nemesis: OK seed %d: 0 lost, 0 resurrected, converged", seed)) {
		t.Fatalf("summary:\n%s", out)
	}
	res := nemCheckJSON(t, js)
	if res.Mode != "inproc" || res.Nodes != 3 || res.Seed != seed || len(res.Faults) == 0 || res.Restarts < 2 {
		t.Fatalf("mode %s nodes %d seed %d faults %v restarts %d", res.Mode, res.Nodes, res.Seed, res.Faults, res.Restarts)
	}
	for _, f := range res.Faults {
		if f.Err != "" || f.Undone < f.Started || f.Started == 0 {
			t.Errorf("fault %s: %+v", &f, f)
		}
	}
}

// TestNemesisRuns: --runs runs consecutive seeds and reports their totals.
func TestNemesisRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("two cluster runs")
	}
	js := filepath.Join(t.TempDir(), "runs.json")
	out := runApp(t, "nemesis", "--nodes", "3", "--duration", "2s", "--fault-interval", "700ms", "--clients", "2",
		"--keys", "20", "--seed", "5", "--runs", "2", "--faults", "isolate,partition-halves", "--json", js)
	if !strings.Contains(out, "nemesis: 2 of 2 runs OK (seeds 5..6)") {
		t.Fatalf("summary:\n%s", out)
	}
	var rep nemReport
	readJSON(t, js, &rep)
	if rep.Passed != 2 || len(rep.Runs) != 2 || rep.Runs[0].Seed != 5 || rep.Runs[1].Seed != 6 || !rep.Converged ||
		rep.Ops.Acknowledged != rep.Runs[0].Ops.Acknowledged+rep.Runs[1].Ops.Acknowledged || rep.FailedSeed != nil {
		t.Fatalf("report: %+v", rep)
	}
}

// TestNemesisNetns runs the nemesis against agent processes in namespaces
// (root only) and checks it leaves no namespace behind.
func TestNemesisNetns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts agent processes")
	}
	if err := netns.Available(); err != nil {
		t.Skip(err)
	}
	d, iv := 8*time.Second, 1500*time.Millisecond
	seed := nemSeedWith(t, d, iv, 3, faultKill, faultPause)
	js := filepath.Join(t.TempDir(), "nem.json")
	out := runApp(t, "nemesis", "--mode", "netns", "--nodes", "3", "--duration", d.String(), "--fault-interval", iv.String(),
		"--clients", "4", "--keys", "50", "--seed", fmt.Sprint(seed), "--settle-timeout", "90s", "--json", js)
	if !strings.Contains(out, "0 lost, 0 resurrected, converged") {
		t.Fatalf("summary:\n%s", out)
	}
	res := nemCheckJSON(t, js)
	if res.Mode != "netns" || res.Restarts == 0 {
		t.Fatalf("mode %s restarts %d", res.Mode, res.Restarts)
	}
	list, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, list)
	}
	if mine := fmt.Sprintf("rumor-%d-", os.Getpid()); strings.Contains(string(list), mine) {
		t.Fatalf("namespaces left behind:\n%s", list)
	}
}

func TestNemesisFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--faults", "bogus"},
		{"--faults", ","},
		{"--nodes", "2", "--faults", "bridge"},
		{"--runs", "0"},
		{"--mode", "docker"},
		{"--duration", "0s"},
		{"--n", "4", "--nodes", "3"},
	} {
		var errOut strings.Builder
		if code := run(append([]string{"bench", "nemesis"}, args...), &strings.Builder{}, &errOut); code == 0 {
			t.Errorf("nemesis %v: exit 0, want an error", args)
		} else if !strings.Contains(errOut.String(), "bad arguments") {
			t.Errorf("nemesis %v: %s", args, errOut.String())
		}
	}
}
