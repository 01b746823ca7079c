package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rumorkv/rumor/cli/client"
	"github.com/rumorkv/rumor/node"
)

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitMembers waits until the agent at httpAddr lists want members alive
// and owning ranges, and returns the listing.
func waitMembers(t *testing.T, httpAddr string, want int) []node.MemberInfo {
	t.Helper()
	var ms []node.MemberInfo
	eventually(t, 15*time.Second, func() error {
		r := rumor(t, "members", "-o", "json", "--addr", httpAddr)
		if r.code != 0 {
			return fmt.Errorf("%v", r)
		}
		ms = decode[[]node.MemberInfo](t, r)
		alive := 0
		for _, m := range ms {
			if m.State == node.StateAlive && m.Status == node.StatusMember {
				alive++
			}
		}
		if alive != want {
			return fmt.Errorf("%d of %d members alive and owning: %+v", alive, len(ms), ms)
		}
		return nil
	})
	slices.SortFunc(ms, func(x, y node.MemberInfo) int { return strings.Compare(x.Name, y.Name) })
	return ms
}

// TestAgentListenAllInterfaces runs two agents as a deployment does: every
// listener on 0.0.0.0, each agent advertising a routable address (here
// 127.0.0.1, once as a bare IP that takes the bind port), the second
// joining the first by host name. The members list only reachable
// addresses, and a write on one is read on the other.
func TestAgentListenAllInterfaces(t *testing.T) {
	clearEnv(t)
	g1, g2 := portOf(t, freeAddr(t)), portOf(t, freeAddr(t))
	r1, r2 := portOf(t, closedAddr(t)), portOf(t, closedAddr(t))
	h1, h2 := portOf(t, closedAddr(t)), portOf(t, closedAddr(t))
	all := func(p string) string { return "0.0.0.0:" + p }
	lo := func(p string) string { return "127.0.0.1:" + p }

	a1 := startAgent(t, "--name", "b1", "--in-memory", "--bind", all(g1), "--advertise", "127.0.0.1",
		"--rpc", all(r1), "--http", all(h1), "--log-level", "warn")
	a1.waitHealthy(t, lo(h1))
	// The second takes its settings from the environment, as a container
	// does, and joins through a DNS name.
	t.Setenv("RUMOR_BIND", all(g2))
	t.Setenv("RUMOR_ADVERTISE", lo(g2))
	t.Setenv("RUMOR_RPC", all(r2))
	t.Setenv("RUMOR_HTTP", all(h2))
	t.Setenv("RUMOR_JOIN", "localhost:"+g1)
	a2 := startAgent(t, "--name", "b2", "--in-memory", "--log-level", "warn")
	a2.waitHealthy(t, lo(h2))
	clearEnv(t)

	// The listen addresses follow the advertised ones (Go reports a
	// 0.0.0.0 TCP listener as [::], dual-stack).
	if want := fmt.Sprintf("rumor agent b1: gossip %s, rpc %s, http %s\nrumor agent b1: listening on gossip %s, rpc ",
		lo(g1), lo(r1), lo(h1), all(g1)); !strings.Contains(a1.stderr.String(), want) {
		t.Errorf("b1 stderr %q lacks %q", a1.stderr, want)
	}
	want := []node.MemberInfo{
		{Name: "b1", Gossip: lo(g1), RPC: lo(r1), HTTP: lo(h1), State: "alive", Status: "member"},
		{Name: "b2", Gossip: lo(g2), RPC: lo(r2), HTTP: lo(h2), State: "alive", Status: "member"},
	}
	for _, at := range []string{lo(h1), lo(h2)} {
		ms := waitMembers(t, at, 2)
		if len(ms) != 2 {
			t.Fatalf("members at %s: %+v", at, ms)
		}
		for i := range want {
			ms[i].ID = ""
			if ms[i] != want[i] {
				t.Errorf("at %s member %d = %+v, want %+v", at, i, ms[i], want[i])
			}
		}
	}
	ri := decode[node.RingInfo](t, ok(t, "ring", "-o", "json", "--addr", lo(h2)))
	for _, m := range ri.Members {
		if host, _, _ := net.SplitHostPort(m.HTTP); host != "127.0.0.1" {
			t.Errorf("ring lists %s's client API at %q", m.Name, m.HTTP)
		}
	}

	// W=all may be met by a hint when a replica is slow (a loaded CI
	// machine): the copy then arrives by handoff, so wait for it.
	local := func(key, at, want string) {
		t.Helper()
		eventually(t, 10*time.Second, func() error {
			if r := rumor(t, "get", key, "--addr", at, "--local"); r.code != 0 || r.stdout != want+"\n" {
				return fmt.Errorf("get %s --local at %s: %v", key, at, r)
			}
			return nil
		})
	}
	ok(t, "put", "bound-key", "bound-value", "--addr", lo(h1), "--w", "all")
	local("bound-key", lo(h2), "bound-value")
	ok(t, "put", "back", "again", "--addr", lo(h2), "--w", "all")
	local("back", lo(h1), "again")
	for _, a := range []*agent{a2, a1} {
		if code := a.stop(t); code != 0 {
			t.Errorf("exit %d; stderr:\n%s", code, a.stderr)
		}
	}
}

// TestAgentSeedRetried: a seed that does not resolve, or does not answer
// yet, is neither fatal nor silent: the agent serves, says it is
// retrying, and joins once a seed comes up.
func TestAgentSeedRetried(t *testing.T) {
	clearEnv(t)
	later := freeAddr(t) // the seed that comes up later
	h1, h2 := closedAddr(t), closedAddr(t)
	a1 := startAgent(t, "--name", "s1", "--in-memory", "--bind", freeAddr(t), "--rpc", closedAddr(t), "--http", h1,
		"--join", "no-such-host.invalid:7946,localhost:"+portOf(t, later), "--log-level", "info")
	a1.waitHealthy(t, h1)
	eventually(t, 10*time.Second, func() error {
		s := a1.stderr.String()
		for _, w := range []string{"cannot join the cluster yet: no seed or known member answered; retrying", "no-such-host.invalid:7946", "localhost:" + portOf(t, later)} {
			if !strings.Contains(s, w) {
				return fmt.Errorf("stderr lacks %q:\n%s", w, s)
			}
		}
		return nil
	})
	if n := strings.Count(a1.stderr.String(), "cannot join the cluster yet"); n != 1 {
		t.Errorf("the retry warning was written %d times within a minute, want once:\n%s", n, a1.stderr)
	}
	a2 := startAgent(t, "--name", "s2", "--in-memory", "--bind", later, "--rpc", closedAddr(t), "--http", h2, "--log-level", "warn")
	a2.waitHealthy(t, h2)
	waitMembers(t, h1, 2)
	if !strings.Contains(a1.stderr.String(), "joined the cluster") {
		t.Errorf("no 'joined the cluster' line:\n%s", a1.stderr)
	}
	for _, a := range []*agent{a1, a2} {
		if code := a.stop(t); code != 0 {
			t.Errorf("exit %d; stderr:\n%s", code, a.stderr)
		}
	}
}

// TestAgentLogs: at info level the log does not grow with requests, and
// with --log-format json every line of stderr is a JSON record with time,
// level and msg.
func TestAgentLogs(t *testing.T) {
	clearEnv(t)
	h1, h2 := closedAddr(t), closedAddr(t)
	seed := freeAddr(t)
	args := func(name, bind, http string, more ...string) []string {
		return append([]string{"--name", name, "--in-memory", "--bind", bind, "--rpc", closedAddr(t), "--http", http,
			"--log-level", "info", "--log-format", "json"}, more...)
	}
	a1 := startAgent(t, args("l1", seed, h1)...)
	a1.waitHealthy(t, h1)
	a2 := startAgent(t, args("l2", freeAddr(t), h2, "--join", seed)...)
	a2.waitHealthy(t, h2)
	waitMembers(t, h1, 2)
	waitMembers(t, h2, 2)

	lines := func() int {
		return strings.Count(a1.stderr.String(), "\n") + strings.Count(a2.stderr.String(), "\n")
	}
	// Let start-up settle (join complete, status changes gossiped).
	prev := lines()
	for range 40 {
		time.Sleep(250 * time.Millisecond)
		if n := lines(); n == prev {
			break
		} else {
			prev = n
		}
	}
	before1, before2 := a1.stderr.String(), a2.stderr.String()
	ctx := context.Background()
	c1, c2 := client.New(h1, nil), client.New(h2, nil)
	for i := range 200 {
		key := fmt.Sprintf("log-key-%d", i)
		w, r := c1, c2
		if i%2 == 1 {
			w, r = c2, c1
		}
		if _, err := w.Put(ctx, key, []byte("v"), &client.WriteOptions{W: "all"}); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
		if v, err := r.Get(ctx, key, nil); err != nil || len(v.Values) != 1 {
			t.Fatalf("get %s: %v %v", key, v, err)
		}
	}
	grown := strings.TrimPrefix(a1.stderr.String(), before1) + strings.TrimPrefix(a2.stderr.String(), before2)
	// A few lines may be events that happen meanwhile (none per request:
	// 200 writes and 200 reads would add hundreds).
	if n := strings.Count(grown, "\n"); n > 3 {
		t.Errorf("400 requests added %d log lines at info level:\n%s", n, grown)
	}

	for _, a := range []*agent{a2, a1} {
		if code := a.stop(t); code != 0 {
			t.Errorf("exit %d; stderr:\n%s", code, a.stderr)
		}
	}
	for i, a := range []*agent{a1, a2} {
		out := a.stderr.String()
		if strings.Count(out, "\n") < 3 {
			t.Errorf("agent %d logged only %q", i+1, out)
		}
		for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Errorf("agent %d: line is not JSON (%v): %q", i+1, err, line)
				continue
			}
			for _, k := range []string{"time", "level", "msg"} {
				if s, ok := rec[k].(string); !ok || s == "" {
					t.Errorf("agent %d: record without %s: %q", i+1, k, line)
				}
			}
			if rec["level"] == "DEBUG" {
				t.Errorf("agent %d: debug record at info level: %q", i+1, line)
			}
		}
	}
}
