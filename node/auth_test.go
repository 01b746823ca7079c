package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// syncBuffer is a bytes.Buffer safe for a node's concurrent log writes.
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

// Secrets of the tokens the tests configure.
const (
	rwSecret = "rw-secret-0123456789abcdef"
	roSecret = "ro-secret-0123456789abcdef"
)

func testTokens() []Token {
	return []Token{
		{Name: "app", Secret: rwSecret, Scope: ScopeReadWrite},
		{Name: "dashboard", Secret: roSecret, Scope: ScopeReadOnly},
	}
}

// answer is a client API answer as the auth tests look at it.
type answer struct {
	status int
	header http.Header
	body   string
}

// call sends method path to n's client API with auth as the Authorization
// header ("" for none).
func call(t *testing.T, n *Node, method, path, auth, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+n.HTTPAddr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read answer: %v", method, path, err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// deniedCounts reads rumor_http_auth_denied_total by reason.
func deniedCounts(t *testing.T, n *Node) map[string]float64 {
	t.Helper()
	fams, err := n.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range fams {
		if mf.GetName() != "rumor_http_auth_denied_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[labelOf(m, "reason")] = m.GetCounter().GetValue()
		}
	}
	return out
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// With tokens, every endpoint but /v1/health and the /ui page needs one: no
// token or an unknown one is 401 with WWW-Authenticate, a read-only token
// reads but cannot write (403, and nothing is written), a read-write token
// does everything. Denials are counted by reason and logged by token name,
// never with a secret.
func TestTokensHTTP(t *testing.T) {
	var logs syncBuffer
	cfg := testConfig(t, "solo", "")
	cfg.InMemory = true
	cfg.Tokens = testTokens()
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n := openNode(t, cfg).Node
	const rw, ro = "Bearer " + rwSecret, "Bearer " + roSecret
	want := map[string]float64{"missing": 0, "unknown": 0, "read_only": 0}

	if a := call(t, n, "PUT", "/v1/kv/k", rw, "v1"); a.status != http.StatusOK {
		t.Fatalf("PUT with the read-write token: %d %s", a.status, a.body)
	}

	reads := []string{"/v1/kv/k", "/v1/kv/k?r=all", "/v1/state/k", "/v1/status", "/v1/members", "/v1/ring",
		"/v1/ring?arcs=1", "/v1/cluster", "/metrics"}
	writes := []struct{ method, path, body string }{
		{"PUT", "/v1/kv/k", "v2"}, {"POST", "/v1/kv/k", "v2"}, {"DELETE", "/v1/kv/k", ""},
		{"POST", "/v1/leave", ""}, {"POST", "/v1/remove/ghost", ""},
		{"POST", "/v1/keyring/install", "{}"}, {"GET", "/v1/keyring", ""},
	}
	unauthorized := func(a answer, what, errWant string) {
		t.Helper()
		if a.status != http.StatusUnauthorized {
			t.Fatalf("%s: %d %s, want 401", what, a.status, a.body)
		}
		if h := a.header.Get("WWW-Authenticate"); !strings.HasPrefix(h, `Bearer realm="rumor"`) || !strings.Contains(h, errWant) {
			t.Fatalf("%s: WWW-Authenticate %q, want Bearer realm=\"rumor\" with %q", what, h, errWant)
		}
		var e errorBody
		if err := json.Unmarshal([]byte(a.body), &e); err != nil || !strings.HasPrefix(e.Error, "unauthorized: ") {
			t.Fatalf("%s: body %q is not a JSON error (%v)", what, a.body, err)
		}
	}

	// No token, a malformed header, an unknown token: 401 everywhere, the
	// paths that do not exist included (nothing to learn without a token).
	for _, auth := range []string{"", "Basic " + rwSecret, "Bearer", "Bearer  ", rwSecret} {
		for _, p := range append(reads, "/v1/nope") {
			unauthorized(call(t, n, "GET", p, auth, ""), fmt.Sprintf("GET %s with %q", p, auth), "")
			want["missing"]++
		}
		for _, w := range writes {
			unauthorized(call(t, n, w.method, w.path, auth, w.body), fmt.Sprintf("%s %s with %q", w.method, w.path, auth), "")
			want["missing"]++
		}
	}
	for _, auth := range []string{"Bearer not-a-token-of-this-node", "Bearer " + rwSecret + "x", "Bearer " + rwSecret[:len(rwSecret)-1]} {
		for _, p := range reads {
			unauthorized(call(t, n, "GET", p, auth, ""), "GET "+p+" with an unknown token", `error="invalid_token"`)
			want["unknown"]++
		}
		unauthorized(call(t, n, "DELETE", "/v1/kv/k", auth, ""), "DELETE with an unknown token", `error="invalid_token"`)
		want["unknown"]++
	}

	// Open without a token: probes and the page (not its data).
	for _, c := range []struct{ method, path string }{{"GET", "/v1/health"}, {"HEAD", "/v1/health"}, {"GET", "/ui"}, {"GET", "/ui/"}, {"HEAD", "/ui"}} {
		if a := call(t, n, c.method, c.path, "", ""); a.status != http.StatusOK {
			t.Fatalf("%s %s without a token: %d %s", c.method, c.path, a.status, a.body)
		}
	}
	if a := call(t, n, "GET", "/ui", "", ""); !strings.Contains(a.body, "<html") || a.header.Get("Content-Security-Policy") == "" {
		t.Fatalf("/ui without a token: %q", a.body)
	}
	unauthorized(call(t, n, "POST", "/ui", "", ""), "POST /ui without a token", "")
	want["missing"]++

	// Read-only: every read, no write.
	for _, p := range reads {
		a := call(t, n, "GET", p, ro, "")
		if a.status != http.StatusOK {
			t.Fatalf("GET %s with the read-only token: %d %s", p, a.status, a.body)
		}
	}
	if a := call(t, n, "GET", "/v1/kv/k", "bearer "+roSecret, ""); a.status != http.StatusOK || a.body != "v1" {
		t.Fatalf("GET with a lower-case scheme: %d %q", a.status, a.body)
	}
	for _, w := range writes {
		a := call(t, n, w.method, w.path, ro, w.body)
		if a.status != http.StatusForbidden {
			t.Fatalf("%s %s with the read-only token: %d %s, want 403", w.method, w.path, a.status, a.body)
		}
		if h := a.header.Get("WWW-Authenticate"); !strings.Contains(h, `error="insufficient_scope"`) {
			t.Fatalf("%s %s with the read-only token: WWW-Authenticate %q", w.method, w.path, h)
		}
		var e errorBody
		if err := json.Unmarshal([]byte(a.body), &e); err != nil || e.Error != "forbidden: the token is read-only" {
			t.Fatalf("%s %s with the read-only token: body %q", w.method, w.path, a.body)
		}
		want["read_only"]++
	}
	// Nothing was written, and the node did not start leaving.
	if a := call(t, n, "GET", "/v1/kv/k", rw, ""); a.status != http.StatusOK || a.body != "v1" {
		t.Fatalf("after the read-only token's writes, k = %d %q; want 200 \"v1\"", a.status, a.body)
	}
	if st := n.mem.selfRow().Status; st != StatusMember {
		t.Fatalf("after the read-only token's leave, the node is %s", st)
	}

	// Read-write: everything (what is refused now is refused by the
	// endpoint, not for the token).
	for _, p := range reads {
		if a := call(t, n, "GET", p, rw, ""); a.status != http.StatusOK {
			t.Fatalf("GET %s with the read-write token: %d %s", p, a.status, a.body)
		}
	}
	for _, c := range []struct {
		method, path, body string
		status             int
	}{
		{"PUT", "/v1/kv/k", "v2", 200}, {"POST", "/v1/kv/k2", "x", 200}, {"DELETE", "/v1/kv/k2", "", 200},
		{"POST", "/v1/remove/ghost", "", 404}, {"GET", "/v1/nope", "", 404},
	} {
		if a := call(t, n, c.method, c.path, rw, c.body); a.status != c.status {
			t.Fatalf("%s %s with the read-write token: %d %s, want %d", c.method, c.path, a.status, a.body, c.status)
		}
	}
	if a := call(t, n, "GET", "/v1/kv/k", ro, ""); a.status != http.StatusMultipleChoices || !strings.Contains(a.body, `"v2"`) {
		t.Fatalf("k after the read-write PUT (without context: a sibling): %d %q", a.status, a.body)
	}
	if a := call(t, n, "POST", "/v1/leave", rw, ""); a.status != http.StatusAccepted {
		t.Fatalf("leave with the read-write token: %d %s", a.status, a.body)
	}

	if got := deniedCounts(t, n); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("rumor_http_auth_denied_total = %v, want %v", got, want)
	}
	out := logs.String()
	for _, s := range []string{rwSecret, roSecret, rwSecret[:len(rwSecret)-1]} {
		if strings.Contains(out, s) {
			t.Fatalf("a secret is in the log:\n%s", out)
		}
	}
	for _, s := range []string{`reason=read_only token=dashboard`, `reason=missing`, `reason=unknown`,
		`msg="client API requests denied for missing, unknown or read-only tokens"`} {
		if !strings.Contains(out, s) {
			t.Errorf("the log lacks %q", s)
		}
	}
}

// Without tokens, nothing is refused and nothing counted.
func TestNoTokensOpen(t *testing.T) {
	cfg := testConfig(t, "solo", "")
	cfg.InMemory = true
	n := openNode(t, cfg).Node
	for _, c := range []struct{ method, path string }{{"PUT", "/v1/kv/k"}, {"GET", "/v1/kv/k"}, {"GET", "/metrics"}, {"GET", "/v1/cluster"}} {
		if a := call(t, n, c.method, c.path, "", "v"); a.status != http.StatusOK {
			t.Fatalf("%s %s: %d %s", c.method, c.path, a.status, a.body)
		}
	}
	// A token sent to a node without tokens is ignored.
	if a := call(t, n, "GET", "/v1/kv/k", "Bearer whatever-it-is-here", ""); a.status != http.StatusOK {
		t.Fatalf("GET with a token: %d %s", a.status, a.body)
	}
	for reason, v := range deniedCounts(t, n) {
		if v != 0 {
			t.Fatalf("%s denials: %v", reason, v)
		}
	}
}

func TestScopeNeeded(t *testing.T) {
	for _, c := range []struct {
		method, path string
		want         Scope
	}{
		{"GET", "/v1/health", ""}, {"HEAD", "/v1/health", ""}, {"POST", "/v1/health", ""},
		{"GET", "/ui", ""}, {"HEAD", "/ui/", ""}, {"POST", "/ui", ScopeReadWrite},
		{"GET", "/v1/kv/a", ScopeReadOnly}, {"HEAD", "/v1/kv/a", ScopeReadOnly},
		{"PUT", "/v1/kv/a", ScopeReadWrite}, {"POST", "/v1/kv/a", ScopeReadWrite}, {"DELETE", "/v1/kv/a", ScopeReadWrite},
		{"PATCH", "/v1/kv/a", ScopeReadWrite}, {"OPTIONS", "/v1/kv/a", ScopeReadWrite},
		{"GET", "/metrics", ScopeReadOnly}, {"GET", "/v1/cluster", ScopeReadOnly}, {"GET", "/v1/ui", ScopeReadOnly},
		{"POST", "/v1/leave", ScopeReadWrite}, {"POST", "/v1/remove/n2", ScopeReadWrite},
		{"GET", "/v1/keyring", ScopeReadWrite}, {"GET", "/v1/keyring/", ScopeReadWrite}, {"POST", "/v1/keyring/use", ScopeReadWrite},
		{"GET", "/v1/keyringx", ScopeReadOnly}, {"GET", "/v1//health", ScopeReadOnly}, {"GET", "/v1/health/", ScopeReadOnly},
	} {
		r, err := http.NewRequest(c.method, "http://x"+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := scopeNeeded(r); got != c.want {
			t.Errorf("%s %s needs %q, want %q", c.method, c.path, got, c.want)
		}
	}
}

func TestAuthenticatorLookup(t *testing.T) {
	a := newAuthenticator(testTokens())
	for secret, want := range map[string]string{rwSecret: "app", roSecret: "dashboard", "": "", rwSecret + " ": "",
		strings.ToUpper(rwSecret): "", rwSecret[:16]: ""} {
		tok, ok := a.lookup(secret)
		if ok != (want != "") || tok.name != want {
			t.Errorf("lookup(%q) = %q, %v; want %q", secret, tok.name, ok, want)
		}
	}
	if _, ok := newAuthenticator(nil).lookup(rwSecret); ok {
		t.Error("an authenticator without tokens matched a secret")
	}
}

// Config.Tokens is validated by Open; no error quotes a secret.
func TestTokensValidate(t *testing.T) {
	good := testTokens()
	with := func(f func(ts []Token) []Token) []Token {
		ts := append([]Token(nil), good...)
		return f(ts)
	}
	for _, c := range []struct {
		what   string
		tokens []Token
		want   string
	}{
		{"short secret", with(func(ts []Token) []Token { ts[1].Secret = "short-secret"; return ts }), `token 2 ("dashboard"): the secret has 12 characters; want at least 16`},
		{"long secret", with(func(ts []Token) []Token { ts[0].Secret = strings.Repeat("x", 1025); return ts }), "at most 1024"},
		{"space in secret", with(func(ts []Token) []Token { ts[0].Secret = "a secret with spaces"; return ts }), "visible ASCII"},
		{"control in secret", with(func(ts []Token) []Token { ts[0].Secret = "0123456789abcdef\n"; return ts }), "visible ASCII"},
		{"bad scope", with(func(ts []Token) []Token { ts[0].Scope = "admin"; return ts }), `token 1 ("app"): scope "admin": want read-only or read-write`},
		{"no scope", with(func(ts []Token) []Token { ts[0].Scope = ""; return ts }), `scope ""`},
		{"no name", with(func(ts []Token) []Token { ts[1].Name = ""; return ts }), "token 2: no name"},
		{"bad name", with(func(ts []Token) []Token { ts[1].Name = "my app"; return ts }), "a name is up to 64 letters"},
		{"duplicate name", with(func(ts []Token) []Token {
			return append(ts, Token{Name: "app", Secret: "another-secret-0123456789", Scope: ScopeReadOnly})
		}),
			`token 3 ("app"): the name of token 1 again`},
		{"duplicate secret", with(func(ts []Token) []Token {
			return append(ts, Token{Name: "other", Secret: roSecret, Scope: ScopeReadWrite})
		}),
			`token 3 ("other"): the secret of token 2 again`},
	} {
		cfg := testConfig(t, "solo", "")
		cfg.InMemory = true
		cfg.Tokens = c.tokens
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Validate() = %v, want %q", c.what, err, c.want)
			continue
		}
		for _, tk := range c.tokens {
			if strings.Contains(err.Error(), tk.Secret) {
				t.Errorf("%s: the error quotes a secret: %v", c.what, err)
			}
		}
		if _, err := Open(cfg); err == nil {
			t.Errorf("%s: Open accepted the tokens", c.what)
		}
	}
	cfg := testConfig(t, "solo", "")
	cfg.InMemory = true
	cfg.Tokens = good
	if err := cfg.Validate(); err != nil {
		t.Fatalf("good tokens: %v", err)
	}
}

func TestParseTokens(t *testing.T) {
	const goodFile = `# tokens of the cluster
[[token]]
name = "app"
scope = "read-write"
secret = "` + rwSecret + `"

[[token]]
name = "dashboard"
scope = "read-only"
secret = "` + roSecret + `"
`
	ts, err := ParseTokens([]byte(goodFile))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%#v", ts) != fmt.Sprintf("%#v", testTokens()) || ts[0].Secret != rwSecret || ts[1].Secret != roSecret {
		t.Fatalf("parsed %v", ts)
	}
	tok := func(name, scope, secret string) string {
		return fmt.Sprintf("[[token]]\nname = %q\nscope = %q\nsecret = %q\n", name, scope, secret)
	}
	for _, c := range []struct{ what, file, want string }{
		{"bad scope", tok("a", "write", rwSecret), `token 1 ("a"): scope "write"`},
		{"short secret", tok("a", "read-only", "0123456789"), "the secret has 10 characters; want at least 16"},
		{"duplicate name", tok("a", "read-only", rwSecret) + tok("a", "read-only", roSecret), "the name of token 1 again"},
		{"duplicate secret", tok("a", "read-only", rwSecret) + tok("b", "read-write", rwSecret), "the secret of token 1 again"},
		{"unknown key", tok("a", "read-only", rwSecret) + "expires = \"2030-01-01\"\n", `unknown key "token.expires"`},
		{"misspelt key", "[[token]]\nname = \"a\"\nscope = \"read-only\"\nsecrets = \"" + rwSecret + "\"\n", `unknown key "token.secrets"`},
		{"top-level key", "version = 2\n" + tok("a", "read-only", rwSecret), `unknown key "version"`},
		{"no secret", "[[token]]\nname = \"a\"\nscope = \"read-only\"\n", "the secret has 0 characters"},
		{"empty", "# nothing yet\n", "no [[token]] table"},
		{"a table, not an array of tables", "[token]\nname = \"a\"\n", "[[token]] tables"},
		{"wrong type", "[[token]]\nname = \"a\"\nscope = 1\n", "incompatible types"},
		{"unquoted secret", "[[token]]\nname = \"a\"\nscope = \"read-only\"\nsecret = " + rwSecret + "\n", "line 4:"},
		{"unterminated secret", "[[token]]\nname = \"a\"\nsecret = \"" + rwSecret + "\n", "line 3:"},
	} {
		_, err := ParseTokens([]byte(c.file))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.what, err, c.want)
			continue
		}
		if strings.Contains(err.Error(), rwSecret) || strings.Contains(err.Error(), roSecret) {
			t.Errorf("%s: the error quotes a secret: %v", c.what, err)
		}
	}
}

func TestReadTokensFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		data := fmt.Sprintf("[[token]]\nname = \"app\"\nscope = \"read-write\"\nsecret = %q\n", rwSecret)
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // whatever the umask
			t.Fatal(err)
		}
		return p
	}
	ts, warn, err := ReadTokensFile(write("private", 0o600))
	if err != nil || warn != "" || len(ts) != 1 || ts[0].Name != "app" {
		t.Fatalf("0600 file: %v %q %v", ts, warn, err)
	}
	ts, warn, err = ReadTokensFile(write("group", 0o640))
	if err != nil || warn != "" || len(ts) != 1 {
		t.Fatalf("0640 file: %v %q %v", ts, warn, err)
	}
	ts, warn, err = ReadTokensFile(write("readable", 0o644))
	if err != nil || len(ts) != 1 || !strings.Contains(warn, "readable by every user") || !strings.Contains(warn, "chmod 600") {
		t.Fatalf("0644 file: %v %q %v", ts, warn, err)
	}
	if _, _, err := ReadTokensFile(write("writable", 0o666)); err == nil || !strings.Contains(err.Error(), "anyone may write it") {
		t.Fatalf("0666 file: %v", err)
	}
	if _, _, err := ReadTokensFile(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("[[token]]\nname = \"x\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadTokensFile(bad); err == nil || !strings.Contains(err.Error(), "tokens file "+bad+": token 1") {
		t.Fatalf("bad file: %v", err)
	}
}

// Printing or logging a token never shows its secret.
func TestTokenNoSecretInOutput(t *testing.T) {
	tk := Token{Name: "app", Secret: rwSecret, Scope: ScopeReadWrite}
	var logs syncBuffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "token", tk, "tokens", []Token{tk})
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "token", tk)
	for _, s := range []string{fmt.Sprint(tk), fmt.Sprintf("%+v", tk), fmt.Sprintf("%#v", tk), fmt.Sprintf("%v", []Token{tk}),
		fmt.Sprintf("%+v", &Config{Tokens: []Token{tk}}), logs.String()} {
		if strings.Contains(s, rwSecret) {
			t.Errorf("the secret shows: %s", s)
		}
		if !strings.Contains(s, "app") {
			t.Errorf("the name does not show: %s", s)
		}
	}
}

func TestSecurityGaps(t *testing.T) {
	gossip, rpcTLS, tokens := "gossip without encryption", "peer RPC without mutual TLS", "client API without tokens"
	pki := newTestPKI(t)
	cfg := DefaultConfig("n", "")
	cfg.InMemory = true
	cfg.HTTPAddr = "127.0.0.1:0"
	has := func(g []string, want ...string) bool {
		if len(g) != len(want) {
			return false
		}
		for i := range want {
			if !strings.Contains(g[i], want[i]) {
				return false
			}
		}
		return true
	}
	if g := cfg.SecurityGaps(); !has(g, gossip, rpcTLS, tokens) {
		t.Fatalf("nothing configured: %q", g)
	}
	cfg.Tokens = testTokens()
	if g := cfg.SecurityGaps(); !has(g, gossip, rpcTLS) {
		t.Fatalf("with tokens: %q", g)
	}
	cfg.GossipKeys = [][]byte{newKey(t, 32)}
	if g := cfg.SecurityGaps(); !has(g, rpcTLS) {
		t.Fatalf("with tokens and a gossip key: %q", g)
	}
	cfg.TLS = pki.nodeTLS(t, "n")
	if g := cfg.SecurityGaps(); len(g) != 0 {
		t.Fatalf("with everything: %q", g)
	}
	cfg.Tokens, cfg.HTTPAddr = nil, ""
	if g := cfg.SecurityGaps(); len(g) != 0 {
		t.Fatalf("without a client API: %q", g)
	}
	// A keyring file (keys installed by rotation) counts as a gossip key.
	dir := t.TempDir()
	kcfg := DefaultConfig("k", dir)
	kcfg.HTTPAddr = "127.0.0.1:0"
	if g := kcfg.SecurityGaps(); !has(g, gossip, rpcTLS, tokens) {
		t.Fatalf("fresh data directory: %q", g)
	}
	if err := os.WriteFile(filepath.Join(dir, KeyringFileName), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if g := kcfg.SecurityGaps(); !has(g, rpcTLS, tokens) {
		t.Fatalf("with a keyring file: %q", g)
	}

	// Open refuses what is missing unless Insecure is set, and logs it
	// when it is; with everything configured it needs no Insecure.
	for _, c := range []struct {
		insecure, secure bool
		wantErr, wantLog string
	}{
		{false, false, "node: insecure configuration: gossip without encryption", ""},
		{true, false, "", `level=WARN msg="running insecure, as asked: gossip without encryption`},
		{true, true, "", `level=INFO msg="insecure is set, but nothing is left unprotected"`},
		{false, true, "", ""},
	} {
		var logs syncBuffer
		cfg := testConfig(t, "solo", "")
		cfg.InMemory = true
		cfg.Insecure = c.insecure
		if c.secure {
			cfg.Tokens, cfg.GossipKeys, cfg.TLS = testTokens(), [][]byte{newKey(t, 16)}, pki.nodeTLS(t, "solo")
		}
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		n, err := Open(cfg)
		if c.wantErr != "" {
			if err == nil {
				n.Close()
				t.Fatalf("insecure %v, secure %v: opened", c.insecure, c.secure)
			}
			if !errors.Is(err, ErrInsecure) || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), "--insecure") {
				t.Errorf("insecure %v, secure %v: %v", c.insecure, c.secure, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		n.Close()
		out := logs.String()
		if c.wantLog != "" && !strings.Contains(out, c.wantLog) || c.wantLog == "" && (strings.Contains(out, "running") || strings.Contains(out, "insecure")) {
			t.Errorf("insecure %v, secure %v: log lacks %q:\n%s", c.insecure, c.secure, c.wantLog, out)
		}
	}
}
