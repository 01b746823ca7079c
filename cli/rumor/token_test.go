package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rumorkv/rumor/node"
)

const (
	rwSecret = "rw-secret-0123456789abcdef"
	roSecret = "ro-secret-0123456789abcdef"
)

// startTokenNode opens a node whose client API takes the read-write token
// rwSecret and the read-only token roSecret.
func startTokenNode(t *testing.T) *node.Node {
	t.Helper()
	cfg := node.DefaultConfig("tok", "")
	cfg.Insecure = true // no gossip key, TLS or tokens here
	cfg.InMemory = true
	cfg.BindAddr = freeAddr(t)
	cfg.RPCAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.Logger = testLogger()
	cfg.Tokens = []node.Token{
		{Name: "app", Secret: rwSecret, Scope: node.ScopeReadWrite},
		{Name: "dashboard", Secret: roSecret, Scope: node.ScopeReadOnly},
	}
	n, err := node.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// The CLI against a node with tokens: without one, or with one it does not
// know, every command fails with one clear 401 line; a read-only token
// reads but its writes fail with one 403 line (and write nothing); a
// read-write token does everything. --token and RUMOR_TOKEN both work, the
// flag winning.
func TestCLITokens(t *testing.T) {
	n := startTokenNode(t)
	addr := n.HTTPAddr()
	t.Setenv("RUMOR_ADDR", addr)
	t.Setenv("RUMOR_TOKEN", "")

	ok(t, "put", "k", "v1", "--token", rwSecret)
	commands := [][]string{{"get", "k"}, {"put", "k", "x"}, {"del", "k"}, {"members"}, {"ring"}, {"status"},
		{"status", "--node"}, {"leave", "--no-wait"}, {"remove", "ghost"}}
	for _, cmd := range commands {
		wantError(t, rumor(t, cmd...), exitError, "rumor: 401 unauthorized: this node needs a token (--token or RUMOR_TOKEN)\n")
		wantError(t, rumor(t, append(cmd, "--token", "not-a-token-of-this-node")...), exitError,
			"rumor: 401 unauthorized: the node does not accept this token (check --token or RUMOR_TOKEN)\n")
	}
	// The global flag and the environment variable.
	wantError(t, rumor(t, "--token", "wrong-token-0123456789", "get", "k"), exitError, "401 unauthorized: the node does not accept this token")
	t.Setenv("RUMOR_TOKEN", "wrong-token-0123456789")
	wantError(t, rumor(t, "get", "k"), exitError, "401 unauthorized: the node does not accept this token")

	// Read-only.
	t.Setenv("RUMOR_TOKEN", roSecret)
	if r := ok(t, "get", "k"); r.stdout != "v1\n" {
		t.Fatalf("get with the read-only token: %v", r)
	}
	for _, cmd := range [][]string{{"members"}, {"ring"}, {"status"}, {"status", "--node"}, {"get", "k", "-o", "json"}} {
		ok(t, cmd...)
	}
	for _, cmd := range [][]string{{"put", "k", "x"}, {"del", "k"}, {"leave", "--no-wait"}, {"remove", "ghost"}} {
		wantError(t, rumor(t, cmd...), exitError, "rumor: 403 forbidden: the token is read-only\n")
		wantError(t, rumor(t, append([]string{"--token", roSecret}, cmd...)...), exitError, "rumor: 403 forbidden: the token is read-only\n")
	}
	if r := ok(t, "get", "k", "--token", rwSecret); r.stdout != "v1\n" {
		t.Fatalf("after the read-only token's writes: %v", r)
	}
	if st := n.Members()[0].Status; st != node.StatusMember {
		t.Fatalf("after the read-only token's leave the node is %s", st)
	}

	// Read-write: the flag wins over the variable.
	ok(t, "put", "k", "v2", "--token", rwSecret)
	t.Setenv("RUMOR_TOKEN", rwSecret)
	if r := ok(t, "get", "k"); !strings.Contains(r.stdout, "v2") {
		t.Fatalf("get after the read-write put: %v", r)
	}
	ok(t, "put", "k2", "x")
	ok(t, "del", "k2")
	wantError(t, rumor(t, "remove", "ghost"), exitError, "ghost") // 404 from the node, past the token check
	wantError(t, rumor(t, "put", "k", "x", "--token", roSecret), exitError, "403 forbidden: the token is read-only")
	if r := ok(t, "leave", "--no-wait", "-o", "json"); !strings.Contains(r.stdout, node.StatusLeaving) {
		t.Fatalf("leave: %v", r)
	}
}

// rumor ring asks every member for its transfer progress with the same
// token as the contacted node.
func TestRingFanOutSendsToken(t *testing.T) {
	const token = "ring-token-0123456789"
	var statusAsked, refused atomic.Int32
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			refused.Add(1)
			w.Header().Set("WWW-Authenticate", `Bearer realm="rumor"`)
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintln(w, `{"error":"unauthorized: this node needs a token"}`)
			return
		}
		// Members at another spelling of the address: other nodes, for
		// the client.
		addr := strings.Replace(strings.TrimPrefix(srv.URL, "http://"), "127.0.0.1", "localhost", 1)
		var body any
		switch r.URL.Path {
		case "/v1/ring":
			body = node.RingInfo{N: 2, VNodes: 64, Moving: true, Members: []node.RingMemberInfo{
				{Name: "n1", ID: "01", State: "alive", Status: "member", Ownership: 1, NextOwnership: 0.5, HTTP: addr, RangesLosing: 3},
				{Name: "n2", ID: "02", State: "alive", Status: "joining", NextOwnership: 0.5, HTTP: addr, RangesGaining: 3},
			}}
		case "/v1/status":
			statusAsked.Add(1)
			body = map[string]any{"transfer": node.TransferStatus{State: "joining", Moving: true, KeysLeft: 777}}
		default:
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(body)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	t.Setenv("RUMOR_TOKEN", "")
	out := ok(t, "ring", "--addr", addr, "--token", token).stdout
	if statusAsked.Load() != 2 || refused.Load() != 0 || strings.Count(out, "777") != 2 {
		t.Fatalf("members asked %d times, %d requests refused; output:\n%s", statusAsked.Load(), refused.Load(), out)
	}
	t.Setenv("RUMOR_TOKEN", token)
	if out := ok(t, "ring", "--addr", addr).stdout; strings.Count(out, "777") != 2 || refused.Load() != 0 {
		t.Fatalf("with RUMOR_TOKEN: %d refused; output:\n%s", refused.Load(), out)
	}
}

func TestTokenGenerate(t *testing.T) {
	secret := regexp.MustCompile(`^[A-Za-z0-9_-]{43}\n$`)
	a, b := ok(t, "token", "generate").stdout, ok(t, "token", "generate").stdout
	if !secret.MatchString(a) || !secret.MatchString(b) || a == b {
		t.Fatalf("secrets %q and %q: want two different 43-character URL-safe strings", a, b)
	}
	// A table the agent reads back, appended to a file.
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens.toml")
	var file string
	for _, c := range [][]string{{"--name", "app", "--scope", "read-write"}, {"--name", "dash"}} {
		file += ok(t, append([]string{"token", "generate"}, c...)...).stdout
	}
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	ts, warn, err := node.ReadTokensFile(path)
	if err != nil || warn != "" {
		t.Fatalf("generated file:\n%s\n%v %q", file, err, warn)
	}
	if len(ts) != 2 || ts[0].Name != "app" || ts[0].Scope != node.ScopeReadWrite || ts[1].Name != "dash" ||
		ts[1].Scope != node.ScopeReadOnly || len(ts[0].Secret) != 43 || ts[0].Secret == ts[1].Secret {
		t.Fatalf("generated tokens %v from:\n%s", ts, file)
	}
	wantError(t, rumor(t, "token"), exitError, "token needs an action: generate")
	wantError(t, rumor(t, "token", "list"), exitError, "token needs an action: generate")
	wantError(t, rumor(t, "token", "generate", "--name", "a b"), exitError, `bad --name "a b"`)
	wantError(t, rumor(t, "token", "generate", "--name", "a", "--scope", "admin"), exitError, `bad --scope "admin"`)
	wantError(t, rumor(t, "token", "generate", "--scope", "read-write"), exitError, "--scope goes with --name")
}

// The agent reads --tokens-file (or RUMOR_TOKENS_FILE, or the file key)
// and then wants a token; a bad file stops it before it listens; a file
// others may read is a warning; --insecure is a setting like the others.
func TestAgentTokensFile(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.toml")
	data := fmt.Sprintf("[[token]]\nname = \"app\"\nscope = \"read-write\"\nsecret = %q\n\n[[token]]\nname = \"dashboard\"\nscope = \"read-only\"\nsecret = %q\n", rwSecret, roSecret)
	if err := os.WriteFile(tokens, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RUMOR_TOKEN", "")
	for _, how := range []string{"flag", "env", "file"} {
		t.Run(how, func(t *testing.T) {
			httpAddr := closedAddr(t)
			args := []string{"--name", "a1", "--in-memory", "--bind", freeAddr(t), "--rpc", closedAddr(t), "--http", httpAddr, "--log-level", "warn"}
			switch how {
			case "flag":
				args = append(args, "--tokens-file", tokens, "--insecure")
			case "env":
				t.Setenv("RUMOR_TOKENS_FILE", tokens)
			case "file":
				conf := filepath.Join(t.TempDir(), "rumor.toml")
				if err := os.WriteFile(conf, []byte(fmt.Sprintf("tokens-file = %q\n", tokens)), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--config", conf)
			}
			a := startAgent(t, args...)
			a.waitHealthy(t, httpAddr)
			wantError(t, rumor(t, "get", "k", "--addr", httpAddr), exitError, "401 unauthorized: this node needs a token")
			ok(t, "put", "k", "v", "--addr", httpAddr, "--token", rwSecret)
			wantError(t, rumor(t, "put", "k", "v", "--addr", httpAddr, "--token", roSecret), exitError, "403 forbidden")
			if r := ok(t, "get", "k", "--addr", httpAddr, "--token", roSecret); r.stdout != "v\n" {
				t.Fatalf("get: %v", r)
			}
			if code := a.stop(t); code != 0 {
				t.Fatalf("agent exited %d: %s", code, a.stderr)
			}
			logs := a.stderr.String()
			if strings.Contains(logs, rwSecret) || strings.Contains(logs, roSecret) {
				t.Fatalf("a secret is in the agent's output:\n%s", logs)
			}
			if strings.Contains(logs, "running without") || strings.Contains(logs, "readable by every user") {
				t.Fatalf("warnings with a private tokens file:\n%s", logs)
			}
		})
	}

	// --print-config shows the file and --insecure, never the secrets.
	r := ok(t, "agent", "--name", "a1", "--in-memory", "--tokens-file", tokens, "--insecure", "--print-config")
	for _, want := range []string{fmt.Sprintf("tokens-file = %q", tokens), "insecure = true"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("--print-config lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, rwSecret) {
		t.Errorf("--print-config shows a secret:\n%s", r.stdout)
	}
	t.Setenv("RUMOR_INSECURE", "true")
	if r := ok(t, "agent", "--name", "a1", "--in-memory", "--print-config"); !strings.Contains(r.stdout, "insecure = true") {
		t.Errorf("RUMOR_INSECURE: %s", r.stdout)
	}
	t.Setenv("RUMOR_INSECURE", "true") // TestMain's default

	// Bad files stop the agent with one line.
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[[token]]\nname = \"a\"\nscope = \"read-only\"\nsecret = \"too-short\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantError(t, rumor(t, "agent", "--name", "a1", "--in-memory", "--tokens-file", bad), exitError,
		"tokens file "+bad+`: token 1 ("a"): the secret has 9 characters; want at least 16`)
	wantError(t, rumor(t, "agent", "--name", "a1", "--in-memory", "--tokens-file", filepath.Join(dir, "missing")), exitError, "no such file")
	loose := filepath.Join(dir, "open.toml")
	if err := os.WriteFile(loose, []byte(data), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o666); err != nil {
		t.Fatal(err)
	}
	wantError(t, rumor(t, "agent", "--name", "a1", "--in-memory", "--tokens-file", loose), exitError, "anyone may write it")

	// World-readable: a warning, and the agent runs.
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	httpAddr := closedAddr(t)
	a := startAgent(t, "--name", "a2", "--in-memory", "--bind", freeAddr(t), "--rpc", closedAddr(t), "--http", httpAddr,
		"--tokens-file", loose, "--log-level", "warn")
	a.waitHealthy(t, httpAddr)
	if code := a.stop(t); code != 0 || !strings.Contains(a.stderr.String(), "is readable by every user of this machine") {
		t.Fatalf("agent with a 0644 tokens file: exit %d, stderr:\n%s", code, a.stderr)
	}

	// Without tokens the agent says what it runs without.
	httpAddr = closedAddr(t)
	a = startAgent(t, "--name", "a3", "--in-memory", "--bind", freeAddr(t), "--rpc", closedAddr(t), "--http", httpAddr, "--log-level", "warn")
	a.waitHealthy(t, httpAddr)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(a.stderr.String(), "running insecure, as asked: ") || !strings.Contains(a.stderr.String(), "client API without tokens") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning without tokens:\n%s", a.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Without --insecure an agent missing a gossip key, TLS or tokens does not
// start, and says what is missing; --print-config notes it.
func TestAgentRefusesInsecure(t *testing.T) {
	t.Setenv("RUMOR_INSECURE", "") // TestMain's default off: as a user runs it
	args := []string{"agent", "--name", "a1", "--in-memory", "--bind", freeAddr(t), "--rpc", closedAddr(t), "--http", closedAddr(t)}
	wantError(t, rumor(t, args...), exitError, "insecure configuration: gossip without encryption",
		"peer RPC without mutual TLS", "client API without tokens", "--insecure")
	r := ok(t, append(args, "--print-config")...)
	if !strings.Contains(r.err, "would not start") || !strings.Contains(r.err, "--insecure") {
		t.Errorf("--print-config without --insecure: stderr %q", r.err)
	}
	if r := ok(t, append(args, "--print-config", "--insecure")...); r.err != "" {
		t.Errorf("--print-config --insecure: stderr %q", r.err)
	}
}
