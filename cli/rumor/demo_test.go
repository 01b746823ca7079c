package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// demoDir returns the data directory the demo announced.
func demoDir(t *testing.T, out string) string {
	t.Helper()
	m := regexp.MustCompile(`data in (\S+) \(removed on exit\)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no data directory in the demo's output:\n%s", out)
	}
	return m[1]
}

// wantGone checks that the demo removed its data directory and left
// nothing in tmp.
func wantGone(t *testing.T, dir, tmp string) {
	t.Helper()
	if filepath.Dir(dir) != tmp {
		t.Errorf("demo data in %s, not under TMPDIR %s", dir, tmp)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("demo data directory %s still there (stat: %v)", dir, err)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("demo left %d entries in %s", len(ents), tmp)
	}
}

// TestDemo runs the demo as the issue describes it. It prefers the
// README's ports (7946…) and falls back to free ones when they are busy, so
// it passes either way.
func TestDemo(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	start := time.Now()
	r := ok(t, "demo", "--duration", "1s")
	if d := time.Since(start); d < time.Second {
		t.Errorf("demo returned after %v, before --duration", d)
	}
	out := r.stdout
	wantGone(t, demoDir(t, out), tmp)

	// The node table: each node's HTTP, gossip and RPC address.
	table := regexp.MustCompile(`(?m)^  (n\d)  http (\S+)\s+gossip (\S+)\s+rpc (\S+)$`).FindAllStringSubmatch(out, -1)
	if len(table) != 3 {
		t.Fatalf("want 3 rows in the node table, got %d:\n%s", len(table), out)
	}
	seen := map[string]bool{}
	for i, row := range table {
		if row[1] != "n"+string(rune('1'+i)) {
			t.Errorf("row %d names %s", i, row[1])
		}
		for _, addr := range row[2:] {
			host, port, err := net.SplitHostPort(addr)
			if err != nil || host != "127.0.0.1" || port == "0" {
				t.Errorf("node %s: address %q", row[1], addr)
			}
			if seen[addr] {
				t.Errorf("address %s used twice", addr)
			}
			seen[addr] = true
		}
	}
	first, last := table[0][2], table[2][2]

	for _, want := range []string{
		"Rumor demo: 3 nodes, data in ",
		"All 3 nodes see each other.",
		"  $ rumor --addr " + first + " put greeting hello\n",
		"  $ rumor --addr " + last + " get greeting\n    hello\n",
		`    siblings: ["hello" "hi"]`,
		"    context:  ",
		"  $ rumor --addr " + first + " put greeting 'hello, world' --context <that context>\n",
		"Try it yourself",
		"go run ./cli/rumor --addr " + last + " get colour",
		"  $ rumor --addr " + first + " status\n    3 nodes, N=3, ",
		"    NAME  STATE  STATUS  ZONE  OWNS",
		"curl -s http://" + first + "/metrics",
		"http://" + first + "/ui",
		"Serving for 1s.\n",
		"Stopping the demo cluster.\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if regexp.MustCompile(`(?m) +$`).MatchString(out) {
		t.Errorf("demo output has trailing blanks:\n%s", out)
	}
	// Every node holds the resolved value (N=3 on 3 nodes).
	if n := strings.Count(out, "get greeting --local\n    hello, world\n"); n != 3 {
		t.Errorf("%d of 3 nodes showed the resolved value:\n%s", n, out)
	}
	// The suggested commands name the first node only when it is not on
	// the default address.
	if (first == "127.0.0.1:7948") == strings.Contains(out, "go run ./cli/rumor --addr "+first+" members") {
		t.Errorf("first node on %s, suggested commands:\n%s", first, out)
	}
}

// TestDemoCancel runs a one-node demo without --duration and stops it the
// way SIGINT would.
func TestDemoCancel(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runContext(ctx, []string{"rumor", "demo", "--nodes", "1", "--log-level", "error"}, &stdout, &stderr)
	}()
	eventually(t, 20*time.Second, func() error {
		select {
		case code := <-done:
			t.Fatalf("demo exited with %d before serving:\n%s\n%s", code, stdout.String(), stderr.String())
		default:
		}
		if !strings.Contains(stdout.String(), "Serving until interrupted (Ctrl-C).") {
			return os.ErrNotExist
		}
		return nil
	})
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d; stderr: %s", code, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("demo did not stop")
	}
	out := stdout.String()
	for _, want := range []string{"Rumor demo: 1 nodes", "All 1 nodes see each other.", `siblings: ["hello" "hi"]`, "Stopping the demo cluster."} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	wantGone(t, demoDir(t, out), tmp)
}

func TestDemoErrors(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--nodes", "0"}, "--nodes must be between 1 and 32"},
		{[]string{"--nodes", "33"}, "--nodes must be between 1 and 32"},
		{[]string{"--log-level", "loud"}, "bad --log-level"},
		{[]string{"--duration", "soon"}, `invalid value "soon" for flag -duration`},
		{[]string{"now"}, `demo takes no arguments, got "now"`},
	} {
		wantError(t, rumor(t, append([]string{"demo"}, tc.args...)...), exitError, tc.want)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("failed demos left %d entries in TMPDIR", len(ents))
	}
}

func TestDemoPorts(t *testing.T) {
	// A free triple is taken as is.
	bind, rpc, http := freeAddr(t), closedAddr(t), closedAddr(t)
	if !portsFree(bind, rpc, http) {
		t.Fatalf("portsFree(%s, %s, %s) = false for free ports", bind, rpc, http)
	}
	// Any busy one of the three makes the triple unusable: hold each in
	// turn (TCP, and UDP for the gossip port).
	for i := range 3 {
		addrs := []string{freeAddr(t), closedAddr(t), closedAddr(t)}
		l, err := net.Listen("tcp", addrs[i])
		if err != nil {
			t.Fatal(err)
		}
		if portsFree(addrs[0], addrs[1], addrs[2]) {
			t.Errorf("portsFree with %s held by TCP = true", addrs[i])
		}
		l.Close()
	}
	gossip := freeAddr(t)
	u, err := net.ListenPacket("udp", gossip)
	if err != nil {
		t.Fatal(err)
	}
	if portsFree(gossip, closedAddr(t), closedAddr(t)) {
		t.Errorf("portsFree with the gossip port held by UDP = true")
	}
	u.Close()

	// Node 7 of the demo would use 8016–8018; hold 8018 (if someone else
	// already does, the fallback is taken all the same).
	if l, err := net.Listen("tcp", "127.0.0.1:8018"); err == nil {
		defer l.Close()
	}
	bind, rpc, http = demoPorts(7)
	if bind == "127.0.0.1:8016" || rpc != "127.0.0.1:0" || http != "127.0.0.1:0" {
		t.Fatalf("demoPorts(7) with 8018 busy = %s %s %s, want a free gossip port and :0", bind, rpc, http)
	}
	if _, port, _ := net.SplitHostPort(bind); port == "0" {
		t.Fatalf("fallback gossip address %s has no fixed port", bind)
	}
	if !portsFree(bind, closedAddr(t), closedAddr(t)) {
		t.Errorf("fallback gossip address %s is not free", bind)
	}
}
