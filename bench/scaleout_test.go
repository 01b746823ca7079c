package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rumorkv/rumor/bench/netns"
	"github.com/rumorkv/rumor/node"
)

// soCheckResult checks a scale-out --json file: every step settled, its
// replicas agreed, nothing was lost or missing, the clients ran during
// every step, and each step moved at most 1.2 × the ideal share of the
// copies.
func soCheckResult(t *testing.T, name string, steps int) *soResult {
	t.Helper()
	var raw map[string]any
	readJSON(t, name, &raw)
	for _, f := range []string{"ok", "preload", "baseline", "steps", "clients", "check", "throughput_series", "moved_series"} {
		if _, ok := raw[f]; !ok {
			t.Errorf("JSON lacks %q", f)
		}
	}
	var res soResult
	readJSON(t, name, &res)
	if !res.OK || len(res.Failures) > 0 {
		t.Fatalf("not OK: %v", res.Failures)
	}
	if len(res.Steps) != steps {
		t.Fatalf("%d steps, want %d", len(res.Steps), steps)
	}
	if b := res.Baseline; b == nil || b.Ops == 0 || b.Puts == 0 || b.Gets == 0 {
		t.Errorf("baseline: %+v", b)
	}
	for _, st := range res.Steps {
		what := st.Kind + " " + st.Node
		if st.Settled == nil || st.InSync == nil || st.StatusAt == nil || st.Error != "" {
			t.Errorf("%s: settled %v, in sync %v, status %v, error %q", what, st.Settled, st.InSync, st.StatusAt, st.Error)
			continue
		}
		if st.KeysMoved == 0 || st.BytesMoved == 0 || st.CopiesBefore == 0 || st.IdealReplicas <= 0 {
			t.Errorf("%s: nothing measured: %+v", what, st)
		}
		if st.MovedOverIdeal > 1.2 {
			t.Errorf("%s moved %.4f of the copies, %.2f × the ideal %.4f", what, st.MovedFraction, st.MovedOverIdeal, st.IdealReplicas)
		}
		if c := st.Clients; c == nil || c.Ops == 0 || c.NotFound != 0 || c.WrongValue != 0 {
			t.Errorf("%s: clients %+v", what, c)
		}
	}
	c := res.Check
	if c.AckedChecked == 0 || c.AckedChecked != res.Clients.AckedWrites || c.AckedLost != 0 || c.ReplicaChecks == 0 || c.ReplicaMissing != 0 {
		t.Errorf("check: %+v (acked %d)", c, res.Clients.AckedWrites)
	}
	if res.Clients.NotFound != 0 || res.Clients.WrongValue != 0 {
		t.Errorf("bad reads: %+v", res.Clients.BadReads)
	}
	if len(res.Throughput) == 0 || len(res.Moved) == 0 {
		t.Errorf("series: %d throughput points, %d moved points", len(res.Throughput), len(res.Moved))
	}
	return &res
}

// TestScaleOutInproc grows 3 in-process nodes to 4 and shrinks back
// under client load.
func TestScaleOutInproc(t *testing.T) {
	dir := t.TempDir()
	js, png := filepath.Join(dir, "so.json"), filepath.Join(dir, "so.png")
	out := runApp(t, "scale-out", "--from", "3", "--to", "4", "--shrink", "--keys", "5000", "--baseline", "1s",
		"--clients", "4", "--no-sync", "--check-sample", "1000", "--json", js, "--plot", png)
	for _, want := range []string{"join n4 (3→4)", "leave n4 (4→3)", "before (baseline)", "0 lost", "result: every step settled, nothing lost"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	res := soCheckResult(t, js, 2)
	checkImage(t, png, "PNG")
	join, leave := res.Steps[0], res.Steps[1]
	if join.Kind != "join" || join.Node != "n4" || leave.Kind != "leave" || leave.Node != "n4" {
		t.Errorf("steps: %s %s, %s %s", join.Kind, join.Node, leave.Kind, leave.Node)
	}
	// The joining node pulled its ranges itself: most of what moved.
	if join.KeysPulledByNode == 0 || join.KeysPulledByNode > join.KeysMoved {
		t.Errorf("join: node pulled %d of %d keys moved", join.KeysPulledByNode, join.KeysMoved)
	}
}

func TestScaleOutUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--mode", "docker"}, `--mode "docker"`},
		{[]string{"--from", "3", "--to", "3"}, "want 1 ≤ from < to"},
		{[]string{"--from", "2", "--n", "3"}, "--n 3: want 1..from"},
		{[]string{"--read-ratio", "1.5"}, "--read-ratio 1.5"},
		{[]string{"--poll", "0s"}, "--poll > 0"},
		{[]string{"--mode", "netns", "--cpuprofile", "x.pprof"}, "--cpuprofile needs --mode inproc"},
		{[]string{"--plot", "x.gif"}, `unknown format ".gif"`},
	} {
		var out, errOut bytes.Buffer
		code := run(append([]string{"bench", "scale-out"}, tc.args...), &out, &errOut)
		if code != 1 || !strings.Contains(errOut.String(), tc.want) || strings.Count(errOut.String(), "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want one line containing %q", tc.args, code, errOut.String(), tc.want)
		}
	}
}

// TestScaleOutNetns grows 2 agents in namespaces to 3 and back (root
// only).
func TestScaleOutNetns(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skip(err)
	}
	if testing.Short() {
		t.Skip("builds the rumor binary and starts agents")
	}
	if err := netns.Sweep(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	js := filepath.Join(dir, "so.json")
	var out, errOut bytes.Buffer
	args := []string{"bench", "scale-out", "--mode", "netns", "--from", "2", "--to", "3", "--n", "2", "--shrink",
		"--keys", "3000", "--baseline", "1s", "--clients", "4", "--no-sync", "--check-sample", "500",
		"--dir", filepath.Join(dir, "data"), "--json", js}
	if code := run(args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
	}
	res := soCheckResult(t, js, 2)
	if res.Steps[0].Node != "n2" {
		t.Errorf("joined %s, want n2", res.Steps[0].Node)
	}
	names, err := phNetnsOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if len(names) > 0 {
		t.Errorf("namespaces left behind: %v", names)
	}
}

// TestJoinPullsEachKeyOnce: a node joining a loaded cluster while nothing
// is written copies each key it will hold once, not once per current
// owner.
func TestJoinPullsEachKeyOnce(t *testing.T) {
	const keys = 20000
	for run := range 3 {
		quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
		cl, err := startCluster(clusterOptions{Nodes: 3, NoSync: true, Dir: t.TempDir(), Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx := context.Background()
		for i := range keys {
			if _, err := cl.Nodes[i%3].Put(ctx, []byte(phPreloadKey(i)), []byte("v"), &node.WriteOptions{W: node.All}); err != nil {
				t.Fatal(err)
			}
		}
		cfg := node.DefaultConfig("n4", filepath.Join(t.TempDir(), "n4"))
		cfg.Insecure = true // no gossip key, TLS or tokens here
		if cfg.BindAddr, err = freeLoopback(); err != nil {
			t.Fatal(err)
		}
		cfg.RPCAddr, cfg.HTTPAddr, cfg.NoSync = "127.0.0.1:0", "127.0.0.1:0", true
		cfg.Logger = quiet
		cfg.Join = []string{cl.Nodes[0].GossipAddr()}
		n4, err := node.Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer n4.Close()
		deadline := time.Now().Add(30 * time.Second)
		for n4.Transfers().State != node.StatusMember {
			if time.Now().After(deadline) {
				t.Fatalf("n4 not a member after 30 s: %+v", n4.Transfers())
			}
			time.Sleep(50 * time.Millisecond)
		}
		ae := n4.AntiEntropy()
		var per []string
		for name, p := range ae.Peers {
			per = append(per, fmt.Sprintf("%s %d", name, p.KeysPulled))
		}
		slices.Sort(per)
		t.Logf("run %d: n4 holds %d keys, pulled %d (%s)", run, ae.Keys, ae.KeysPulled, strings.Join(per, ", "))
		if float64(ae.KeysPulled) > 1.2*float64(ae.Keys) {
			t.Errorf("run %d: n4 pulled %d states for the %d keys it holds (%.2f×): it copied the same keys from several owners",
				run, ae.KeysPulled, ae.Keys, float64(ae.KeysPulled)/float64(ae.Keys))
		}
	}
}
