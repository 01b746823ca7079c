package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rumorkv/rumor/bench/netns"
	"github.com/rumorkv/rumor/ring"
)

// phCheckJSON reads a --json file and checks the contract's
// fields and the outcome.
func phCheckJSON(t *testing.T, name string, nodes int) *phResult {
	t.Helper()
	var raw map[string]any
	readJSON(t, name, &raw)
	for _, f := range []string{"converged", "lost_writes", "heal_to_membership_s", "heal_to_converged_s", "ae_bytes",
		"diverged_bytes", "keys_transferred", "keys_differing", "ops_during_partition"} {
		if _, ok := raw[f]; !ok {
			t.Errorf("JSON lacks %q", f)
		}
	}
	ops, _ := raw["ops_during_partition"].(map[string]any)
	for _, side := range []string{"A", "B"} {
		s, ok := ops[side].(map[string]any)
		if !ok {
			t.Fatalf("ops_during_partition lacks side %s: %v", side, raw["ops_during_partition"])
		}
		for _, f := range []string{"ok", "errors", "ops_per_s"} {
			if _, ok := s[f]; !ok {
				t.Errorf("side %s lacks %q", side, f)
			}
		}
	}
	var res phResult
	readJSON(t, name, &res)
	if !res.Converged || res.LostWrites != 0 || res.HealToConverged == nil || res.HealToMembership == nil {
		t.Fatalf("converged %v, lost %d, heal→membership %v, heal→converged %v; lost: %+v",
			res.Converged, res.LostWrites, res.HealToMembership, res.HealToConverged, res.Lost)
	}
	if res.Config.Nodes != nodes {
		t.Errorf("config nodes %d", res.Config.Nodes)
	}
	// Every side wrote its keys (none failed with hints on), and what
	// differed was repaired.
	for side, s := range res.OpsDuringPartition {
		if s.OK == 0 || s.OpsPerSec <= 0 || len(s.Series) == 0 {
			t.Errorf("side %s: %+v", side, s)
		}
	}
	l := res.Lost
	if l.WritesChecked == 0 || l.DeletesChecked == 0 || l.PreloadedChecked == 0 {
		t.Errorf("nothing checked: %+v", l)
	}
	if res.KeysDiffering == 0 || res.DivergedBytes <= 0 || res.RepairBytes == 0 {
		t.Errorf("no divergence measured: differing %d, bytes %d, repair bytes %d", res.KeysDiffering, res.DivergedBytes, res.RepairBytes)
	}
	if res.SiblingsCreated == 0 {
		t.Error("no siblings: the overwrites without context should have made some")
	}
	if len(res.Series) == 0 || res.Series[len(res.Series)-1].Estimate < 0 {
		t.Errorf("divergence series %v", res.Series)
	}
	return &res
}

func TestPartitionHealInproc(t *testing.T) {
	dir := t.TempDir()
	js, png := filepath.Join(dir, "ph.json"), filepath.Join(dir, "ph.png")
	out := runApp(t, "partition-heal", "--mode", "inproc", "--nodes", "3", "--keys", "2000", "--diverge", "200",
		"--deletes", "20", "--check-sample", "500", "--json", js, "--plot", png)
	for _, want := range []string{"heal → one membership", "every replica identical", "acknowledged writes lost: 0", "result: converged"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	res := phCheckJSON(t, js, 3)
	checkImage(t, png, "PNG")
	// 3 nodes, N=3: every key is on every node; side A is n1,n2 and side B
	// n3. Each acknowledged put or delete of side A left n3 behind and
	// each of side B left n1 and n2: exactly that many pairs differ.
	a, b := res.OpsDuringPartition["A"], res.OpsDuringPartition["B"]
	if want := int(a.OK + 2*b.OK); res.KeysDiffering != want {
		t.Errorf("keys differing %d, want %d (A %d ops, B %d)", res.KeysDiffering, want, a.OK, b.OK)
	}
	if res.Lost.DeletesChecked != 20 || a.Deletes != 20 {
		t.Errorf("deletes: checked %d, side A %d", res.Lost.DeletesChecked, a.Deletes)
	}
}

func TestPartitionHealNetns(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skip(err)
	}
	if err := netns.Sweep(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	js, svg := filepath.Join(dir, "ph.json"), filepath.Join(dir, "ph.svg")
	var out, errOut bytes.Buffer
	args := []string{"bench", "partition-heal", "--mode", "netns", "--nodes", "3", "--keys", "2000", "--diverge", "200",
		"--deletes", "20", "--check-sample", "500", "--dir", filepath.Join(dir, "data"), "--json", js, "--plot", svg}
	if code := run(args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	phCheckJSON(t, js, 3)
	checkImage(t, svg, "<svg")
	// Nothing of the cluster is left: no namespace of this process.
	names, err := phNetnsOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if len(names) > 0 {
		t.Errorf("namespaces left behind: %v", names)
	}
}

// phNetnsOf lists the namespaces bench/netns made for process pid.
func phNetnsOf(pid int) ([]string, error) {
	entries, err := os.ReadDir("/run/netns")
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	prefix := fmt.Sprintf("rumor-%d-", pid)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func TestPartitionHealFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--mode", "docker"},
		{"--shape", "ring"},
		{"--nodes", "1"},
		{"--shape", "bridge", "--nodes", "2"},
		{"--keys", "100", "--diverge", "1000"},
		{"--overlap", "1.5"},
		{"--mode", "netns", "--hints=false"},
		{"--mode", "netns", "--cpuprofile", "x.pprof"},
		{"--n", "4", "--nodes", "3"},
	} {
		var out, errOut bytes.Buffer
		code := run(append([]string{"bench", "partition-heal"}, args...), &out, &errOut)
		if code == 0 || !strings.Contains(errOut.String(), "bad arguments") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut.String())
		}
	}
}

func TestPHInSync(t *testing.T) {
	st := func(name string, hints int, peers map[string]string) *phStatus {
		s := &phStatus{Name: name}
		s.Metrics.HintsPending = map[string]int{"x": hints}
		s.AE.Peers = map[string]struct {
			SharedHash string `json:"shared_hash"`
			SharedKeys uint64 `json:"shared_keys"`
		}{}
		for p, h := range peers {
			e := s.AE.Peers[p]
			e.SharedHash = h
			s.AE.Peers[p] = e
		}
		return s
	}
	for _, tc := range []struct {
		name string
		sts  []*phStatus
		ok   bool
	}{
		{"agree", []*phStatus{st("a", 0, map[string]string{"b": "1"}), st("b", 0, map[string]string{"a": "1"})}, true},
		{"hint pending", []*phStatus{st("a", 1, map[string]string{"b": "1"}), st("b", 0, map[string]string{"a": "1"})}, false},
		{"hash differs", []*phStatus{st("a", 0, map[string]string{"b": "1"}), st("b", 0, map[string]string{"a": "2"})}, false},
		{"one-sided", []*phStatus{st("a", 0, map[string]string{"b": "1"}), st("b", 0, nil)}, false},
		{"nothing shared", []*phStatus{st("a", 0, nil), st("b", 0, nil)}, true},
	} {
		if ok, why := phInSync(tc.sts); ok != tc.ok {
			t.Errorf("%s: inSync = %v (%s), want %v", tc.name, ok, why, tc.ok)
		}
	}
}

// The plan writes --diverge keys per side, half overwrites with the asked
// overlap, half new keys, and deletes keys nobody else writes that have a
// replica on side A.
func TestPartitionHealPlan(t *testing.T) {
	for _, shape := range []string{shapeHalves, shapeIsolate, shapeBridge} {
		r := &phRun{cfg: phConfig{Keys: 5000, Diverge: 1000, Overlap: 0.4, Deletes: 50, Seed: 3, Shape: shape, ValueSize: 10},
			addrs: make([]string, 5), n: 3, byID: map[ring.NodeID]int{}, bridge: -1}
		var members []ring.Member
		for i := range 5 {
			id := ring.NodeID(uint64(i+1) * 0x9e3779b97f4a7c15)
			members = append(members, ring.Member{ID: id})
			r.byID[id] = i
			r.names = append(r.names, fmt.Sprintf("n%d", i))
		}
		r.ring = ring.New(members, 64)
		r.makeSides()
		if err := r.plan(); err != nil {
			t.Fatal(err)
		}
		a, b := r.sides[0], r.sides[1]
		if shape == shapeBridge && (r.bridge != 2 || len(a.group) != 2 || len(b.group) != 2) {
			t.Errorf("bridge: %d, sides %v %v", r.bridge, a.group, b.group)
		}
		if shape == shapeIsolate && len(a.group) != 1 {
			t.Errorf("isolate-one: side A %v", a.group)
		}
		if len(a.ops) != 1000+50 || len(b.ops) != 1000 {
			t.Fatalf("%s: %d and %d ops", shape, len(a.ops), len(b.ops))
		}
		written := [2]map[int32]bool{{}, {}}
		dels := map[int32]bool{}
		for si, s := range r.sides {
			over, fresh := 0, 0
			for _, op := range s.ops {
				key := r.keys[op.key]
				switch {
				case op.del:
					dels[op.key] = true
					if !strings.HasPrefix(key, "k") {
						t.Errorf("delete of %q", key)
					}
				case strings.HasPrefix(key, "new-"+s.name+"-"):
					fresh++
				case strings.HasPrefix(key, "k"):
					over++
				default:
					t.Errorf("side %s writes %q", s.name, key)
				}
				if !op.del {
					if written[si][op.key] {
						t.Errorf("side %s writes %q twice", s.name, key)
					}
					written[si][op.key] = true
				}
			}
			if over != 500 || fresh != 500 {
				t.Errorf("%s side %s: %d overwrites, %d new", shape, s.name, over, fresh)
			}
		}
		both := 0
		for k := range written[0] {
			if written[1][k] {
				both++
			}
		}
		if both != 200 {
			t.Errorf("%s: %d keys written on both sides, want 200", shape, both)
		}
		for k := range dels {
			if written[0][k] || written[1][k] {
				t.Errorf("deleted key %q is also written", r.keys[k])
			}
			onA := false
			for _, j := range r.replicas[k] {
				for _, i := range a.nodes {
					onA = onA || i == j
				}
			}
			if !onA {
				t.Errorf("deleted key %q has no replica on side A", r.keys[k])
			}
		}
		if len(dels) != 50 || len(r.deleted) != 50 {
			t.Errorf("%d deletes", len(dels))
		}
	}
}
