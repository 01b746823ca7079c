package node

import (
	"bytes"
	"context"
	"errors"
	"log"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestAdvertiseAddr(t *testing.T) {
	saved := privateIP
	defer func() { privateIP = saved }()
	privateIP = func() (string, error) { return "10.1.2.3", nil }
	tests := []struct {
		bind, adv, want, err string
	}{
		{bind: "127.0.0.1:7946", want: "127.0.0.1:7946"},
		{bind: "0.0.0.0:7946", want: "10.1.2.3:7946"},
		{bind: "[::]:7946", want: "10.1.2.3:7946"},
		{bind: ":7946", want: "10.1.2.3:7946"},
		{bind: "0.0.0.0:7946", adv: "192.0.2.1:17946", want: "192.0.2.1:17946"},
		{bind: "0.0.0.0:7946", adv: "192.0.2.1", want: "192.0.2.1:7946"}, // --advertise $(POD_IP)
		{bind: "0.0.0.0:7946", adv: "2001:db8::1", want: "[2001:db8::1]:7946"},
		{bind: "0.0.0.0:7946", adv: "node-1.example", want: "node-1.example:7946"},
		{bind: "0.0.0.0:7946", adv: "0.0.0.0:7946", err: "unspecified host"},
		{bind: "0.0.0.0:7946", adv: "[::]:7946", err: "unspecified host"},
		{bind: "0.0.0.0:7946", adv: "a:b:c", err: "advertise address"},
		{bind: "nonsense", err: "bind address"},
	}
	for _, tc := range tests {
		got, err := advertiseAddr(tc.bind, tc.adv)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("advertiseAddr(%q, %q) = %q, %v; want an error with %q", tc.bind, tc.adv, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("advertiseAddr(%q, %q) = %q, %v; want %q", tc.bind, tc.adv, got, err, tc.want)
		}
	}
	privateIP = func() (string, error) { return "", errors.New("no interfaces") }
	if _, err := advertiseAddr("0.0.0.0:7946", ""); err == nil || !strings.Contains(err.Error(), "--advertise") {
		t.Errorf("no private IP: %v, want an error asking for --advertise", err)
	}
	if got, err := advertiseAddr("0.0.0.0:7946", "192.0.2.1"); err != nil || got != "192.0.2.1:7946" {
		t.Errorf("with --advertise and no private IP: %q, %v", got, err)
	}
}

func TestAdvertised(t *testing.T) {
	tests := []struct{ explicit, listen, gossip, want string }{
		{"", "127.0.0.1:7947", "127.0.0.1:7946", "127.0.0.1:7947"},
		{"", "0.0.0.0:7947", "10.0.0.1:7946", "10.0.0.1:7947"},
		{"", "[::]:7947", "10.0.0.1:7946", "10.0.0.1:7947"},
		{"", "[::]:7947", "[2001:db8::1]:7946", "[2001:db8::1]:7947"},
		{"", "10.0.0.2:7947", "10.0.0.1:7946", "10.0.0.2:7947"}, // a specific host stays
		{"203.0.113.9:80", "0.0.0.0:7948", "10.0.0.1:7946", "203.0.113.9:80"},
		{"", "", "10.0.0.1:7946", ""}, // no HTTP server
	}
	for _, tc := range tests {
		if got := advertised(tc.explicit, tc.listen, tc.gossip); got != tc.want {
			t.Errorf("advertised(%q, %q, %q) = %q, want %q", tc.explicit, tc.listen, tc.gossip, got, tc.want)
		}
	}
}

// TestOpenAdvertises opens a node listening on every interface and checks
// the addresses it announces: derived from the advertise host, or the
// explicit ones (NAT).
func TestOpenAdvertises(t *testing.T) {
	for _, explicit := range []bool{false, true} {
		cfg := DefaultConfig("adv", "")
		cfg.Insecure = true // no gossip key, TLS or tokens here
		cfg.InMemory = true
		cfg.BindAddr = "0.0.0.0:0"
		cfg.AdvertiseAddr = "127.0.0.1:0"
		cfg.RPCAddr = "0.0.0.0:0"
		cfg.HTTPAddr = "0.0.0.0:0"
		if explicit {
			cfg.AdvertiseRPCAddr = "198.51.100.7:17947"
			cfg.AdvertiseHTTPAddr = "198.51.100.7:80"
		}
		cfg.Logger = slog.New(slog.DiscardHandler)
		n, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ms := n.Members()
		if len(ms) != 1 {
			t.Fatalf("members %+v", ms)
		}
		m := ms[0]
		_, rport, _ := strings.Cut(n.RPCListenAddr(), "]:")
		_, hport, _ := strings.Cut(n.HTTPListenAddr(), "]:")
		wantRPC, wantHTTP := "127.0.0.1:"+rport, "127.0.0.1:"+hport
		if explicit {
			wantRPC, wantHTTP = cfg.AdvertiseRPCAddr, cfg.AdvertiseHTTPAddr
		}
		if rport == "" || hport == "" {
			t.Errorf("listen addresses %q %q: want [::]:port", n.RPCListenAddr(), n.HTTPListenAddr())
		}
		if m.RPC != wantRPC || m.HTTP != wantHTTP || n.RPCAddr() != wantRPC || n.HTTPAddr() != wantHTTP {
			t.Errorf("explicit=%v: member %+v, RPCAddr %q, HTTPAddr %q; want rpc %q http %q", explicit, m, n.RPCAddr(), n.HTTPAddr(), wantRPC, wantHTTP)
		}
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	}
	cfg := DefaultConfig("adv", "")
	cfg.Insecure = true // no gossip key, TLS or tokens here
	cfg.InMemory = true
	cfg.AdvertiseHTTPAddr = "0.0.0.0:80"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "unspecified host") {
		t.Errorf("an unspecified advertised HTTP host: %v", err)
	}
}

func TestMemberlistLevel(t *testing.T) {
	tests := []struct {
		line  string
		level slog.Level
		msg   string
	}{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1234", slog.LevelDebug, "Stream connection from=127.0.0.1:1234"},
		{"[INFO] memberlist: Marking n2 as failed, suspect timeout reached (0 peer confirmations)", slog.LevelInfo, "Marking n2 as failed, suspect timeout reached (0 peer confirmations)"},
		{"[WARN] memberlist: Refuting a suspect message (from: n2)", slog.LevelWarn, "Refuting a suspect message (from: n2)"},
		{"[ERR] memberlist: Failed fallback TCP ping: timeout", slog.LevelError, "Failed fallback TCP ping: timeout"},
		{"[ERR] memberlist: Failed to send indirect UDP ping: write udp 127.0.0.1:7946->127.0.0.1:7956: use of closed network connection", slog.LevelDebug,
			"Failed to send indirect UDP ping: write udp 127.0.0.1:7946->127.0.0.1:7956: use of closed network connection"},
		{"[ERROR] memberlist: Failed to encrypt local state: x", slog.LevelError, "Failed to encrypt local state: x"},
		// The node reports join failures itself.
		{"[WARN] memberlist: failed to resolve seed:7946: no such host", slog.LevelDebug, "failed to resolve seed:7946: no such host"},
		{"no prefix at all", slog.LevelInfo, "no prefix at all"},
	}
	for _, tc := range tests {
		level, msg := memberlistLevel(tc.line)
		if level != tc.level || msg != tc.msg {
			t.Errorf("memberlistLevel(%q) = %v %q, want %v %q", tc.line, level, msg, tc.level, tc.msg)
		}
	}
	// Through the writer memberlist's log.Logger uses.
	var buf bytes.Buffer
	n := &Node{log: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	l := log.New(slogWriter{n}, "", 0)
	l.Printf("[DEBUG] memberlist: hidden at info")
	l.Printf("[WARN] memberlist: Was able to connect to n2 over TCP but UDP probes failed")
	if got := buf.String(); strings.Contains(got, "hidden") ||
		!strings.Contains(got, `"level":"WARN","msg":"Was able to connect to n2 over TCP but UDP probes failed","component":"memberlist"`) {
		t.Errorf("memberlist through slog: %s", got)
	}
}

func TestLogLimiter(t *testing.T) {
	var l logLimiter
	if ok, events, sum := l.note(time.Hour, 5); !ok || events != 1 || sum != 5 {
		t.Fatalf("first note: %v %d %d", ok, events, sum)
	}
	for range 10 {
		if ok, _, _ := l.note(time.Hour, 2); ok {
			t.Fatal("a repeat within the interval was let through")
		}
	}
	// Past the interval the held-back events are counted in.
	l.mu.last = time.Now().Add(-2 * time.Hour)
	if ok, events, sum := l.note(time.Hour, 1); !ok || events != 11 || sum != 21 {
		t.Fatalf("after the interval: %v %d %d, want true 11 21", ok, events, sum)
	}
}

// TestResolveSeeds: a seed's host name is looked up (every address it
// has), an IP address is kept, this node's own address is left out and a
// name that does not resolve is an error naming the seed.
func TestResolveSeeds(t *testing.T) {
	m := &membership{n: &Node{ctx: context.Background()}}
	m.mu.self.Gossip = "127.0.0.1:7000"
	got, err := m.resolve([]string{"localhost:7001", "127.0.0.1:7000", "192.0.2.1:7002", "localhost:7000"})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range got {
		host, _, err := net.SplitHostPort(a)
		if err != nil || net.ParseIP(host) == nil || a == "127.0.0.1:7000" {
			t.Errorf("resolve = %q: %q is not a peer's IP:port", got, a)
		}
	}
	if !slices.Contains(got, "127.0.0.1:7001") || !slices.Contains(got, "192.0.2.1:7002") {
		t.Errorf("resolve = %q, want 127.0.0.1:7001 (localhost) and 192.0.2.1:7002", got)
	}
	got, err = m.resolve([]string{"no-such-host.invalid:7946", "192.0.2.1:7002"})
	if err == nil || !strings.Contains(err.Error(), "resolve seed no-such-host.invalid:7946") || !equalStrings(got, []string{"192.0.2.1:7002"}) {
		t.Errorf("unresolvable seed: %q, %v", got, err)
	}
}

func equalStrings(a, b []string) bool {
	return strings.Join(a, ",") == strings.Join(b, ",")
}
