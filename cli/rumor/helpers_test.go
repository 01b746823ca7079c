package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rumorkv/rumor/node"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a running
// agent's logger and the test reading it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// result is one run of the program.
type result struct {
	args        []string
	code        int
	stdout, err string
}

func (r result) String() string {
	return fmt.Sprintf("%q: exit %d\nstdout: %q\nstderr: %q", r.args, r.code, r.stdout, r.err)
}

// rumor runs the program with args (without the program name).
func rumor(t testing.TB, args ...string) result {
	t.Helper()
	return rumorContext(t, context.Background(), args...)
}

func rumorContext(t testing.TB, ctx context.Context, args ...string) result {
	t.Helper()
	var stdout, stderr syncBuffer
	full := append([]string{"rumor"}, args...)
	code := runContext(ctx, full, &stdout, &stderr)
	return result{args: args, code: code, stdout: stdout.String(), err: stderr.String()}
}

// ok runs the program and fails the test unless it exits 0.
func ok(t testing.TB, args ...string) result {
	t.Helper()
	r := rumor(t, args...)
	if r.code != 0 {
		t.Fatalf("want success, got %v", r)
	}
	return r
}

// wantError checks that r failed with code, an empty stdout (unless
// allowStdout) and exactly one "rumor: …" line on stderr containing every
// string of want.
func wantError(t testing.TB, r result, code int, want ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("want exit %d, got %v", code, r)
	}
	if r.stdout != "" {
		t.Errorf("error printed to stdout: %v", r)
	}
	wantOneLine(t, r)
	for _, w := range want {
		if !strings.Contains(r.err, w) {
			t.Errorf("stderr %q does not contain %q", r.err, w)
		}
	}
}

// wantOneLine checks that stderr is exactly one "rumor: …" line.
func wantOneLine(t testing.TB, r result) {
	t.Helper()
	if !strings.HasPrefix(r.err, "rumor: ") || !strings.HasSuffix(r.err, "\n") || strings.Count(r.err, "\n") != 1 {
		t.Errorf("stderr is not exactly one \"rumor: …\" line: %v", r)
	}
}

// freeAddr returns a loopback address whose port is free for TCP and UDP.
func freeAddr(t testing.TB) string {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return addr
	}
	t.Fatal("no free port")
	return ""
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startCluster opens size nodes on loopback with fast failure detection
// (as node/cluster_test.go does), all joining through the first, and waits
// until every node sees every other alive and owning its ranges.
func startCluster(t testing.TB, size int) []*node.Node {
	t.Helper()
	return startClusterWith(t, size, nil)
}

// startClusterWith is startCluster with tweak applied to each node's
// configuration before it opens.
func startClusterWith(t testing.TB, size int, tweak func(*node.Config)) []*node.Node {
	t.Helper()
	var nodes []*node.Node
	var seed string
	for i := range size {
		cfg := node.DefaultConfig(fmt.Sprintf("n%d", i+1), t.TempDir())
		cfg.Insecure = true // no gossip key, TLS or tokens here
		cfg.BindAddr = freeAddr(t)
		cfg.RPCAddr = "127.0.0.1:0"
		cfg.HTTPAddr = "127.0.0.1:0"
		if seed != "" {
			cfg.Join = []string{seed}
		}
		cfg.Memberlist.ProbeInterval = 100 * time.Millisecond
		cfg.Memberlist.ProbeTimeout = 50 * time.Millisecond
		cfg.Memberlist.GossipInterval = 20 * time.Millisecond
		cfg.Memberlist.PushPullInterval = time.Second
		cfg.Memberlist.SuspicionMult = 2
		cfg.Memberlist.DeadNodeReclaimTime = time.Second
		cfg.RejoinInterval = 300 * time.Millisecond
		cfg.HintInterval = 100 * time.Millisecond
		cfg.ReplicaTimeout = time.Second
		cfg.NoSync = true
		cfg.Logger = testLogger()
		if tweak != nil {
			tweak(cfg)
		}
		n, err := node.Open(cfg)
		if err != nil {
			t.Fatalf("open %s: %v", cfg.Name, err)
		}
		t.Cleanup(func() { n.Close() })
		if seed == "" {
			seed = n.GossipAddr()
		}
		nodes = append(nodes, n)
	}
	eventually(t, 10*time.Second, func() error {
		for _, n := range nodes {
			alive := 0
			for _, m := range n.Members() {
				if m.State == node.StateAlive {
					alive++
				}
			}
			ri := n.Ring()
			if alive != size || len(ri.Members) != size {
				return fmt.Errorf("%s sees %d alive, ring of %d; want %d", n.Name(), alive, len(ri.Members), size)
			}
			for _, m := range ri.Members {
				if m.Status != node.StatusMember {
					return fmt.Errorf("%s sees %s %s", n.Name(), m.Name, m.Status)
				}
			}
		}
		return nil
	})
	return nodes
}

func eventually(t testing.TB, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMain runs the package's agents insecure unless a test says otherwise
// (t.Setenv("RUMOR_INSECURE", "") — an empty variable counts as unset):
// most tests are about something else than gossip keys, TLS and tokens.
func TestMain(m *testing.M) {
	os.Setenv("RUMOR_INSECURE", "true")
	os.Exit(m.Run())
}
