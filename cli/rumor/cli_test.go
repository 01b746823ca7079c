package main

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rumorkv/rumor/node"
)

// getOut is `get -o json` as a script would decode it.
type getOut struct {
	Values   []string `json:"values"`
	Encoding string   `json:"encoding"`
	Context  string   `json:"context"`
}

func decode[T any](t *testing.T, r result) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("stdout is not the expected JSON: %v\n%v", err, r)
	}
	return v
}

func readJSON(t *testing.T, args ...string) getOut {
	t.Helper()
	return decode[getOut](t, ok(t, append([]string{"get", "-o", "json"}, args...)...))
}

// TestCLI drives every client command through run() against one real
// 3-node cluster. Subtests use their own keys.
func TestCLI(t *testing.T) {
	nodes := startCluster(t, 3)
	a, b, c := nodes[0].HTTPAddr(), nodes[1].HTTPAddr(), nodes[2].HTTPAddr()

	t.Run("put get del", func(t *testing.T) {
		r := ok(t, "put", "--addr", a, "--w", "all", "rt", "v1")
		if !strings.HasPrefix(r.stdout, "ok context=") || len(r.stdout) < len("ok context=x\n") || r.err != "" {
			t.Fatalf("put output: %v", r)
		}
		for _, addr := range []string{a, b, c} {
			if r := ok(t, "get", "rt", "--addr", addr); r.stdout != "v1\n" || r.err != "" {
				t.Fatalf("get via %s: %v", addr, r)
			}
		}
		g := readJSON(t, "rt", "--addr", b)
		if !slices.Equal(g.Values, []string{"v1"}) || g.Context == "" || g.Encoding != "" {
			t.Fatalf("get -o json: %+v", g)
		}
		// put -o json answers the new context.
		p := decode[map[string]string](t, ok(t, "put", "rt", "v2", "--context", g.Context, "--addr", b, "--w", "all", "-o", "json"))
		if p["context"] == "" {
			t.Fatalf("put -o json: %v", p)
		}
		if g := readJSON(t, "rt", "--addr", c, "--r", "all"); !slices.Equal(g.Values, []string{"v2"}) {
			t.Fatalf("after overwrite with context: %+v", g)
		}
		if r := ok(t, "del", "rt", "--addr", c, "--w", "all"); !strings.HasPrefix(r.stdout, "ok context=") {
			t.Fatalf("del output: %v", r)
		}
		for _, addr := range []string{a, b, c} {
			wantError(t, rumor(t, "get", "rt", "--addr", addr), exitNotFound, "rumor: not found")
		}
		// get -o json of a deleted key: exit 1, an empty list and the
		// tombstone's context on stdout, "not found" on stderr.
		r = rumor(t, "get", "rt", "--addr", a, "-o", "json")
		if r.code != exitNotFound || r.err != "rumor: not found\n" {
			t.Fatalf("get -o json of a deleted key: %v", r)
		}
		if g := decode[getOut](t, r); g.Values == nil || len(g.Values) != 0 || g.Context == "" {
			t.Fatalf("get -o json of a deleted key: %+v (want values [] and a context)", g)
		}
		// The delete alias and del -o json.
		ok(t, "put", "rt2", "x", "--addr", a, "--w", "all")
		d := decode[map[string]string](t, ok(t, "delete", "rt2", "--addr", a, "--w", "all", "-o", "json"))
		if d["context"] == "" {
			t.Fatalf("delete -o json: %v", d)
		}
		wantError(t, rumor(t, "get", "rt2", "--addr", b, "--r", "all"), exitNotFound, "not found")
	})

	t.Run("missing key", func(t *testing.T) {
		wantError(t, rumor(t, "get", "never-written", "--addr", a), exitNotFound, "rumor: not found")
		wantError(t, rumor(t, "get", "never-written", "--addr", a, "--r", "all"), exitNotFound, "not found")
		wantError(t, rumor(t, "get", "never-written", "--addr", b, "--local"), exitNotFound, "not found")
		r := rumor(t, "get", "never-written", "--addr", a, "-o", "json")
		if r.code != exitNotFound || r.err != "rumor: not found\n" {
			t.Fatalf("%v", r)
		}
		if g := decode[getOut](t, r); len(g.Values) != 0 {
			t.Fatalf("%+v", g)
		}
	})

	t.Run("siblings", func(t *testing.T) {
		ok(t, "put", "sib", "apple", "--addr", a, "--w", "all")
		ok(t, "put", "sib", "banana", "--addr", c, "--w", "all") // no context: concurrent
		g := readJSON(t, "sib", "--addr", b, "--r", "all")
		vals := slices.Sorted(slices.Values(g.Values))
		if !slices.Equal(vals, []string{"apple", "banana"}) || g.Context == "" {
			t.Fatalf("siblings: %+v", g)
		}
		// Text output: one value per line on stdout, a hint on stderr,
		// exit 0.
		r := ok(t, "get", "sib", "--addr", a, "--r", "all")
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		slices.Sort(lines)
		if !slices.Equal(lines, []string{"apple", "banana"}) {
			t.Fatalf("text siblings: %v", r)
		}
		if !strings.Contains(r.err, "2 concurrent siblings") || !strings.Contains(r.err, "--context ") {
			t.Fatalf("sibling hint: %v", r)
		}
		// The README's form: flags after the positionals.
		ok(t, "put", "sib", "cherry, resolved", "--context", g.Context, "--addr", b, "--w", "all")
		for _, addr := range []string{a, b, c} {
			if g := readJSON(t, "sib", "--addr", addr, "--r", "all"); !slices.Equal(g.Values, []string{"cherry, resolved"}) {
				t.Fatalf("after resolving via %s: %+v", addr, g)
			}
		}
		// A delete with a read's context removes exactly what that read
		// saw: a value written after the read survives.
		g = readJSON(t, "sib", "--addr", a, "--r", "all")
		ok(t, "put", "sib", "late", "--addr", b, "--w", "all")
		ok(t, "del", "sib", "--context", g.Context, "--addr", c, "--w", "all")
		if g := readJSON(t, "sib", "--addr", a, "--r", "all"); !slices.Equal(g.Values, []string{"late"}) {
			t.Fatalf("after del --context of an older read: %+v, want [late]", g)
		}
		// Without --context, del removes every sibling a read sees now.
		ok(t, "put", "sib", "another", "--addr", a, "--w", "all")
		if g := readJSON(t, "sib", "--addr", c, "--r", "all"); len(g.Values) != 2 {
			t.Fatalf("want two siblings again: %+v", g)
		}
		ok(t, "del", "sib", "--addr", c, "--w", "all")
		for _, addr := range []string{a, b, c} {
			wantError(t, rumor(t, "get", "sib", "--addr", addr, "--r", "all"), exitNotFound, "not found")
		}
		// Deleting a key that has no value succeeds (idempotent).
		ok(t, "del", "sib", "--addr", a)
		ok(t, "del", "never-written-either", "--addr", b)
	})

	t.Run("local", func(t *testing.T) {
		ok(t, "put", "loc", "here", "--addr", a, "--w", "all")
		// N=3 on 3 nodes: every node holds a copy.
		for _, addr := range []string{a, b, c} {
			if r := ok(t, "get", "loc", "--local", "--addr", addr); r.stdout != "here\n" {
				t.Fatalf("get --local via %s: %v", addr, r)
			}
			if g := readJSON(t, "--local", "loc", "--addr", addr); !slices.Equal(g.Values, []string{"here"}) {
				t.Fatalf("get --local -o json via %s: %+v", addr, g)
			}
		}
	})

	t.Run("quorums", func(t *testing.T) {
		for _, w := range []string{"1", "2", "3", "quorum", "all", "primary", "one"} {
			ok(t, "put", "q", "w="+w, "--w", w, "--addr", b)
		}
		for _, r := range []string{"1", "2", "3", "quorum", "all", "one"} {
			if g := readJSON(t, "q", "--r", r, "--addr", c); len(g.Values) == 0 {
				t.Fatalf("--r %s: %+v", r, g)
			}
		}
		// Later writes without context are siblings; --r all sees all of them.
		if g := readJSON(t, "q", "--r", "all", "--addr", a); len(g.Values) != 7 {
			t.Fatalf("--r all after 7 context-free writes: %d values %q", len(g.Values), g.Values)
		}
		ok(t, "put", "q2", "v", "--w", "quorum", "--addr", c)
		ok(t, "del", "q2", "--w", "quorum", "--addr", a)
	})

	t.Run("bad quorum flags", func(t *testing.T) {
		dead := closedAddr(t)
		// Checked before anything is sent: the error is about the flag,
		// not about the unreachable node.
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"get", "k", "--r", "bogus"}, `bad --r "bogus": want 1, 2, …, quorum or all`},
			{[]string{"get", "k", "--r", "primary"}, `bad --r "primary"`},
			{[]string{"get", "k", "--r", "0"}, `bad --r "0"`},
			{[]string{"get", "k", "--r", "-1"}, `bad --r "-1"`},
			{[]string{"put", "k", "v", "--w", "most"}, `bad --w "most": want 1, 2, …, quorum, all or primary`},
			{[]string{"put", "k", "v", "--w=0"}, `bad --w "0"`},
			{[]string{"del", "k", "--w", "x"}, `bad --w "x"`},
		} {
			wantError(t, rumor(t, append(tc.args, "--addr", dead)...), exitError, tc.want)
			wantError(t, rumor(t, append(tc.args, "--addr", a)...), exitError, tc.want)
		}
	})

	t.Run("members", func(t *testing.T) {
		ms := decode[[]map[string]any](t, ok(t, "members", "-o", "json", "--addr", b))
		var names []string
		for _, m := range ms {
			name, _ := m["name"].(string)
			names = append(names, name)
			if m["state"] != "alive" {
				t.Errorf("member %v: state %v, want alive", name, m["state"])
			}
		}
		slices.Sort(names)
		if !slices.Equal(names, []string{"n1", "n2", "n3"}) {
			t.Fatalf("members -o json names %q", names)
		}
		// Global -o before the command works too.
		if ms := decode[[]node.MemberInfo](t, ok(t, "-o", "json", "--addr", c, "members")); len(ms) != 3 {
			t.Fatalf("rumor -o json members: %+v", ms)
		}
		r := ok(t, "members", "--addr", a)
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		if len(lines) != 4 || !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[0], "STATE") {
			t.Fatalf("members text: %v", r)
		}
		for _, n := range nodes {
			found := false
			for _, l := range lines[1:] {
				f := strings.Fields(l)
				if len(f) == 8 && f[0] == n.Name() && f[2] == "alive" && f[3] == "member" && f[4] == "-" && f[7] == n.HTTPAddr() {
					found = true
				}
			}
			if !found {
				t.Errorf("members text has no alive row for %s:\n%s", n.Name(), r.stdout)
			}
		}
	})

	t.Run("ring", func(t *testing.T) {
		ri := decode[node.RingInfo](t, ok(t, "ring", "-o", "json", "--addr", a))
		if ri.N != 3 || ri.VNodes <= 0 || len(ri.Members) != 3 {
			t.Fatalf("ring -o json: %+v", ri)
		}
		sum := 0.0
		for _, m := range ri.Members {
			if m.State != "alive" || m.Ownership <= 0 || m.Name == "" {
				t.Errorf("ring member %+v", m)
			}
			sum += m.Ownership
		}
		if math.Abs(sum-1) > 1e-6 {
			t.Errorf("ownership sums to %v, want 1", sum)
		}
		r := ok(t, "ring", "--addr", a)
		if !strings.HasPrefix(r.stdout, "N=3, ") || !strings.Contains(r.stdout, "OWNS (PRIMARY)") ||
			strings.Count(r.stdout, "%\n") != 3 {
			t.Fatalf("ring text: %v", r)
		}
	})

	t.Run("status", func(t *testing.T) {
		ok(t, "put", "st", "v", "--addr", a)
		st := decode[map[string]any](t, ok(t, "status", "--node", "-o", "json", "--addr", a))
		if st["name"] != "n1" {
			t.Fatalf("status name %v", st["name"])
		}
		m, _ := st["metrics"].(map[string]any)
		if w, _ := m["writes"].(float64); w < 1 {
			t.Fatalf("status metrics.writes = %v, want ≥ 1 (%v)", m["writes"], st)
		}
		if ae, _ := st["antientropy"].(map[string]any); ae == nil || ae["peers"] == nil {
			t.Fatalf("status has no antientropy.peers: %v", st)
		}
		r := ok(t, "status", "--node", "--addr", a)
		for _, want := range []string{"name: n1\n", "metrics:\n", "\n  writes: ", "\n  reads: ", "antientropy:\n", "\n  ranges_total: ", "\n  peers:\n"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("status text lacks %q:\n%s", want, r.stdout)
			}
		}
		// Keys sorted, counters printed as plain integers.
		if strings.Index(r.stdout, "antientropy:") > strings.Index(r.stdout, "metrics:") ||
			strings.Contains(r.stdout, "e+") {
			t.Errorf("status text:\n%s", r.stdout)
		}
	})

	t.Run("RUMOR_ADDR", func(t *testing.T) {
		ok(t, "put", "envk", "from-env", "--addr", a, "--w", "all")
		t.Setenv("RUMOR_ADDR", b)
		if r := ok(t, "get", "envk"); r.stdout != "from-env\n" {
			t.Fatalf("get with RUMOR_ADDR: %v", r)
		}
		ok(t, "members")

		dead := closedAddr(t)
		t.Setenv("RUMOR_ADDR", dead)
		wantError(t, rumor(t, "get", "envk"), exitError, "connection refused", dead)
		// A flag beats the environment, before or after the command.
		if r := ok(t, "--addr", c, "get", "envk"); r.stdout != "from-env\n" {
			t.Fatalf("global --addr over RUMOR_ADDR: %v", r)
		}
		if r := ok(t, "get", "envk", "--addr", c); r.stdout != "from-env\n" {
			t.Fatalf("command --addr over RUMOR_ADDR: %v", r)
		}
		// The environment is read afresh on every run (urfave/cli keeps
		// environment values in the flag structs, which must not be shared
		// between runs).
		os.Unsetenv("RUMOR_ADDR")
		wantError(t, rumor(t, "--addr", dead, "get", "envk"), exitError, "connection refused", dead)
		wantError(t, rumor(t, "get", "envk", "--addr", dead), exitError, "connection refused", dead)
	})

	t.Run("token", func(t *testing.T) {
		var mu sync.Mutex
		var seen []string
		fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			seen = append(seen, r.Header.Get("Authorization"))
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"values":["v"],"context":"C"}`))
		}))
		defer fake.Close()
		ok(t, "--token", "g", "get", "k", "--addr", fake.URL)
		ok(t, "get", "k", "--token", "c", "--addr", fake.URL)
		t.Setenv("RUMOR_TOKEN", "e")
		ok(t, "get", "k", "--addr", fake.URL)
		ok(t, "get", "k", "--addr", fake.URL, "--token", "c2")
		mu.Lock()
		defer mu.Unlock()
		if want := []string{"Bearer g", "Bearer c", "Bearer e", "Bearer c2"}; !slices.Equal(seen, want) {
			t.Fatalf("Authorization headers %q, want %q", seen, want)
		}
	})

	t.Run("connection refused", func(t *testing.T) {
		dead := closedAddr(t)
		for _, args := range [][]string{
			{"get", "k"}, {"get", "k", "-o", "json"}, {"put", "k", "v"}, {"del", "k"},
			{"members"}, {"ring"}, {"status", "-o", "json"},
		} {
			wantError(t, rumor(t, append(args, "--addr", dead)...), exitError,
				"connection refused", dead, "is a rumor agent listening there?")
		}
	})

	t.Run("usage errors", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want []string
		}{
			{[]string{"put", "k"}, []string{"put needs KEY and VALUE, got 1 arguments", "(usage: rumor put KEY VALUE)"}},
			{[]string{"put", "k", "v", "extra"}, []string{"put needs KEY and VALUE, got 3", "usage: rumor put KEY VALUE"}},
			{[]string{"put"}, []string{"put needs KEY and VALUE, got 0"}},
			{[]string{"get"}, []string{"get needs KEY, got 0 arguments", "(usage: rumor get KEY)"}},
			{[]string{"get", "a", "b"}, []string{"get needs KEY, got 2", "usage: rumor get KEY"}},
			{[]string{"del"}, []string{"del needs KEY", "usage: rumor del KEY"}},
			{[]string{"delete", "a", "b"}, []string{"del needs KEY"}},
			{[]string{"members", "extra"}, []string{`members takes no arguments, got "extra"`}},
			{[]string{"ring", "x"}, []string{"ring takes no arguments"}},
			{[]string{"status", "x"}, []string{"status takes no arguments"}},
			{[]string{"get", "k", "--bogus"}, []string{"flag provided but not defined: -bogus", "(see 'rumor get --help')"}},
			{[]string{"--bogus", "get", "k"}, []string{"flag provided but not defined: -bogus", "(see 'rumor --help')"}},
			{[]string{"put", "k", "v", "--context"}, []string{"flag needs an argument: -context"}},
			{[]string{"get", "k", "-o"}, []string{"flag needs an argument: -o"}},
			{[]string{"get", "k", "--local=maybe"}, []string{"invalid boolean value"}},
			{[]string{"bogus"}, []string{`unknown command "bogus"`, "rumor --help"}},
			{[]string{"bogus", "k", "-o", "json"}, []string{`unknown command "bogus"`}},
			{[]string{"help", "bogus"}, []string{"No help topic for 'bogus'"}},
			{[]string{"get", "k", "-o", "yaml"}, []string{`unknown output format "yaml": want text or json`}},
			{[]string{"-o", "yaml", "members"}, []string{`unknown output format "yaml"`}},
			{[]string{"put", "k", "v", "-o", "xml"}, []string{`unknown output format "xml"`}},
		} {
			// No node is contacted: a dead address proves it.
			wantError(t, rumor(t, append([]string{"--addr", closedAddr(t)}, tc.args...)...), exitError, tc.want...)
		}
	})

	t.Run("awkward keys and values", func(t *testing.T) {
		// Keys that are also help's names: read as keys, not as help.
		for _, k := range []string{"help", "h"} {
			ok(t, "put", k, "not help", "--addr", a, "--w", "all")
			if r := ok(t, "get", k, "--addr", b); r.stdout != "not help\n" {
				t.Fatalf("get %s: %v", k, r)
			}
		}
		// Values that start with a dash go after "--".
		ok(t, "put", "--addr", a, "--w", "all", "dash", "--", "-5")
		if r := ok(t, "get", "dash", "--addr", c); r.stdout != "-5\n" {
			t.Fatalf("dash value: %v", r)
		}
		ok(t, "put", "--addr", a, "--w", "all", "--", "-k", "--local")
		if r := ok(t, "get", "--addr", b, "--", "-k"); r.stdout != "--local\n" {
			t.Fatalf("dash key: %v", r)
		}
		// Keys that need escaping in a URL, and unicode.
		for _, k := range []string{"a/b c", "../x", "x?y#z", "100%", "clé ☃"} {
			ok(t, "put", k, "v:"+k, "--addr", a, "--w", "all")
			if g := readJSON(t, k, "--addr", c); !slices.Equal(g.Values, []string{"v:" + k}) {
				t.Fatalf("key %q: %+v", k, g)
			}
		}
		// Empty and multi-line values.
		ok(t, "put", "empty", "", "--addr", a, "--w", "all")
		if g := readJSON(t, "empty", "--addr", b); !slices.Equal(g.Values, []string{""}) {
			t.Fatalf("empty value: %+v", g)
		}
		ok(t, "put", "lines", "one\ntwo", "--addr", a, "--w", "all")
		if r := ok(t, "get", "lines", "--addr", b); r.stdout != "one\ntwo\n" {
			t.Fatalf("multi-line value: %v", r)
		}
		// A value that is not UTF-8 comes back base64 in JSON.
		ok(t, "put", "bin", "\xff\x00\xfe", "--addr", a, "--w", "all")
		g := readJSON(t, "bin", "--addr", b)
		if g.Encoding != "base64" || len(g.Values) != 1 {
			t.Fatalf("binary value: %+v", g)
		}
		if v, err := base64.StdEncoding.DecodeString(g.Values[0]); err != nil || string(v) != "\xff\x00\xfe" {
			t.Fatalf("binary value decodes to %q, %v", v, err)
		}
		if r := ok(t, "get", "bin", "--addr", b); r.stdout != "\xff\x00\xfe\n" {
			t.Fatalf("binary text output: %v", r)
		}
	})

	t.Run("server errors", func(t *testing.T) {
		// Too large a key: the node's 413 becomes one line, exit 2.
		big := strings.Repeat("k", 5000)
		wantError(t, rumor(t, "put", big, "v", "--addr", a), exitError, "HTTP 413")
		wantError(t, rumor(t, "get", big, "--addr", a), exitError, "HTTP 413")
		// A context that is not one.
		wantError(t, rumor(t, "put", "k", "v", "--context", "not-a-context", "--addr", a), exitError, "HTTP 400")
		wantError(t, rumor(t, "del", "k", "--context", "!!", "--addr", a), exitError, "HTTP 400")
	})

	t.Run("help", func(t *testing.T) {
		for _, args := range [][]string{{}, {"--help"}, {"help"}, {"-h"}} {
			r := ok(t, args...)
			if !strings.Contains(r.stdout, "COMMANDS:") || !strings.Contains(r.stdout, "members") {
				t.Errorf("%q: %v", args, r)
			}
		}
		for _, args := range [][]string{{"get", "--help"}, {"get", "k", "--help"}, {"help", "get"}} {
			r := ok(t, args...)
			if !strings.Contains(r.stdout, "rumor get") || !strings.Contains(r.stdout, "--local") {
				t.Errorf("%q: %v", args, r)
			}
		}
	})
}
