package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rumorkv/rumor/crdt"
)

// TestCrash runs the crash benchmark for real (agent processes, kill -9,
// fsync on) with five kills: nothing acknowledged may be lost and no dot
// reused.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts agent processes")
	}
	js := filepath.Join(t.TempDir(), "crash.json")
	out := runApp(t, "crash", "--iterations", "5", "--nodes", "3", "--writers", "8", "--seed", "7",
		"--min-up", "300ms", "--max-up", "1s", "--max-down", "500ms", "--json", js)
	if !strings.Contains(out, "crash: OK") {
		t.Fatalf("summary:\n%s", out)
	}
	var res crashResult
	readJSON(t, js, &res)
	if !res.OK || res.Lost != 0 || res.DotReuse != 0 || res.CounterRewinds != 0 || res.Resurrected != 0 {
		t.Fatalf("not clean: %+v", res)
	}
	if res.Iterations != 5 || len(res.Restarts) != 5 {
		t.Fatalf("%d iterations, %d restarts; want 5", res.Iterations, len(res.Restarts))
	}
	if res.Acked < 200 || res.Present == 0 || res.Superseded == 0 || res.AckedByKind[opDelete] == 0 {
		t.Fatalf("too little exercised: %+v", res)
	}
	if res.Present+res.Superseded+res.SupersededByUnacked+res.Lost != res.Acked-res.UndeterminedDots {
		t.Fatalf("acknowledged writes unaccounted for: %+v", res)
	}
	measured := 0
	for _, rs := range res.Restarts {
		if rs.FirstDotAfter == 0 {
			continue
		}
		measured++
		if rs.FirstDotAfter <= rs.MaxDotBefore {
			t.Errorf("restart %+v: counter went back", rs)
		}
	}
	if measured == 0 {
		t.Fatalf("no restart was followed by a write the restarted agent coordinated: %+v", res.Restarts)
	}
	// The counter resumes above the high-water mark persisted before the
	// crash, at most the store's CounterReserve (10 000) ahead of use.
	if res.MaxCounterGap == 0 || res.MaxCounterGap > 20000 {
		t.Errorf("largest counter jump across a crash: %d", res.MaxCounterGap)
	}
	if len(res.Nodes) != 3 || res.Nodes[0].ID == res.Nodes[1].ID {
		t.Errorf("nodes: %+v", res.Nodes)
	}
}

func TestCrashFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--nodes", "1"},
		{"--writers", "0"},
		{"--min-up", "2s", "--max-up", "1s"},
		{"--iterations", "-1"},
	} {
		if code := run(append([]string{"bench", "crash"}, args...), &strings.Builder{}, &strings.Builder{}); code == 0 {
			t.Errorf("crash %v: exit 0, want an error", args)
		}
	}
}

// A history for analyzeCrash: writes and final states by hand.
type crashHistory struct {
	t0    time.Time
	facts crashFacts
}

// Actors A and B are agent ids (n1, n2); C and D are not.
const (
	actorA = crdt.ActorID(0xa)
	actorB = crdt.ActorID(0xb)
	actorC = crdt.ActorID(0xc)
	actorD = crdt.ActorID(0xd)
)

func newHistory() *crashHistory {
	return &crashHistory{t0: time.Unix(1000, 0), facts: crashFacts{
		Final:  map[string]*crashFinal{},
		Actors: map[crdt.ActorID]int{actorA: 0, actorB: 1},
	}}
}

func vv(pairs ...any) crdt.VV {
	out := crdt.VV{}
	for i := 0; i < len(pairs); i += 2 {
		out[pairs[i].(crdt.ActorID)] = uint64(pairs[i+1].(int))
	}
	return out
}

// write records a write sent at second at with context sent (from write
// sentFrom, or -1) that returned ack (nil: not acknowledged); value "" is
// a delete. It returns the write's index.
func (h *crashHistory) write(at int, kind, key, value string, sent crdt.VV, sentFrom int, ack crdt.VV) int {
	op := crashOp{Kind: kind, Key: key, Value: value, Delete: value == "", SentFrom: sentFrom,
		Sent: crdt.EncodeContext(sent), Acked: ack != nil, Ack: crdt.EncodeContext(ack),
		Start: h.t0.Add(time.Duration(at) * time.Second), End: h.t0.Add(time.Duration(at)*time.Second + 100*time.Millisecond)}
	if ack == nil {
		op.Err = "connection reset"
	}
	h.facts.Ops = append(h.facts.Ops, op)
	return len(h.facts.Ops) - 1
}

// final sets key's final state and the r=all read's values to its live
// values.
func (h *crashHistory) final(key string, versions ...crdt.Version) *crashFinal {
	f := &crashFinal{State: crdt.Register{Versions: versions}}
	for _, v := range f.State.Live() {
		f.Values = append(f.Values, string(v.Value))
	}
	h.facts.Final[key] = f
	return f
}

func ver(a crdt.ActorID, c int, ctx crdt.VV, value string) crdt.Version {
	v := crdt.Version{Dot: crdt.Dot{Actor: a, Counter: uint64(c)}, Ctx: ctx, Value: []byte(value)}
	if value == "" {
		v.Deleted, v.Value = true, nil
	}
	return v
}

func (h *crashHistory) restart(node int, killed, started int) {
	h.facts.Restarts = append(h.facts.Restarts, crashRestart{Iteration: len(h.facts.Restarts), Node: "n", node: node,
		killed: h.t0.Add(time.Duration(killed) * time.Second), started: h.t0.Add(time.Duration(started) * time.Second)})
}

// TestCrashAnalysis feeds analyzeCrash small histories with one known
// fault each (or none) and checks it counts exactly that.
func TestCrashAnalysis(t *testing.T) {
	type counts struct {
		present, superseded, unacked, unseen, lost, reuse, undetermined, rewinds, resurrected, mismatch int
		gap                                                                                             uint64
	}
	for _, tc := range []struct {
		name  string
		build func(h *crashHistory)
		want  counts
	}{
		{"present", func(h *crashHistory) {
			h.write(1, opNew, "k", "v1", nil, -1, vv(actorA, 1))
			h.final("k", ver(actorA, 1, nil, "v1"))
		}, counts{present: 1}},
		{"lost", func(h *crashHistory) {
			h.write(1, opNew, "k", "v1", nil, -1, vv(actorA, 1))
			h.final("k")
		}, counts{lost: 1}},
		{"superseded by an overwrite", func(h *crashHistory) {
			w := h.write(1, opNew, "k", "v1", nil, -1, vv(actorA, 1))
			h.write(2, opOverwrite, "k", "v2", vv(actorA, 1), w, vv(actorA, 2))
			h.final("k", ver(actorA, 2, vv(actorA, 1), "v2"))
		}, counts{present: 1, superseded: 1}},
		{"superseded by a delete", func(h *crashHistory) {
			w := h.write(1, opNew, "k", "v1", nil, -1, vv(actorB, 4))
			h.write(2, opDelete, "k", "", vv(actorB, 4), w, vv(actorA, 2, actorB, 4))
			h.final("k", ver(actorA, 2, vv(actorB, 4), ""))
		}, counts{present: 1, superseded: 1}},
		{"superseded by a write whose acknowledgement was lost", func(h *crashHistory) {
			w := h.write(1, opNew, "k", "v1", nil, -1, vv(actorA, 1))
			h.write(2, opOverwrite, "k", "v2", vv(actorA, 1), w, nil)
			h.final("k", ver(actorA, 2, vv(actorA, 1), "v2"))
		}, counts{unacked: 1}},
		{"covered by a context no write carried", func(h *crashHistory) {
			h.write(1, opNew, "k", "v1", nil, -1, vv(actorA, 1))
			h.final("k", ver(actorB, 7, vv(actorA, 1), "forged"))
		}, counts{lost: 1}},
		{"a blind write does not supersede", func(h *crashHistory) {
			h.write(1, opNew, "k", "v1", nil, -1, vv(actorA, 1))
			h.write(2, opBlind, "k", "v2", nil, -1, vv(actorA, 2))
			h.final("k", ver(actorA, 2, nil, "v2"))
		}, counts{present: 1, lost: 1}},
		{"superseded through the summary only", func(h *crashHistory) {
			h.write(1, opNew, "k", "v1", nil, -1, vv(actorA, 1))
			b := h.write(2, opBlind, "k", "v2", nil, -1, vv(actorA, 2))
			h.write(3, opOverwrite, "k", "v3", vv(actorA, 2), b, vv(actorA, 3))
			h.final("k", ver(actorA, 3, vv(actorA, 2), "v3"))
		}, counts{present: 1, superseded: 2, unseen: 1}},
		{"dot reused across keys", func(h *crashHistory) {
			h.write(1, opNew, "k1", "v1", nil, -1, vv(actorA, 1))
			h.write(2, opNew, "k2", "v2", nil, -1, vv(actorA, 1))
			h.final("k1", ver(actorA, 1, nil, "v1"))
			h.final("k2", ver(actorA, 1, nil, "v2"))
		}, counts{present: 2, reuse: 1}},
		{"dot reused on one key", func(h *crashHistory) {
			h.write(1, opNew, "k", "v1", nil, -1, vv(actorA, 1))
			h.write(2, opBlind, "k", "v2", nil, -1, vv(actorA, 1))
			h.final("k", ver(actorA, 1, nil, "v2"))
		}, counts{present: 2, reuse: 1}},
		{"dot reused by an unacknowledged write", func(h *crashHistory) {
			h.write(1, opNew, "k", "v1", nil, -1, vv(actorA, 1))
			h.write(2, opNew, "k2", "x", nil, -1, nil)
			h.final("k", ver(actorA, 1, nil, "v1"))
			h.final("k2", ver(actorA, 1, nil, "x"))
		}, counts{present: 1, reuse: 1}},
		{"a tombstone is its delete", func(h *crashHistory) {
			w := h.write(1, opNew, "k", "v1", nil, -1, vv(actorA, 1))
			h.write(2, opDelete, "k", "", vv(actorA, 1), w, vv(actorA, 2))
			h.final("k", ver(actorA, 2, vv(actorA, 1), ""))
		}, counts{present: 1, superseded: 1}},
		{"two deletes, one dot", func(h *crashHistory) {
			w := h.write(1, opNew, "k", "v1", nil, -1, vv(actorA, 1))
			h.write(2, opDelete, "k", "", vv(actorA, 1), w, vv(actorA, 2))
			h.write(3, opDelete, "k", "", vv(actorA, 1), w, vv(actorA, 2))
			h.final("k", ver(actorA, 2, vv(actorA, 1), ""))
		}, counts{present: 2, superseded: 1, reuse: 1}},
		{"acknowledgement names no new dot", func(h *crashHistory) {
			w := h.write(1, opNew, "k", "v1", nil, -1, vv(actorA, 5))
			h.write(2, opOverwrite, "k", "v2", vv(actorA, 5), w, vv(actorA, 5))
			h.final("k", ver(actorA, 5, nil, "v1"))
		}, counts{present: 1, undetermined: 1}},
		{"resurrected", func(h *crashHistory) {
			w := h.write(1, opNew, "k", "v1", nil, -1, vv(actorA, 1))
			h.write(2, opDelete, "k", "", vv(actorA, 1), w, vv(actorA, 2))
			h.final("k", ver(actorA, 1, nil, "v1"), ver(actorA, 2, nil, ""))
		}, counts{present: 2, resurrected: 1}},
		{"read disagrees with the replicas", func(h *crashHistory) {
			h.write(1, opNew, "k", "v1", nil, -1, vv(actorA, 1))
			h.final("k", ver(actorA, 1, nil, "v1")).Values = nil
		}, counts{present: 1, mismatch: 1}},
		{"counter resumes above", func(h *crashHistory) {
			h.write(1, opNew, "k1", "v1", nil, -1, vv(actorA, 100))
			h.restart(0, 5, 6)
			h.write(7, opNew, "k2", "v2", nil, -1, vv(actorA, 10001))
			h.write(8, opNew, "k3", "v3", nil, -1, vv(actorA, 10002))
			h.final("k1", ver(actorA, 100, nil, "v1"))
			h.final("k2", ver(actorA, 10001, nil, "v2"))
			h.final("k3", ver(actorA, 10002, nil, "v3"))
		}, counts{present: 3, gap: 9901}},
		{"counter rewinds", func(h *crashHistory) {
			h.write(1, opNew, "k1", "v1", nil, -1, vv(actorA, 100))
			h.restart(0, 5, 6)
			h.write(7, opNew, "k2", "v2", nil, -1, vv(actorA, 50))
			h.final("k1", ver(actorA, 100, nil, "v1"))
			h.final("k2", ver(actorA, 50, nil, "v2"))
		}, counts{present: 2, rewinds: 1}},
		{"counter reused under another actor", func(h *crashHistory) {
			// Actors derived from the agent id (not equal to it): the
			// agent that took the write issued the dot.
			h.facts.Contacted = true
			h.write(1, opNew, "k1", "v1", nil, -1, vv(actorC, 5))
			h.write(2, opNew, "k2", "v2", nil, -1, vv(actorD, 5))
			h.final("k1", ver(actorC, 5, nil, "v1"))
			h.final("k2", ver(actorD, 5, nil, "v2"))
		}, counts{present: 2, reuse: 1}},
		{"same counter on two agents", func(h *crashHistory) {
			h.facts.Contacted = true
			h.write(1, opNew, "k1", "v1", nil, -1, vv(actorC, 5))
			h.facts.Ops[h.write(2, opNew, "k2", "v2", nil, -1, vv(actorD, 5))].Node = 1
			h.final("k1", ver(actorC, 5, nil, "v1"))
			h.final("k2", ver(actorD, 5, nil, "v2"))
		}, counts{present: 2}},
		{"counter rewinds under another actor", func(h *crashHistory) {
			h.facts.Contacted = true
			h.write(1, opNew, "k1", "v1", nil, -1, vv(actorC, 100))
			h.restart(0, 5, 6)
			h.write(7, opNew, "k2", "v2", nil, -1, vv(actorD, 50))
			h.final("k1", ver(actorC, 100, nil, "v1"))
			h.final("k2", ver(actorD, 50, nil, "v2"))
		}, counts{present: 2, rewinds: 1}},
		{"counter rewinds below an unacknowledged write's dot", func(h *crashHistory) {
			// Only the final state shows dot A:100, written (by its
			// timestamp) before the kill.
			h.write(1, opNew, "k1", "v1", nil, -1, nil)
			h.restart(0, 5, 6)
			h.write(7, opNew, "k2", "v2", nil, -1, vv(actorA, 50))
			v := ver(actorA, 100, nil, "v1")
			v.HLC = crdt.MakeTimestamp(h.t0.Add(time.Second), 0)
			h.final("k1", v)
			h.final("k2", ver(actorA, 50, nil, "v2"))
		}, counts{present: 1, rewinds: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHistory()
			tc.build(h)
			var res crashResult
			analyzeCrash(&h.facts, &res)
			got := counts{res.Present, res.Superseded, res.SupersededByUnacked, res.SupersededUnseen, res.Lost,
				res.DotReuse, res.UndeterminedDots, res.CounterRewinds, res.Resurrected, res.ReadMismatch, res.MaxCounterGap}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v\nsamples: %q", got, tc.want, res.Samples)
			}
			clean := counts{present: tc.want.present, superseded: tc.want.superseded, unseen: tc.want.unseen,
				unacked: tc.want.unacked, gap: tc.want.gap}
			if ok := tc.want == clean; res.OK != ok {
				t.Fatalf("OK %v, want %v (samples %q)", res.OK, ok, res.Samples)
			}
		})
	}
}
