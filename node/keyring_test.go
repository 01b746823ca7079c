package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// newKey returns a random gossip key of size bytes.
func newKey(t testing.TB, size int) []byte {
	t.Helper()
	k := make([]byte, size)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// logCapture is a slog handler that keeps every record (as "LEVEL msg
// k=v…" lines) and forwards them to next.
type logCapture struct {
	mu    *sync.Mutex
	lines *[]string
	attrs []slog.Attr
	next  slog.Handler
}

func newLogCapture() *logCapture {
	next := slog.Handler(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		next = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})
	}
	return &logCapture{mu: &sync.Mutex{}, lines: new([]string), next: next}
}

func (h *logCapture) Enabled(context.Context, slog.Level) bool { return true }

func (h *logCapture) Handle(ctx context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	for _, a := range h.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.mu.Lock()
	*h.lines = append(*h.lines, b.String())
	h.mu.Unlock()
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *logCapture) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(slices.Clone(h.attrs), attrs...)
	c.next = h.next.WithAttrs(attrs)
	return &c
}

func (h *logCapture) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	return &c
}

// since returns the lines logged from index i on, and the next index.
func (h *logCapture) since(i int) ([]string, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone((*h.lines)[i:]), len(*h.lines)
}

// matching returns the lines containing every one of subs.
func (h *logCapture) matching(subs ...string) []string {
	lines, _ := h.since(0)
	var out []string
	for _, l := range lines {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

func TestParseGossipKey(t *testing.T) {
	for _, size := range []int{16, 24, 32} {
		k := newKey(t, size)
		got, err := ParseGossipKey(" " + base64.StdEncoding.EncodeToString(k) + "\n")
		if err != nil || !bytes.Equal(got, k) {
			t.Errorf("%d-byte key: got %x, %v", size, got, err)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"", "0 bytes, want 16, 24 or 32"},
		{base64.StdEncoding.EncodeToString(make([]byte, 20)), "20 bytes, want 16, 24 or 32"},
		{base64.StdEncoding.EncodeToString(make([]byte, 33)), "33 bytes"},
		{"not base64!", "not base64"},
	} {
		_, err := ParseGossipKey(tc.in)
		if !errors.Is(err, ErrBadGossipKey) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseGossipKey(%q) = %v, want ErrBadGossipKey with %q", tc.in, err, tc.want)
		}
	}
	cfg := DefaultConfig("n1", t.TempDir())
	cfg.GossipKeys = [][]byte{newKey(t, 32), make([]byte, 10)}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "gossip key 2: node: bad gossip key: 10 bytes, want 16, 24 or 32") {
		t.Errorf("Validate with a 10-byte second key: %v", err)
	}
	cfg.GossipKeys = nil
	cfg.Memberlist.SecretKey = newKey(t, 16)
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "set GossipKeys") {
		t.Errorf("Validate with Memberlist.SecretKey: %v", err)
	}
}

// readRing reads a keyring file and checks its mode.
func readRing(t *testing.T, path string) keyringFile {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f keyringFile
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, b)
	}
	return f
}

func enc(keys ...[]byte) []string {
	var out []string
	for _, k := range keys {
		out = append(out, encodeKey(k))
	}
	return out
}

func TestKeyringFile(t *testing.T) {
	k1, k2, k3 := newKey(t, 32), newKey(t, 16), newKey(t, 24)
	logs := newLogCapture()
	log := slog.New(logs)

	// A new node seeds its ring from the configured keys and persists it
	// in its data directory.
	dir := t.TempDir()
	c := &Config{DataDir: dir, GossipKeys: [][]byte{k1, k2}}
	kr, err := loadKeyring(c, log)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "keyring")
	if f := readRing(t, path); f.Primary != encodeKey(k1) || !slices.Equal(f.Keys, enc(k1, k2)) {
		t.Fatalf("seeded file: %+v", f)
	}
	if len(logs.matching("seeded from the configured gossip key")) != 1 {
		t.Errorf("no info line about seeding")
	}

	// Changes are persisted before they apply.
	if _, err := kr.apply(KeyringInstall, k3); err != nil {
		t.Fatal(err)
	}
	if _, err := kr.apply(KeyringUse, k3); err != nil {
		t.Fatal(err)
	}
	if _, err := kr.apply(KeyringRemove, k1); err != nil {
		t.Fatal(err)
	}
	if f := readRing(t, path); f.Primary != encodeKey(k3) || !slices.Equal(f.Keys, enc(k3, k2)) {
		t.Fatalf("file after install/use/remove: %+v", f)
	}
	if got := enc(kr.snapshot()...); !slices.Equal(got, enc(k3, k2)) {
		t.Fatalf("ring after install/use/remove: %v", got)
	}

	// On restart the file wins over the configured key, with a warning.
	kr2, err := loadKeyring(c, log)
	if err != nil {
		t.Fatal(err)
	}
	if got := enc(kr2.snapshot()...); !slices.Equal(got, enc(k3, k2)) {
		t.Fatalf("reloaded ring: %v, want the file's", got)
	}
	if len(logs.matching("INFO", "using the keyring file")) != 1 || len(logs.matching("WARN", "configured gossip key is not in the keyring file")) != 1 {
		lines, _ := logs.since(0)
		t.Errorf("want an info line about the file and a warning about the configured key; got\n%s", strings.Join(lines, "\n"))
	}
	// ... and with no key configured at all.
	kr3, err := loadKeyring(&Config{DataDir: dir}, log)
	if err != nil || !slices.Equal(enc(kr3.snapshot()...), enc(k3, k2)) {
		t.Fatalf("reload without a configured key: %v, %v", err, kr3)
	}

	// An explicit KeyringFile; an in-memory node keeps its ring in memory.
	other := filepath.Join(t.TempDir(), "ring.json")
	if _, err := loadKeyring(&Config{InMemory: true, KeyringFile: other, GossipKeys: [][]byte{k2}}, log); err != nil {
		t.Fatal(err)
	}
	if f := readRing(t, other); !slices.Equal(f.Keys, enc(k2)) {
		t.Errorf("KeyringFile: %+v", f)
	}
	memDir := t.TempDir()
	mem, err := loadKeyring(&Config{InMemory: true, DataDir: memDir, GossipKeys: [][]byte{k2}}, log)
	if err != nil || mem.path != "" {
		t.Fatalf("in-memory: path %q, %v", mem.path, err)
	}
	if _, err := mem.apply(KeyringInstall, k1); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(memDir); len(ents) != 0 {
		t.Errorf("in-memory node wrote %v", ents)
	}
	// No key, no file: no encryption, and operations say so.
	off, err := loadKeyring(&Config{DataDir: t.TempDir()}, log)
	if err != nil || off.ring != nil {
		t.Fatalf("no key: %v, %v", off.ring, err)
	}
	if _, err := off.apply(KeyringList, nil); !errors.Is(err, ErrNoEncryption) {
		t.Errorf("list without encryption: %v", err)
	}

	// Bad files fail loudly rather than turn encryption off.
	if _, err := loadKeyring(&Config{KeyringFile: filepath.Join(t.TempDir(), "missing")}, log); err == nil || !strings.Contains(err.Error(), "does not exist and no gossip key") {
		t.Errorf("missing explicit file without a key: %v", err)
	}
	for name, body := range map[string]string{
		"not json":   "{",
		"no primary": `{"keys": []}`,
		"short key":  fmt.Sprintf(`{"keys": [%q], "primary": %q}`, encodeKey(k1), base64.StdEncoding.EncodeToString([]byte("short"))),
		"bad key":    fmt.Sprintf(`{"keys": ["%%%%"], "primary": %q}`, encodeKey(k1)),
	} {
		p := filepath.Join(t.TempDir(), "keyring")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadKeyring(&Config{KeyringFile: p, GossipKeys: [][]byte{k1}}, log); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v, want an error naming the file", name, err)
		}
	}
}

func TestKeyringApply(t *testing.T) {
	k1, k2, k3 := newKey(t, 32), newKey(t, 32), newKey(t, 32)
	path := filepath.Join(t.TempDir(), "keyring")
	kr, err := loadKeyring(&Config{KeyringFile: path, GossipKeys: [][]byte{k1}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	step := func(op string, key []byte, want ...[]byte) {
		t.Helper()
		got, err := kr.apply(op, key)
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		if !slices.Equal(enc(got...), enc(want...)) || !slices.Equal(enc(kr.ring.GetKeys()...), enc(want...)) {
			t.Fatalf("%s: got %v (ring %v), want %v", op, enc(got...), enc(kr.ring.GetKeys()...), enc(want...))
		}
		if f := readRing(t, path); !slices.Equal(f.Keys, enc(want...)) || f.Primary != encodeKey(want[0]) {
			t.Fatalf("%s: file %+v, want %v", op, f, enc(want...))
		}
	}
	step(KeyringInstall, k2, k1, k2)
	step(KeyringInstall, k2, k1, k2) // idempotent
	step(KeyringInstall, k3, k1, k2, k3)
	step(KeyringUse, k3, k3, k1, k2)
	step(KeyringUse, k3, k3, k1, k2)
	step(KeyringRemove, k1, k3, k2) // a key in the middle
	step(KeyringRemove, k1, k3, k2) // idempotent
	step(KeyringList, nil, k3, k2)

	for _, tc := range []struct {
		op   string
		key  []byte
		want string
	}{
		{KeyringRemove, k3, "primary key"},
		{KeyringUse, k1, "not installed"},
		{KeyringInstall, []byte("short"), "5 bytes"},
		{"rotate", k1, "unknown keyring operation"},
	} {
		if _, err := kr.apply(tc.op, tc.key); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.op, err, tc.want)
		}
	}
	if f := readRing(t, path); !slices.Equal(f.Keys, enc(k3, k2)) {
		t.Errorf("refused operations changed the file: %+v", f)
	}

	// A write that fails leaves ring and file as they were.
	if err := os.Chmod(filepath.Dir(path), 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(filepath.Dir(path), 0o700)
	if os.Getuid() != 0 { // root writes anyway
		if _, err := kr.apply(KeyringInstall, k1); err == nil {
			t.Fatal("install with an unwritable keyring directory succeeded")
		}
		if got := enc(kr.snapshot()...); !slices.Equal(got, enc(k3, k2)) {
			t.Errorf("failed install changed the ring: %v", got)
		}
	}
}

// TestKeyringRemoveRace removes keys from the middle of the ring while
// readers use it as memberlist's gossip goroutines do (GetKeys, then
// reading the slice without the lock). Under -race it fails if a removal
// moves keys inside a slice handed out (memberlist's RemoveKey does that
// unless the key is the last one).
func TestKeyringRemoveRace(t *testing.T) {
	keys := [][]byte{newKey(t, 16), newKey(t, 16), newKey(t, 16), newKey(t, 16), newKey(t, 16)}
	kr, err := loadKeyring(&Config{InMemory: true, GossipKeys: keys}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, k := range kr.ring.GetKeys() {
				if len(k) != 16 {
					t.Errorf("read a %d-byte key", len(k))
				}
			}
			reads++
		}
	}()
	for round := 0; round < 50; round++ {
		for _, k := range keys[1:3] {
			if _, err := kr.apply(KeyringRemove, k); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Microsecond)
		}
		for _, k := range keys[1:3] {
			if _, err := kr.apply(KeyringInstall, k); err != nil {
				t.Fatal(err)
			}
		}
		if p := kr.ring.GetPrimaryKey(); !bytes.Equal(p, keys[0]) {
			t.Fatalf("primary changed to %x", p)
		}
	}
	close(stop)
	wg.Wait()
	if reads == 0 {
		t.Fatal("the reader never ran")
	}
}

// keyedCluster starts size nodes on loopback that share key (nil: no
// gossip encryption), each logging into its own capture.
func keyedCluster(t *testing.T, size int, key []byte, tweak func(*Config)) ([]*testNode, []*logCapture) {
	t.Helper()
	var caps []*logCapture
	nodes := startCluster(t, size, func(c *Config) {
		if key != nil {
			c.GossipKeys = [][]byte{key}
		}
		lc := newLogCapture()
		caps = append(caps, lc)
		c.Logger = slog.New(lc)
		if tweak != nil {
			tweak(c)
		}
	})
	return nodes, caps
}

// memberNames returns the names n lists as members, and those memberlist
// itself knows.
func memberNames(n *testNode) (table, gossip []string) {
	for _, m := range n.Members() {
		table = append(table, m.Name)
	}
	for _, m := range n.mem.ml.Members() {
		gossip = append(gossip, m.Name)
	}
	return table, gossip
}

// TestGossipKeyRequired: a node without the cluster's gossip key, or with
// another key, never becomes a member on either side, and the keyed nodes
// go on working.
func TestGossipKeyRequired(t *testing.T) {
	key := newKey(t, 32)
	nodes, caps := keyedCluster(t, 2, key, nil)

	var intruders []*testNode
	var intruderLogs []*logCapture
	for _, ik := range []struct {
		name string
		key  []byte
	}{{"nokey", nil}, {"wrongkey", newKey(t, 32)}} {
		cfg := testConfig(t, ik.name, t.TempDir(), nodes[0].GossipAddr(), nodes[1].GossipAddr())
		if ik.key != nil {
			cfg.GossipKeys = [][]byte{ik.key}
		}
		lc := newLogCapture()
		cfg.Logger = slog.New(lc)
		intruders = append(intruders, openNode(t, cfg))
		intruderLogs = append(intruderLogs, lc)
	}

	// A generous window: many join attempts (RejoinInterval 300 ms) and
	// push-pulls (1 s).
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		for _, n := range nodes {
			table, gossip := memberNames(n)
			for _, x := range intruders {
				if slices.Contains(table, x.Name()) || slices.Contains(gossip, x.Name()) {
					t.Fatalf("%s lists %s: table %v, gossip %v", n.Name(), x.Name(), table, gossip)
				}
			}
		}
		for _, x := range intruders {
			table, gossip := memberNames(x)
			if len(table) != 1 || len(gossip) != 1 {
				t.Fatalf("%s knows others: table %v, gossip %v", x.Name(), table, gossip)
			}
		}
		// The keyed nodes keep working: both alive to each other, and
		// writes at W=all and reads at R=all succeed.
		key := fmt.Sprintf("k%d", i)
		if _, err := nodes[i%2].Put(context.Background(), []byte(key), []byte("v"), &WriteOptions{W: All}); err != nil {
			t.Fatalf("write %s: %v", key, err)
		}
		if _, err := nodes[(i+1)%2].Get(context.Background(), []byte(key), &ReadOptions{R: All}); err != nil {
			t.Fatalf("read %s: %v", key, err)
		}
		for _, n := range nodes {
			for _, m := range n.Members() {
				if m.State != StateAlive {
					t.Fatalf("%s sees %s %s", n.Name(), m.Name, m.State)
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Both sides saw the attempts fail for the reason they did.
	if len(caps[0].matching("encryption is configured but remote state is not encrypted"))+
		len(caps[1].matching("encryption is configured but remote state is not encrypted")) == 0 {
		t.Error("the keyed nodes logged no rejected plaintext join")
	}
	if len(caps[0].matching("no installed keys could decrypt"))+len(caps[1].matching("no installed keys could decrypt")) == 0 {
		t.Error("the keyed nodes logged no join they could not decrypt")
	}
	for i, lc := range intruderLogs {
		if len(lc.matching("cannot join the cluster yet", "check --gossip-key")) == 0 {
			t.Errorf("%s did not report that it cannot join, with the hint about keys", intruders[i].Name())
		}
	}

	// Control: the same node with the key joins at once.
	cfg := testConfig(t, "withkey", t.TempDir(), nodes[0].GossipAddr())
	cfg.GossipKeys = [][]byte{key}
	waitMembers(t, append(nodes, openNode(t, cfg)), 3)
}

// keyringCall performs a keyring request over n's HTTP API: GET
// /v1/keyring when op is list, else POST /v1/keyring/{op} with body. It
// returns the status and the decoded answer.
func keyringCall(t *testing.T, n *testNode, op string, body string) (int, KeyringResponse, string) {
	t.Helper()
	method, url := http.MethodGet, "http://"+n.HTTPAddr()+"/v1/keyring"
	var rd io.Reader
	if op != KeyringList {
		method, url, rd = http.MethodPost, url+"/"+op, strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var kr KeyringResponse
	_ = json.Unmarshal(b, &kr)
	return resp.StatusCode, kr, string(b)
}

func keyBody(k []byte) string { return fmt.Sprintf(`{"key": %q}`, encodeKey(k)) }

// wantRing checks that every member answered with keys (primary first).
func wantRing(t *testing.T, r KeyringResponse, members int, keys ...[]byte) {
	t.Helper()
	if r.Members != members || r.OK != members || r.Failed != 0 || len(r.Nodes) != members {
		t.Fatalf("%s: %d members, %d ok, %d failed, want %d ok: %+v", r.Op, r.Members, r.OK, r.Failed, members, r)
	}
	for _, row := range r.Nodes {
		if !row.OK || !slices.Equal(row.Keys, enc(keys...)) || row.Primary != encodeKey(keys[0]) {
			t.Fatalf("%s: %s has %v (primary %s), want %v: %+v", r.Op, row.Name, row.Keys, row.Primary, enc(keys...), r)
		}
	}
	if len(r.Keys) != len(keys) {
		t.Fatalf("%s: summary has %d keys, want %d: %+v", r.Op, len(r.Keys), len(keys), r.Keys)
	}
	for i, k := range keys {
		ki := r.Keys[encodeKey(k)]
		if ki.Members != members || len(ki.MissingOn) != 0 || (i == 0) != (len(ki.PrimaryOn) == members) {
			t.Fatalf("%s: summary of key %d: %+v", r.Op, i, ki)
		}
	}
}

// gossipWatch samples every node's view of the others and their logs until
// stopped, and collects anything that is not every member alive: a member
// suspect or dead in memberlist or in the node's member list, and any
// memberlist warning or error, suspicion or failed decryption in the logs.
type gossipWatch struct {
	stop, done chan struct{}
	mu         sync.Mutex
	bad        []string
	samples    int
}

func watchGossip(nodes []*testNode, caps []*logCapture) *gossipWatch {
	w := &gossipWatch{stop: make(chan struct{}), done: make(chan struct{})}
	from := make([]int, len(caps))
	for i, c := range caps {
		_, from[i] = c.since(0)
	}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			var bad []string
			for _, n := range nodes {
				ms := n.mem.ml.Members()
				if len(ms) != len(nodes) {
					bad = append(bad, fmt.Sprintf("%s: memberlist knows %d members", n.Name(), len(ms)))
				}
				for _, m := range ms {
					if m.State != memberlist.StateAlive {
						bad = append(bad, fmt.Sprintf("%s: memberlist has %s in state %v", n.Name(), m.Name, m.State))
					}
				}
				for _, m := range n.Members() {
					if m.State != StateAlive {
						bad = append(bad, fmt.Sprintf("%s: %s is %s", n.Name(), m.Name, m.State))
					}
				}
			}
			for i, c := range caps {
				var lines []string
				lines, from[i] = c.since(from[i])
				for _, l := range lines {
					lower := strings.ToLower(l)
					if strings.Contains(l, "component=memberlist") && (strings.HasPrefix(l, "WARN") || strings.HasPrefix(l, "ERROR") ||
						strings.Contains(lower, "suspect") || strings.Contains(lower, "crypt") || strings.Contains(lower, "as failed")) {
						bad = append(bad, "log: "+l)
					}
				}
			}
			w.mu.Lock()
			w.bad = append(w.bad, bad...)
			w.samples++
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// finish stops the watch and returns what it saw wrong and how many
// samples it took.
func (w *gossipWatch) finish() ([]string, int) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bad, w.samples
}

// TestKeyringRotationUnderLoad is issue 8's rotation test: three nodes,
// writes running throughout, the key rotated over the HTTP API (install
// the new key and another, use the new one, remove the old one — in the
// middle of the ring — and the other), each step through another node. No
// member is ever suspect or dead, memberlist never fails to decrypt, no
// write fails, the old key is gone everywhere, and a restarted node comes
// back with the new keyring from its file (its configuration still names
// the old key). Finally a deliberately broken step (one node encrypting
// with a key the others lack) shows that the watch catches a bad rotation.
func TestKeyringRotationUnderLoad(t *testing.T) {
	oldKey, newK, extra := newKey(t, 32), newKey(t, 32), newKey(t, 16)
	nodes, caps := keyedCluster(t, 3, oldKey, func(c *Config) {
		// Probes that only a key mismatch fails, not a loaded machine.
		c.Memberlist.ProbeInterval = 400 * time.Millisecond
		c.Memberlist.ProbeTimeout = 300 * time.Millisecond
	})
	_, first, _ := keyringCall(t, nodes[0], KeyringList, "")
	wantRing(t, first, 3, oldKey)

	watch := watchGossip(nodes, caps)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var writes int
	var writeErrs []error
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("g%d-%d", g, i)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := nodes[(g+i)%3].Put(ctx, []byte(key), []byte("v"), &WriteOptions{W: Quorum})
				cancel()
				mu.Lock()
				writes++
				if err != nil {
					writeErrs = append(writeErrs, fmt.Errorf("put %s: %w", key, err))
				}
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	settle := func() { time.Sleep(time.Second) } // gossip, probes and a push-pull under each ring

	settle()
	steps := []struct {
		via  int
		op   string
		key  []byte
		want [][]byte
	}{
		{0, KeyringInstall, newK, [][]byte{oldKey, newK}},
		{1, KeyringInstall, extra, [][]byte{oldKey, newK, extra}},
		{2, KeyringUse, newK, [][]byte{newK, oldKey, extra}},
		{0, KeyringRemove, oldKey, [][]byte{newK, extra}},
		{1, KeyringRemove, extra, [][]byte{newK}},
	}
	for _, s := range steps {
		status, r, raw := keyringCall(t, nodes[s.via], s.op, keyBody(s.key))
		if status != http.StatusOK {
			t.Fatalf("%s via %s: HTTP %d: %s", s.op, nodes[s.via].Name(), status, raw)
		}
		wantRing(t, r, 3, s.want...)
		settle()
	}
	close(stop)
	wg.Wait()
	bad, samples := watch.finish()
	if len(bad) > 0 {
		t.Fatalf("during the rotation (%d samples): %d problems, first: %s", samples, len(bad), strings.Join(bad[:min(len(bad), 10)], "\n"))
	}
	if len(writeErrs) > 0 || writes < 100 {
		t.Fatalf("%d writes, %d failed: %v", writes, len(writeErrs), writeErrs[:min(len(writeErrs), 5)])
	}
	t.Logf("%d writes, %d samples of every node's view, none amiss", writes, samples)

	// The old key is gone everywhere, in memory and on disk.
	for _, n := range nodes {
		_, r, _ := keyringCall(t, n, KeyringList, "")
		wantRing(t, r, 3, newK)
		if f := readRing(t, filepath.Join(n.cfg.DataDir, "keyring")); !slices.Equal(f.Keys, enc(newK)) || f.Primary != encodeKey(newK) {
			t.Fatalf("%s's keyring file: %+v", n.Name(), f)
		}
	}

	// A restart keeps the new ring: the file wins over the configured key.
	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	nodes[2] = openNode(t, nodes[2].cfg)
	if len(caps[2].matching("WARN", "configured gossip key is not in the keyring file")) != 1 {
		t.Error("the restarted node did not warn that its configured key is not in its keyring")
	}
	waitMembers(t, nodes, 3)
	_, r, _ := keyringCall(t, nodes[2], KeyringList, "")
	wantRing(t, r, 3, newK)
	if _, err := nodes[0].Put(context.Background(), []byte("after-restart"), []byte("v"), &WriteOptions{W: All}); err != nil {
		t.Fatalf("write at W=all after the restart: %v", err)
	}

	// Control: the watch sees a broken rotation. n1 alone installs and
	// uses a key the others do not have.
	watch = watchGossip(nodes, caps)
	rogue := newKey(t, 32)
	if _, err := nodes[0].keyring.apply(KeyringInstall, rogue); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[0].keyring.apply(KeyringUse, rogue); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		watch.mu.Lock()
		var decrypt, suspect bool
		for _, b := range watch.bad {
			decrypt = decrypt || strings.Contains(b, "no installed keys could decrypt") || strings.Contains(strings.ToLower(b), "decrypt packet failed")
			suspect = suspect || strings.Contains(b, "suspect") || strings.Contains(b, "dead")
		}
		watch.mu.Unlock()
		if decrypt && suspect {
			break
		}
		if time.Now().After(deadline) {
			bad, _ := watch.finish()
			t.Fatalf("the watch did not catch a node encrypting with a key the others lack (decrypt errors %v, suspect %v): %v", decrypt, suspect, bad)
		}
		time.Sleep(50 * time.Millisecond)
	}
	watch.finish()
}

// TestKeyringRefusals covers the keyring API's refusals and failures, and
// the recovery of a member that was down during a rotation: removing a
// primary key is refused; use of a key some member lacks is refused; with
// a member down, install reports it failed, and use and remove are refused
// unless forced; the member, back with only the old key, cannot rejoin
// until install and use are run through it.
func TestKeyringRefusals(t *testing.T) {
	oldKey, newK := newKey(t, 32), newKey(t, 32)
	nodes, _ := keyedCluster(t, 3, oldKey, nil)
	n1 := nodes[0]

	for _, tc := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{http.MethodPost, "/v1/keyring/remove", keyBody(oldKey), http.StatusConflict, "primary key"},
		{http.MethodPost, "/v1/keyring/use", keyBody(newK), http.StatusConflict, "does not have the key"},
		{http.MethodPost, "/v1/keyring/install", `{"key": "c2hvcnQ="}`, http.StatusBadRequest, "5 bytes, want 16, 24 or 32"},
		{http.MethodPost, "/v1/keyring/install", `{"key": "%%"}`, http.StatusBadRequest, "not base64"},
		{http.MethodPost, "/v1/keyring/install", `{"key": 1`, http.StatusBadRequest, "bad body"},
		{http.MethodPost, "/v1/keyring/install", `{"key": "` + strings.Repeat("A", 5000) + `"}`, http.StatusRequestEntityTooLarge, "exceeds"},
		{http.MethodGet, "/v1/keyring/install", "", http.StatusMethodNotAllowed, "POST"},
		{http.MethodPost, "/v1/keyring", keyBody(newK), http.StatusMethodNotAllowed, "GET"},
		{http.MethodPost, "/v1/keyring/rotate", keyBody(newK), http.StatusNotFound, "install, use and remove"},
	} {
		req, _ := http.NewRequest(tc.method, "http://"+n1.HTTPAddr()+tc.path, strings.NewReader(tc.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s %s %.40s: HTTP %d %s, want %d with %q", tc.method, tc.path, tc.body, resp.StatusCode, b, tc.status, tc.want)
		}
	}
	_, r, _ := keyringCall(t, n1, KeyringList, "")
	wantRing(t, r, 3, oldKey) // nothing changed

	// n3 goes down. install reaches the others and reports n3.
	n3cfg := nodes[2].cfg
	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	status, r, raw := keyringCall(t, n1, KeyringInstall, keyBody(newK))
	if status != http.StatusInternalServerError || r.OK != 2 || r.Failed != 1 || !strings.Contains(r.Error, "n3") {
		t.Fatalf("install with n3 down: HTTP %d %s", status, raw)
	}
	for _, row := range r.Nodes {
		if (row.Name == "n3") == row.OK || (row.OK && len(row.Keys) != 2) {
			t.Fatalf("install with n3 down: row %+v", row)
		}
	}
	if ki := r.Keys[encodeKey(newK)]; ki.Members != 2 {
		t.Fatalf("summary of the new key: %+v", ki)
	}
	// use is refused: n3 did not confirm it has the key. Forced, it
	// applies where it can and reports n3; then remove is refused for the
	// same reason, and forced likewise.
	for _, step := range []struct {
		op  string
		key []byte
	}{{KeyringUse, newK}, {KeyringRemove, oldKey}} {
		status, r, raw := keyringCall(t, n1, step.op, keyBody(step.key))
		if status != http.StatusConflict || !strings.Contains(r.Error, "n3 did not answer") || !strings.Contains(r.Error, "nothing was changed") {
			t.Fatalf("%s with n3 down: HTTP %d %s", step.op, status, raw)
		}
		_, l, _ := keyringCall(t, nodes[1], KeyringList, "")
		for _, row := range l.Nodes {
			if row.OK && len(row.Keys) != 2 || (step.op == KeyringUse && row.OK && row.Primary != encodeKey(oldKey)) {
				t.Fatalf("a refused %s changed %s's ring: %+v", step.op, row.Name, row)
			}
		}
		status, r, raw = keyringCall(t, n1, step.op, fmt.Sprintf(`{"key": %q, "force": true}`, encodeKey(step.key)))
		if status != http.StatusInternalServerError || r.OK != 2 || r.Failed != 1 {
			t.Fatalf("forced %s with n3 down: HTTP %d %s", step.op, status, raw)
		}
	}
	_, r, _ = keyringCall(t, n1, KeyringList, "")
	for _, row := range r.Nodes {
		if row.OK && !slices.Equal(row.Keys, enc(newK)) {
			t.Fatalf("after the forced rotation %s has %v", row.Name, row.Keys)
		}
	}

	// n3 comes back with the old key only: it cannot rejoin.
	nodes[2] = openNode(t, n3cfg)
	time.Sleep(3 * time.Second)
	for _, n := range nodes {
		for _, m := range n.Members() {
			if (n.Name() == "n3") != (m.Name == "n3") && m.State == StateAlive {
				t.Fatalf("%s sees %s alive across different keys", n.Name(), m.Name)
			}
		}
	}
	// Run through n3, install and use reach it and, over peer RPC, the
	// others (idempotent there); n3 then rejoins.
	if status, r, raw := keyringCall(t, nodes[2], KeyringInstall, keyBody(newK)); status != http.StatusOK || r.OK != 3 {
		t.Fatalf("install through n3: HTTP %d %s", status, raw)
	}
	if status, _, raw := keyringCall(t, nodes[2], KeyringUse, keyBody(newK)); status != http.StatusOK {
		t.Fatalf("use through n3: HTTP %d %s", status, raw)
	}
	waitMembers(t, nodes, 3)
	if status, r, raw := keyringCall(t, nodes[2], KeyringRemove, keyBody(oldKey)); status != http.StatusOK {
		t.Fatalf("remove through n3: HTTP %d %s", status, raw)
	} else {
		wantRing(t, r, 3, newK)
	}

	// A node without gossip encryption has no keyring to operate on.
	plain := openNode(t, testConfig(t, "plain", t.TempDir()))
	if status, _, raw := keyringCall(t, plain, KeyringList, ""); status != http.StatusConflict || !strings.Contains(raw, "not enabled") {
		t.Errorf("list on a node without encryption: HTTP %d %s", status, raw)
	}
}
