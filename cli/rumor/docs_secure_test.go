package main

// Helpers for the tests that keep the secured deployments of the
// documentation honest: they run the guide's commands that make the
// secrets (gossip key, CA and certificates, tokens), put the files where
// the deployment expects them, and ask the real agent (--print-config)
// whether it would start.

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// secretsRun is what a marked block of commands made: its files in dir,
// its shell variables, and the Kubernetes Secrets it created (Secret name
// → key → file).
type secretsRun struct {
	dir     string
	vars    map[string]string
	secrets map[string]map[string]string
}

// file returns the path of a file the block made, failing the test if it
// made none of that name.
func (s *secretsRun) file(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(s.dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the guide's commands make no file %q (made: %v)", name, s.files())
	}
	return p
}

func (s *secretsRun) files() []string {
	es, _ := os.ReadDir(s.dir)
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// read returns the contents of a file the block made.
func (s *secretsRun) read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(s.file(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var (
	shellVarRe    = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)
	shellAssignRe = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)=(\S*)$`)
)

// runSecretsBlock runs the commands of the docs/operations.md block marked
// name in a new temporary directory, as a reader would on the admin
// machine: `NAME=value` sets a variable ($NAME and ${NAME} are expanded
// in the lines after it); `rumor …` runs the program, writing its stdout
// to the file after ">" or appending it to the one after ">>" (files are
// created 0600, as under the block's `umask 077`); `kubectl … create
// secret generic NAME --from-file=[KEY=]FILE …` records the Secret; `umask`
// and other kubectl commands are skipped. Anything else fails the test:
// the block must stay something this test follows exactly.
func runSecretsBlock(t *testing.T, name string) *secretsRun {
	t.Helper()
	lines := markedBlock(t, name)
	s := &secretsRun{dir: t.TempDir(), vars: map[string]string{}, secrets: map[string]map[string]string{}}
	// The rumor tls commands write to the current directory (--dir .):
	// run the block there, in a subtest, which restores it afterwards.
	ok := t.Run("block "+name, func(t *testing.T) {
		t.Chdir(s.dir)
		for _, l := range joinLines(lines) {
			l = shellVarRe.ReplaceAllStringFunc(l, func(v string) string {
				n := shellVarRe.FindStringSubmatch(v)[1]
				val, ok := s.vars[n]
				if !ok {
					t.Fatalf("%q uses $%s, which the block does not set", l, n)
				}
				return val
			})
			w, err := shellWords(l)
			if err != nil {
				t.Fatal(err)
			}
			if len(w) == 0 {
				continue
			}
			if m := shellAssignRe.FindStringSubmatch(strings.Join(w, " ")); len(w) == 1 && m != nil {
				s.vars[m[1]] = m[2]
				continue
			}
			switch w[0] {
			case "umask":
			case "rumor":
				s.runRumor(t, w[1:])
			case "kubectl":
				s.kubectl(t, w[1:])
			default:
				t.Fatalf("the block runs %q, which the test does not know how to follow", l)
			}
		}
	})
	if !ok {
		t.FailNow()
	}
	return s
}

// runRumor runs one `rumor` command line of a block, with its redirection.
func (s *secretsRun) runRumor(t *testing.T, args []string) {
	t.Helper()
	out, appendOut := "", false
	if n := len(args); n >= 2 && (args[n-2] == ">" || args[n-2] == ">>") {
		out, appendOut = args[n-1], args[n-2] == ">>"
		args = args[:n-2]
	}
	for _, a := range args {
		if strings.ContainsAny(a, "<>|;&") {
			t.Fatalf("rumor %q: only a final > or >> is followed", args)
		}
	}
	r := rumor(t, args...)
	if r.code != 0 {
		t.Fatalf("guide command failed: %v", r)
	}
	if out == "" {
		return
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if appendOut {
		flags = os.O_WRONLY | os.O_CREATE | os.O_APPEND
	}
	f, err := os.OpenFile(out, flags, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(r.stdout); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// kubectl records `create secret generic NAME --from-file=[KEY=]FILE…`;
// other kubectl commands change nothing the test looks at.
func (s *secretsRun) kubectl(t *testing.T, args []string) {
	t.Helper()
	if !strings.Contains(strings.Join(args, " "), "create secret generic ") {
		return
	}
	var rest []string
	for j, a := range args {
		if a == "generic" && j > 0 && args[j-1] == "secret" {
			rest = args[j+1:]
			break
		}
	}
	if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
		t.Fatalf("kubectl %q: no Secret name", args)
	}
	name, keys := rest[0], map[string]string{}
	for _, a := range rest[1:] {
		v, ok := strings.CutPrefix(a, "--from-file=")
		if !ok {
			continue
		}
		key, file, found := strings.Cut(v, "=")
		if !found {
			key, file = filepath.Base(v), v
		}
		keys[key] = s.file(t, file)
	}
	if len(keys) == 0 {
		t.Fatalf("kubectl %q: a Secret without --from-file", args)
	}
	s.secrets[name] = keys
}

// printConfigNote runs `rumor agent ARGS --print-config -o json` and
// returns its effective configuration, the sources, and what it printed
// on stderr (the "would not start" note).
func printConfigNote(t *testing.T, args ...string) (config map[string]any, sources map[string]string, stderr string) {
	t.Helper()
	r := rumor(t, append(append([]string{"agent"}, args...), "--print-config", "-o", "json")...)
	if r.code != 0 {
		t.Fatalf("the agent refuses the configuration: %v", r)
	}
	var printed struct {
		Config  map[string]any    `json:"config"`
		Sources map[string]string `json:"sources"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &printed); err != nil {
		t.Fatalf("--print-config -o json: %v: %q", err, r.stdout)
	}
	return printed.Config, printed.Sources, r.err
}

// wantSecure checks that --print-config with args would start the agent
// as configured (no note on stderr), with insecure operation not asked
// for; and, unless the gossip key is set otherwise than by the
// environment, that the same without RUMOR_GOSSIP_KEY would not (the check
// can fail). The caller sets RUMOR_GOSSIP_KEY.
func wantSecure(t *testing.T, where string, args ...string) map[string]any {
	t.Helper()
	if v := os.Getenv("RUMOR_INSECURE"); v != "" {
		t.Fatalf("RUMOR_INSECURE=%q: the test must clear it", v)
	}
	config, sources, note := printConfigNote(t, args...)
	if note != "" {
		t.Errorf("%s: the agent would not start as shipped (with the files the guide makes):\n%s", where, note)
	}
	if config["insecure"] != false {
		t.Errorf("%s: insecure = %v, want false", where, config["insecure"])
	}
	for _, k := range []string{"tls-ca", "tls-cert", "tls-key", "tokens-file"} {
		if config[k] == "" || sources[k] == "default" {
			t.Errorf("%s: %s not set (%v from %s)", where, k, config[k], sources[k])
		}
	}
	if sources["gossip-key"] == "env RUMOR_GOSSIP_KEY" {
		key := os.Getenv("RUMOR_GOSSIP_KEY")
		t.Setenv("RUMOR_GOSSIP_KEY", "")
		if _, _, note := printConfigNote(t, args...); !strings.Contains(note, "would not start") || !strings.Contains(note, "gossip without encryption") {
			t.Errorf("%s: without the gossip key, --print-config says %q; want a note that it would not start", where, note)
		}
		t.Setenv("RUMOR_GOSSIP_KEY", key)
	}
	return config
}

// certNames checks that the PEM certificate in path is valid for every
// host in hosts, as an HTTPS client checks it.
func certNames(t *testing.T, path string, hosts ...string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for _, h := range hosts {
		if err := cert.VerifyHostname(h); err != nil {
			t.Errorf("certificate %s does not name %s, which clients use: %v", filepath.Base(path), h, err)
		}
	}
}

// secureEnv clears the RUMOR_* settings of the machine's environment and
// the package's RUMOR_INSECURE, so that only what a test sets counts.
func secureEnv(t *testing.T) {
	t.Helper()
	clearEnv(t)
	t.Setenv("RUMOR_INSECURE", "")
}

// etcPath maps a deployment's /etc/rumor/… path to the file of that name
// the guide's commands made.
func etcPath(t *testing.T, s *secretsRun, where, p string) string {
	t.Helper()
	if !strings.HasPrefix(p, "/etc/rumor/") {
		t.Fatalf("%s: %s is not under /etc/rumor/", where, p)
	}
	base := filepath.Base(p)
	if _, err := os.Stat(filepath.Join(s.dir, base)); err != nil {
		t.Fatalf("%s names %s, but the guide's commands make no %s (they make %v)", where, p, base, s.files())
	}
	return filepath.Join(s.dir, base)
}

// TestDocsThreeMachines runs the secrets commands of docs/operations.md
// ("Three nodes on three machines") and checks that each of the guide's
// three agent commands, given those files where step 2 installs them and
// the gossip key in the environment as rumor.env puts it there, would
// start without --insecure; and that each node's certificate names the
// address clients use for it.
func TestDocsThreeMachines(t *testing.T) {
	secureEnv(t)
	bools := boolAgentFlags()
	block := markedBlock(t, "three-machines")
	if !strings.Contains(strings.Join(block, "\n"), ". /etc/rumor/rumor.env") {
		t.Error("the three-machines block does not read the gossip key from /etc/rumor/rumor.env")
	}
	s := runSecretsBlock(t, "secure-secrets")
	t.Setenv("RUMOR_GOSSIP_KEY", strings.TrimSpace(s.read(t, "gossip.key")))

	names := map[string]bool{}
	for _, w := range commands(t, block) {
		args := agentArgs(w)
		if args == nil {
			continue
		}
		flags, err := flagValues(args, bools)
		if err != nil {
			t.Fatalf("%q: %v", w, err)
		}
		var name string
		if len(flags["name"]) == 1 {
			name = flags["name"][0]
		}
		names[name] = true
		where := "agent " + name
		var run []string
		for f, vals := range flags {
			for _, v := range vals {
				switch {
				case f == "data":
					v = filepath.Join(t.TempDir(), "data")
				case strings.HasPrefix(v, "/etc/rumor/"):
					v = etcPath(t, s, where, v)
				}
				if bools[f] {
					run = append(run, "--"+f)
				} else {
					run = append(run, "--"+f, v)
				}
			}
		}
		config := wantSecure(t, where, run...)
		host := strings.Split(fmt.Sprint(config["http"]), ":")[0]
		certNames(t, fmt.Sprint(config["tls-cert"]), host)
	}
	if len(names) != 3 {
		t.Fatalf("want three agents with distinct names in the three-machines block, got %v", names)
	}
}
