package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rumorkv/rumor/node"
)

// rumor status prints a row per node with every field the issue lists,
// from GET /v1/cluster; -o json is that document; --node the contacted
// node's own counters.
func TestStatusTable(t *testing.T) {
	nodes := startCluster(t, 3)
	a := nodes[0].HTTPAddr()
	for _, k := range []string{"s1", "s2", "s3"} {
		ok(t, "put", k, "v", "--addr", a, "--w", "all")
	}
	var cs node.ClusterStatus
	eventually(t, 20*time.Second, func() error {
		cs = decode[node.ClusterStatus](t, ok(t, "status", "-o", "json", "--addr", a))
		if len(cs.Nodes) != 3 {
			return fmt.Errorf("%d rows", len(cs.Nodes))
		}
		for _, n := range cs.Nodes {
			if n.Error != "" || n.Keys != 3 || n.LastExchange == nil || n.AERangesInSync != n.AERangesTotal {
				return fmt.Errorf("row %+v", n)
			}
		}
		return nil
	})
	r := ok(t, "status", "--addr", a)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "3 nodes, N=3, ") || !strings.HasSuffix(lines[0], "answered by n1") {
		t.Fatalf("status text:\n%s", r.stdout)
	}
	header := strings.Fields(lines[1])
	for _, col := range []string{"NAME", "STATE", "STATUS", "ZONE", "OWNS", "KEYS", "HINTS", "AE", "IN", "SYNC", "LAST", "EXCHANGE", "REPAIRED"} {
		if !slices.Contains(header, col) {
			t.Errorf("header %q lacks %s", lines[1], col)
		}
	}
	for i, line := range lines[2:] {
		f := strings.Fields(line)
		// n1 alive member - 33.3% 3 0 12/12 1s ago 0 B (0 keys)
		if len(f) < 9 || f[0] != cs.Nodes[i].Name || f[1] != "alive" || f[2] != "member" || f[3] != "-" ||
			!strings.HasSuffix(f[4], "%") || f[5] != "3" || f[6] != "0" || !strings.Contains(f[7], "/") ||
			!strings.Contains(line, " ago") && !strings.Contains(line, "just now") || !strings.Contains(line, " keys)") {
			t.Errorf("row %q", line)
		}
	}

	// A node that is gone: its row says so, the others still report.
	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, func() error {
		r = ok(t, "status", "--addr", a)
		if !strings.Contains(r.stdout, "n3: could not be asked: ") {
			return fmt.Errorf("no error line for n3:\n%s", r.stdout)
		}
		return nil
	})
	for _, line := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(line); len(f) > 5 && f[0] == "n3" && f[5] != "?" {
			t.Errorf("n3 row after close: %q", line)
		}
	}

	// --node: the contacted node in detail, as before.
	st := decode[map[string]any](t, ok(t, "status", "--node", "-o", "json", "--addr", a))
	if st["name"] != "n1" || st["metrics"] == nil || st["antientropy"] == nil {
		t.Errorf("status --node: %v", st)
	}
	if r := ok(t, "status", "--node", "--addr", a); !strings.Contains(r.stdout, "metrics:\n") {
		t.Errorf("status --node text:\n%s", r.stdout)
	}
}

func TestAgo(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "just now"}, {1500 * time.Millisecond, "1s ago"}, {59 * time.Second, "59s ago"},
		{2 * time.Minute, "2m ago"}, {3 * time.Hour, "3h ago"}, {72 * time.Hour, "3d ago"},
	} {
		if got := ago(tc.d); got != tc.want {
			t.Errorf("ago(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

// The completion protocol answers commands and flags, and the bash script
// completes with them in a real bash (no bash-completion package needed).
// urfave/cli reads the words being completed from os.Args, so this runs a
// built binary.
func TestCompletion(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		if r := ok(t, "completion", sh); !strings.Contains(r.stdout, "rumor") || len(r.stdout) < 200 {
			t.Errorf("completion %s: %q", sh, r.stdout)
		}
	}
	fish := ok(t, "completion", "fish").stdout
	for _, want := range []string{"-a 'status'", "'__fish_seen_subcommand_from status' -l node", "'__fish_seen_subcommand_from get' -s r -r"} {
		if !strings.Contains(fish, want) {
			t.Errorf("fish completion lacks %q", want)
		}
	}
	wantError(t, rumor(t, "completion", "tcsh"), exitError, `unknown shell "tcsh"`)
	wantError(t, rumor(t, "completion"), exitError, "completion needs the SHELL")

	dir := t.TempDir()
	bin := filepath.Join(dir, "rumor")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	complete := func(args ...string) []string {
		out, err := exec.Command(bin, append(args, "--generate-bash-completion")...).Output()
		if err != nil {
			t.Fatalf("rumor %q --generate-bash-completion: %v", args, err)
		}
		return strings.Fields(string(out))
	}
	for _, cmd := range []string{"put", "get", "status", "completion", "agent"} {
		if got := complete(); !slices.Contains(got, cmd) {
			t.Errorf("commands completion lacks %s: %q", cmd, got)
		}
	}
	if got := complete("status", "--n"); !slices.Equal(got, []string{"--node"}) {
		t.Errorf("flag completion for status --n: %q", got)
	}
	if got := complete("get", "-"); !slices.Contains(got, "--local") || !slices.Contains(got, "--addr") {
		t.Errorf("flag completion for get -: %q", got)
	}

	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash: skipping the real-shell completion check")
	}
	script := `source <(rumor completion bash)
COMP_WORDS=(rumor st); COMP_CWORD=1; _rumor_complete; echo "1:${COMPREPLY[*]}"
COMP_WORDS=(rumor get --lo); COMP_CWORD=2; _rumor_complete; echo "2:${COMPREPLY[*]}"
`
	cmd := exec.Command(bash, "--norc", "-c", script)
	cmd.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	if got := string(out); !strings.Contains(got, "1:status\n") || !strings.Contains(got, "2:--local\n") {
		t.Errorf("bash completion:\n%s", got)
	}
}

// leave and remove answer -o json with one object (a fake node: the real
// flows are in leave_test.go).
func TestLeaveRemoveJSON(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/v1/leave":
			w.WriteHeader(http.StatusAccepted)
			fmt.Fprint(w, `{"status":"leaving"}`)
		case r.URL.Path == "/v1/status":
			fmt.Fprint(w, `{"transfer":{"state":"left"}}`)
		case r.Method == http.MethodPost && r.URL.Path == "/v1/remove/n9":
			fmt.Fprint(w, `{"removed":"n9"}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error":"no such endpoint"}`)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	if got := decode[map[string]string](t, ok(t, "leave", "-o", "json", "--addr", addr)); got["state"] != "left" || got["addr"] != srv.URL {
		t.Errorf("leave -o json: %v", got)
	}
	if got := decode[map[string]string](t, ok(t, "leave", "--no-wait", "-o", "json", "--addr", addr)); got["state"] != "leaving" {
		t.Errorf("leave --no-wait -o json: %v", got)
	}
	if r := ok(t, "leave", "--addr", addr); r.stdout != srv.URL+" is leaving\nleft\n" {
		t.Errorf("leave text: %q", r.stdout)
	}
	if got := decode[map[string]string](t, ok(t, "remove", "n9", "-o", "json", "--addr", addr)); got["removed"] != "n9" {
		t.Errorf("remove -o json: %v", got)
	}
	wantError(t, rumor(t, "remove", "n8", "-o", "json", "--addr", addr), exitError, "no such endpoint")
}
