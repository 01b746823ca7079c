package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rumorkv/rumor/node"
)

// waitExit waits for the agent to exit by itself (without cancelling it)
// and returns its exit code.
func (a *agent) waitExit(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case code := <-a.done:
		close(a.done) // the cleanup's stop then returns at once
		return code
	case <-time.After(d):
		t.Fatalf("agent still running after %v; stderr:\n%s", d, a.stderr)
		return -1
	}
}

// memberRow returns name's row of `rumor members -o json` asked of addr.
func memberRow(t *testing.T, addr, name string) (node.MemberInfo, bool) {
	t.Helper()
	for _, m := range decode[[]node.MemberInfo](t, ok(t, "members", "-o", "json", "--addr", addr)) {
		if m.Name == name {
			return m, true
		}
	}
	return node.MemberInfo{}, false
}

// TestLeaveAndRemove is issue 6 through the CLI: three agents; `rumor
// leave` on the third follows its hand-over until it has left and its
// agent exits by itself with 0, the other two hold every key; `rumor
// remove` refuses a live member and an unknown name in one line, and
// declares a stopped agent left.
func TestLeaveAndRemove(t *testing.T) {
	type ag struct {
		name, bind, http string
		a                *agent
	}
	ags := make([]*ag, 3)
	for i := range ags {
		g := &ag{name: fmt.Sprintf("a%d", i+1), bind: freeAddr(t), http: closedAddr(t)}
		args := []string{"--name", g.name, "--data", t.TempDir(), "--bind", g.bind, "--rpc", closedAddr(t),
			"--http", g.http, "--no-sync", "--log-level", "error"}
		if i > 0 {
			args = append(args, "--join", ags[0].bind)
		}
		g.a = startAgent(t, args...)
		g.a.waitHealthy(t, g.http)
		ags[i] = g
	}
	a1, a2, a3 := ags[0], ags[1], ags[2]
	eventually(t, 15*time.Second, func() error {
		for _, g := range ags {
			for _, other := range ags {
				m, found := memberRow(t, g.http, other.name)
				if !found || m.State != node.StateAlive || m.Status != node.StatusMember {
					return fmt.Errorf("%s sees %s as %+v", g.name, other.name, m)
				}
			}
		}
		return nil
	})

	// Keys written through every agent, w=all: each of the three holds all.
	const keys = 30
	for i := range keys {
		ok(t, "put", fmt.Sprintf("leave-%d", i), fmt.Sprintf("value-%d", i), "--addr", ags[i%3].http, "--w", "all")
	}

	// Leave: the command follows the hand-over and returns once a3 has
	// left; its agent stops by itself.
	start := time.Now()
	r := ok(t, "leave", "--addr", a3.http)
	if !strings.Contains(r.stdout, "is leaving\n") || !strings.Contains(r.stdout, "left") {
		t.Errorf("leave output: %v", r)
	}
	if code := a3.a.waitExit(t, 15*time.Second); code != 0 {
		t.Fatalf("a3 exited with %d after leaving; stderr:\n%s", code, a3.a.stderr)
	}
	t.Logf("leave returned and a3's agent exited after %v; output:\n%s", time.Since(start).Round(time.Millisecond), r.stdout)
	if r := rumor(t, "status", "--addr", a3.http); r.code != exitError {
		t.Errorf("a3's API still answers after its agent exited: %v", r)
	}

	// N=3 on two nodes: both hold every key, in their own copy.
	for _, g := range []*ag{a1, a2} {
		for i := range keys {
			r := ok(t, "get", fmt.Sprintf("leave-%d", i), "--local", "--addr", g.http)
			if want := fmt.Sprintf("value-%d\n", i); r.stdout != want {
				t.Errorf("%s: get --local leave-%d = %q, want %q", g.name, i, r.stdout, want)
			}
		}
	}
	// Both survivors show a3 left, as soon as they know.
	eventually(t, 10*time.Second, func() error {
		for _, g := range []*ag{a1, a2} {
			if m, _ := memberRow(t, g.http, "a3"); m.Status != node.StatusLeft || m.State != node.StateLeft {
				return fmt.Errorf("%s shows a3 as %+v", g.name, m)
			}
		}
		return nil
	})
	if out := ok(t, "members", "--addr", a1.http).stdout; !regexpLine(out, "a3", "left", "left") {
		t.Errorf("members table does not show a3 left:\n%s", out)
	}

	// remove refuses a member it can reach, and an unknown name.
	wantError(t, rumor(t, "remove", "a2", "--addr", a1.http), exitError, "a2 is reachable", "leave")
	wantError(t, rumor(t, "remove", "nosuch", "--addr", a1.http), exitError, "no such member", "nosuch")
	wantError(t, rumor(t, "remove", "--addr", a1.http), exitError, "remove needs the member's NAME")

	// Stop a2 without leaving (a crash as far as the cluster knows): once
	// a1 stops reaching it, remove declares it left.
	if code := a2.a.stop(t); code != 0 {
		t.Fatalf("a2 exit %d; stderr:\n%s", code, a2.a.stderr)
	}
	stopped := time.Now()
	var last result
	eventually(t, 20*time.Second, func() error {
		last = rumor(t, "remove", "a2", "--addr", a1.http)
		if last.code != 0 {
			return fmt.Errorf("%v", last)
		}
		return nil
	})
	t.Logf("remove of the stopped a2 accepted %v after it stopped", time.Since(stopped).Round(time.Millisecond))
	if last.stdout != "a2 removed; its ranges are being re-replicated\n" || last.err != "" {
		t.Errorf("remove output: %v", last)
	}
	if m, _ := memberRow(t, a1.http, "a2"); m.Status != node.StatusLeft || m.State != node.StateLeft {
		t.Errorf("a1 shows the removed a2 as %+v", m)
	}
	// a1 alone still serves every key.
	for i := range keys {
		if r := ok(t, "get", fmt.Sprintf("leave-%d", i), "--addr", a1.http); r.stdout != fmt.Sprintf("value-%d\n", i) {
			t.Errorf("a1 alone: get leave-%d = %q", i, r.stdout)
		}
	}
	if code := a1.a.stop(t); code != 0 {
		t.Errorf("a1 exit %d; stderr:\n%s", code, a1.a.stderr)
	}
}

// regexpLine reports whether some line of a table has the given fields in
// this order (other columns between them allowed).
func regexpLine(table string, fields ...string) bool {
	for _, line := range strings.Split(table, "\n") {
		cols := strings.Fields(line)
		i := 0
		for _, c := range cols {
			if i < len(fields) && c == fields[i] {
				i++
			}
		}
		if i == len(fields) {
			return true
		}
	}
	return false
}
