package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rumorkv/rumor/cli/client"
	"github.com/rumorkv/rumor/node"
)

// freePair returns a loopback gossip address whose port is free for TCP
// and UDP and whose next port is free for TCP (the default RPC address).
func freePair(t *testing.T) (bind, rpc string) {
	t.Helper()
	for range 100 {
		addr := freeAddr(t)
		_, port, _ := net.SplitHostPort(addr)
		p, _ := strconv.Atoi(port)
		next := net.JoinHostPort("127.0.0.1", strconv.Itoa(p+1))
		if l, err := net.Listen("tcp", next); err == nil {
			l.Close()
			return addr, next
		}
	}
	t.Fatal("no free port pair")
	return "", ""
}

// agent is one `rumor agent` run in a goroutine.
type agent struct {
	cancel context.CancelFunc
	done   chan int
	stdout *syncBuffer
	stderr *syncBuffer
}

func startAgent(t *testing.T, args ...string) *agent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a := &agent{cancel: cancel, done: make(chan int, 1), stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	go func() {
		a.done <- runContext(ctx, append([]string{"rumor", "agent"}, args...), a.stdout, a.stderr)
	}()
	t.Cleanup(func() { a.stop(t) })
	return a
}

// stop cancels the agent's context and returns its exit code (-1 if it
// had already been collected).
func (a *agent) stop(t *testing.T) int {
	t.Helper()
	a.cancel()
	select {
	case code, ok := <-a.done:
		if !ok {
			return -1
		}
		close(a.done)
		return code
	case <-time.After(20 * time.Second):
		t.Fatalf("agent did not stop within 20 s; stderr:\n%s", a.stderr)
		return -1
	}
}

// waitHealthy waits until the agent's HTTP API answers, failing early if
// the agent exits.
func (a *agent) waitHealthy(t *testing.T, httpAddr string) {
	t.Helper()
	c := client.New(httpAddr, &client.Options{Timeout: time.Second})
	deadline := time.Now().Add(15 * time.Second)
	for {
		var h map[string]any
		err := c.GetJSON(context.Background(), "/v1/health", &h)
		if err == nil {
			return
		}
		select {
		case code := <-a.done:
			close(a.done)
			t.Fatalf("agent exited with %d before serving; stderr:\n%s", code, a.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent at %s not healthy: %v; stderr:\n%s", httpAddr, err, a.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAgent starts two agents through run(), the second joining the first,
// talks to them with the CLI, and stops them through the context.
func TestAgent(t *testing.T) {
	dir1, dir2 := t.TempDir(), t.TempDir()+"/new/sub" // created if missing
	bind1, rpc1 := freeAddr(t), closedAddr(t)
	http1 := closedAddr(t)
	bind2, rpc2 := freePair(t) // a2 gets the default RPC address: bind port + 1
	http2 := closedAddr(t)

	a1 := startAgent(t, "--name", "a1", "--data", dir1, "--bind", bind1, "--rpc", rpc1, "--http", http1,
		"--zone", "z1", "--log-level", "warn")
	a1.waitHealthy(t, http1)
	// Flags after "agent" in any order, --join as a comma list with blanks
	// and an unreachable seed (retried in the background, not fatal).
	a2 := startAgent(t, "--bind", bind2, "--data", dir2, "--http", http2, "--name", "a2",
		"--join", " "+bind1+", ,"+closedAddr(t), "--zone", "z2", "--log-level", "error", "--log-format", "json")
	a2.waitHealthy(t, http2)

	if want := fmt.Sprintf("rumor agent a1: gossip %s, rpc %s, http %s\n", bind1, rpc1, http1); !strings.Contains(a1.stderr.String(), want) {
		t.Errorf("a1 stderr %q lacks %q", a1.stderr, want)
	}
	// With JSON logs the startup line is a JSON record too.
	if want := fmt.Sprintf(`"msg":"rumor agent started","name":"a2","gossip":%q,"rpc":%q,"http":%q}`, bind2, rpc2, http2); !strings.Contains(a2.stderr.String(), want) {
		t.Errorf("a2 stderr %q lacks %q", a2.stderr, want)
	}

	waitMembers(t, http1, 2) // a joining node owns nothing yet
	ms := decode[[]node.MemberInfo](t, ok(t, "members", "-o", "json", "--addr", http2))
	slices.SortFunc(ms, func(x, y node.MemberInfo) int { return strings.Compare(x.Name, y.Name) })
	if len(ms) != 2 || ms[0].Name != "a1" || ms[1].Name != "a2" {
		t.Fatalf("members: %+v", ms)
	}
	want := []node.MemberInfo{
		{Name: "a1", Gossip: bind1, RPC: rpc1, HTTP: http1, Zone: "z1", State: "alive", Status: "member"},
		{Name: "a2", Gossip: bind2, RPC: rpc2, HTTP: http2, Zone: "z2", State: "alive", Status: "member"},
	}
	for i := range want {
		ms[i].ID = ""
		if ms[i] != want[i] {
			t.Errorf("member %d = %+v, want %+v", i, ms[i], want[i])
		}
	}

	ok(t, "put", "agent-key", "agent-value", "--addr", http1, "--w", "all")
	if r := ok(t, "get", "agent-key", "--addr", http2, "--local"); r.stdout != "agent-value\n" {
		t.Fatalf("get from the second agent: %v", r)
	}

	if code := a2.stop(t); code != 0 {
		t.Errorf("a2 exit %d; stderr:\n%s", code, a2.stderr)
	}
	if code := a1.stop(t); code != 0 {
		t.Errorf("a1 exit %d; stderr:\n%s", code, a1.stderr)
	}
	if a1.stdout.String() != "" || a2.stdout.String() != "" {
		t.Errorf("agents wrote to stdout: %q %q", a1.stdout, a2.stdout)
	}
	for _, d := range []string{dir1, dir2} {
		if ents, err := os.ReadDir(d); err != nil || len(ents) == 0 {
			t.Errorf("data directory %s: %v, %d entries", d, err, len(ents))
		}
	}
	// The ports are released: the first agent restarts on the same ones,
	// with its data.
	a1 = startAgent(t, "--name", "a1", "--data", dir1, "--bind", bind1, "--rpc", rpc1, "--http", http1, "--log-level", "error")
	a1.waitHealthy(t, http1)
	if r := ok(t, "get", "agent-key", "--addr", http1, "--local"); r.stdout != "agent-value\n" {
		t.Fatalf("after restart: %v", r)
	}
	if code := a1.stop(t); code != 0 {
		t.Errorf("restarted a1 exit %d; stderr:\n%s", code, a1.stderr)
	}
}

func TestAgentInMemory(t *testing.T) {
	bind, rpc, http := freeAddr(t), closedAddr(t), closedAddr(t)
	a := startAgent(t, "--in-memory", "--bind", bind, "--rpc", rpc, "--http", http, "--log-level", "error",
		"--replicas", "1", "--r", "quorum", "--w", "primary", "--no-sync", "--vnodes", "16")
	a.waitHealthy(t, http)
	ok(t, "put", "k", "v", "--addr", http)
	if r := ok(t, "get", "k", "--addr", http); r.stdout != "v\n" {
		t.Fatalf("%v", r)
	}
	ri := decode[node.RingInfo](t, ok(t, "ring", "-o", "json", "--addr", http))
	if ri.N != 1 || ri.VNodes != 16 || len(ri.Members) != 1 {
		t.Fatalf("ring: %+v", ri)
	}
	host, _ := os.Hostname()
	if ri.Members[0].Name != host {
		t.Errorf("default name %q, want the host name %q", ri.Members[0].Name, host)
	}
	if code := a.stop(t); code != 0 {
		t.Errorf("exit %d; stderr:\n%s", code, a.stderr)
	}
}

func TestAgentErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	data := t.TempDir()
	free := func() []string {
		return []string{"--bind", freeAddr(t), "--rpc", closedAddr(t), "--http", closedAddr(t), "--log-level", "error"}
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no data", []string{"--name", "x"}, "--data is required (or --in-memory)"},
		{"bad r", []string{"--data", data, "--r", "most"}, `bad --r "most": want 1, 2, …, quorum or all`},
		{"r primary", []string{"--data", data, "--r", "primary"}, `bad --r "primary"`},
		{"bad w", []string{"--data", data, "--w", "0"}, `bad --w "0": want 1, 2, …, quorum, all or primary`},
		{"bad log level", []string{"--data", data, "--log-level", "loud"}, `bad --log-level "loud": want debug, info, warn or error`},
		{"bad log format", []string{"--data", data, "--log-format", "xml"}, `bad --log-format "xml": want text or json`},
		{"stray argument", []string{"--data", data, "extra"}, `agent takes no arguments, got "extra"`},
		{"unknown flag", []string{"--data", data, "--bogus"}, "flag provided but not defined: -bogus (see 'rumor agent --help')"},
		{"flag without value", []string{"--data"}, "flag needs an argument: -data"},
		{"bad int", []string{"--data", data, "--replicas", "three"}, `invalid value "three" for flag -replicas`},
		{"zero replicas", append([]string{"--data", data, "--replicas", "0"}, free()...), "N must be ≥ 1"},
		{"bind port 0 without rpc", []string{"--in-memory", "--bind", "127.0.0.1:0", "--http", closedAddr(t), "--log-level", "error"},
			"must be a fixed number when no RPC address is given"},
		{"http address in use", []string{"--in-memory", "--bind", freeAddr(t), "--rpc", closedAddr(t), "--http", busy.Addr().String(), "--log-level", "error"},
			"address already in use"},
		{"rpc address in use", []string{"--in-memory", "--bind", freeAddr(t), "--rpc", busy.Addr().String(), "--http", closedAddr(t), "--log-level", "error"},
			"address already in use"},
		{"bad bind address", []string{"--in-memory", "--bind", "not-an-address", "--rpc", closedAddr(t), "--http", closedAddr(t), "--log-level", "error"},
			"not-an-address"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, rumor(t, append([]string{"agent"}, tc.args...)...), exitError, tc.want)
		})
	}
}
