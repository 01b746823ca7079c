package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rumorkv/rumor/node"
)

func randomKey(t *testing.T) string {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(k)
}

// keyedCluster opens size nodes on loopback sharing the gossip key key,
// joined through the first, and waits until each sees all alive.
func keyedCluster(t *testing.T, size int, key string, tokens ...node.Token) []*node.Node {
	t.Helper()
	k, err := node.ParseGossipKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return startClusterWith(t, size, func(c *node.Config) {
		c.GossipKeys = [][]byte{k}
		c.Tokens = tokens
		// Encrypted gossip on a loaded machine: probes as patient as the
		// defaults' suspicion, so no member is suspected meanwhile.
		c.Memberlist.ProbeInterval = 200 * time.Millisecond
		c.Memberlist.ProbeTimeout = 100 * time.Millisecond
		c.Memberlist.SuspicionMult = node.DefaultConfig("", "").Memberlist.SuspicionMult
	})
}

// keyringJSON runs a keyring command with -o json and decodes its answer.
func keyringJSON(t *testing.T, wantCode int, args ...string) node.KeyringResponse {
	t.Helper()
	r := rumor(t, append(args, "-o", "json")...)
	if r.code != wantCode {
		t.Fatalf("want exit %d, got %v", wantCode, r)
	}
	var kr node.KeyringResponse
	if err := json.Unmarshal([]byte(r.stdout), &kr); err != nil {
		t.Fatalf("%v: %v", r, err)
	}
	return kr
}

// TestKeyringCLI rotates a cluster's key with the CLI, each step through
// another node, and checks the text and JSON answers and the refusals.
func TestKeyringCLI(t *testing.T) {
	oldKey, newKey := randomKey(t), randomKey(t)
	nodes := keyedCluster(t, 3, oldKey)
	addr := func(i int) string { return nodes[i].HTTPAddr() }

	r := ok(t, "keyring", "list", "--addr", addr(0))
	for _, want := range []string{"3 of 3 members answered (asked by n1)", "KEY", "MEMBERS", "PRIMARY ON", oldKey, "3/3", "n1, n2, n3"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("list output lacks %q:\n%s", want, r.stdout)
		}
	}

	// Refusals: the primary cannot be removed, a key nobody has cannot be
	// used; bad keys are caught before anything is sent.
	wantError(t, rumor(t, "keyring", "remove", oldKey, "--addr", addr(1)), exitError, "keyring remove", "primary key")
	wantError(t, rumor(t, "keyring", "use", newKey, "--addr", addr(1)), exitError, "keyring use", "does not have the key (install it first)")
	wantError(t, rumor(t, "keyring", "install", base64.StdEncoding.EncodeToString([]byte("short")), "--addr", addr(1)), exitError, "bad KEY", "5 bytes, want 16, 24 or 32")
	wantError(t, rumor(t, "keyring", "install", "--addr", addr(1)), exitError, "needs exactly one KEY")
	wantError(t, rumor(t, "keyring", "list", "extra", "--addr", addr(1)), exitError, "takes no arguments")
	wantError(t, rumor(t, "keyring", "rotate"), exitError, `unknown keyring command "rotate"`)

	r = ok(t, "keyring", "install", newKey, "--addr", addr(0))
	if !strings.Contains(r.stdout, "installed key "+newKey+" on 3 of 3 members (asked by n1)") || strings.Count(r.stdout, " ok ") != 3 {
		t.Errorf("install output:\n%s", r.stdout)
	}
	kr := keyringJSON(t, 0, "keyring", "use", newKey, "--addr", addr(1))
	if kr.Op != "use" || kr.OK != 3 || len(kr.Keys[newKey].PrimaryOn) != 3 {
		t.Errorf("use answer: %+v", kr)
	}
	// Flags before the key, as people also write them.
	r = ok(t, "keyring", "remove", "--addr", addr(2), oldKey)
	if !strings.Contains(r.stdout, "removed key "+oldKey+" on 3 of 3 members (asked by n3)") {
		t.Errorf("remove output:\n%s", r.stdout)
	}
	kr = keyringJSON(t, 0, "keyring", "list", "--addr", addr(2))
	if len(kr.Keys) != 1 || kr.Keys[newKey].Members != 3 || len(kr.Nodes) != 3 {
		t.Fatalf("after the rotation: %+v", kr)
	}
	for _, n := range kr.Nodes {
		if !n.OK || !slices.Equal(n.Keys, []string{newKey}) || n.Primary != newKey {
			t.Errorf("after the rotation %s has %+v", n.Name, n)
		}
	}

	// A member down: install reports it (exit 2, its row printed), use is
	// refused.
	third := randomKey(t)
	nodes[2].Close()
	r = rumor(t, "keyring", "install", third, "--addr", addr(0))
	if r.code != exitError || !strings.Contains(r.stdout, "on 2 of 3 members") || !strings.Contains(r.stdout, "n3: ") ||
		!strings.Contains(r.err, "keyring install") || !strings.Contains(r.err, "n3") {
		t.Errorf("install with n3 down: %v", r)
	}
	wantOneLine(t, r)
	wantError(t, rumor(t, "keyring", "use", third, "--addr", addr(0)), exitError, "n3 did not answer")
	kr = keyringJSON(t, exitError, "keyring", "list", "--addr", addr(1))
	if kr.OK != 2 || kr.Failed != 1 || kr.Keys[third].Members != 2 {
		t.Errorf("list with n3 down: %+v", kr)
	}
}

// TestKeyringTokens: with tokens, every keyring command needs a
// read-write token, the list included (it shows the keys).
func TestKeyringTokens(t *testing.T) {
	key := randomKey(t)
	ro := node.Token{Name: "grafana", Secret: "read-only-secret-0123456789", Scope: node.ScopeReadOnly}
	rw := node.Token{Name: "ops", Secret: "read-write-secret-0123456789", Scope: node.ScopeReadWrite}
	addr := keyedCluster(t, 1, key, ro, rw)[0].HTTPAddr()
	wantError(t, rumor(t, "keyring", "list", "--addr", addr), exitError, "401 unauthorized")
	wantError(t, rumor(t, "keyring", "list", "--addr", addr, "--token", ro.Secret), exitError, "403 forbidden: the token is read-only")
	wantError(t, rumor(t, "keyring", "install", randomKey(t), "--addr", addr, "--token", ro.Secret), exitError, "403 forbidden")
	if kr := keyringJSON(t, 0, "keyring", "list", "--addr", addr, "--token", rw.Secret); kr.OK != 1 || kr.Nodes[0].Primary != key {
		t.Errorf("list with a read-write token: %+v", kr)
	}
	ok(t, "keyring", "install", randomKey(t), "--addr", addr, "--token", rw.Secret)
}

func TestKeyringGenerate(t *testing.T) {
	seen := map[string]bool{}
	for range 3 {
		r := ok(t, "keyring", "generate")
		k := strings.TrimSuffix(r.stdout, "\n")
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil || len(b) != 32 || seen[k] {
			t.Fatalf("generate printed %q (%d bytes, %v, seen before %v)", r.stdout, len(b), err, seen[k])
		}
		seen[k] = true
		if _, err := node.ParseGossipKey(k); err != nil {
			t.Fatal(err)
		}
	}
	r := ok(t, "keyring", "generate", "-o", "json")
	var out map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out["key"]) != 44 {
		t.Fatalf("generate -o json: %q, %v", r.stdout, err)
	}
}

// TestAgentGossipKey starts agents with --gossip-key and --keyring-file:
// the key seeds the keyring file, a bad key is refused without being
// repeated, and --print-config does not show the key.
func TestAgentGossipKey(t *testing.T) {
	key := randomKey(t)
	dir := t.TempDir()
	ring := filepath.Join(t.TempDir(), "ring.json")
	bind, _ := freePair(t)
	httpAddr := freeAddr(t)
	a := startAgent(t, "--name", "k1", "--data", dir, "--bind", bind, "--http", httpAddr, "--gossip-key", key, "--keyring-file", ring)
	a.waitHealthy(t, httpAddr)
	b, err := os.ReadFile(ring)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Keys    []string `json:"keys"`
		Primary string   `json:"primary"`
	}
	if err := json.Unmarshal(b, &f); err != nil || f.Primary != key || !slices.Equal(f.Keys, []string{key}) {
		t.Fatalf("keyring file %s: %s (%v)", ring, b, err)
	}
	kr := keyringJSON(t, 0, "keyring", "list", "--addr", httpAddr)
	if kr.OK != 1 || kr.Nodes[0].Primary != key {
		t.Errorf("list: %+v", kr)
	}
	if code := a.stop(t); code != 0 {
		t.Fatalf("agent exit %d; stderr:\n%s", code, a.stderr)
	}

	bad := base64.StdEncoding.EncodeToString(make([]byte, 20))
	r := rumor(t, "agent", "--in-memory", "--gossip-key", bad)
	wantError(t, r, exitError, "gossip-key (from flag)", "20 bytes, want 16, 24 or 32")
	if strings.Contains(r.err, bad) {
		t.Errorf("the error repeats the key: %s", r.err)
	}
	t.Setenv("RUMOR_GOSSIP_KEY", key)
	r = ok(t, "agent", "--in-memory", "--print-config")
	if strings.Contains(r.stdout, key) || !strings.Contains(r.stdout, `gossip-key = "(redacted)"`) || !strings.Contains(r.stdout, "env RUMOR_GOSSIP_KEY") {
		t.Errorf("--print-config shows the key or hides that it is set:\n%s", r.stdout)
	}
}
