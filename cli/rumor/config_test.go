package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite docs/configuration.md's generated sections (TestConfigDoc)")

// clearEnv unsets every RUMOR_* variable the agent reads, restoring them
// when the test ends, so that the machine's environment cannot change a
// test's result.
func clearEnv(t *testing.T) {
	t.Helper()
	names := []string{"RUMOR_CONFIG"}
	for _, f := range settingFlags() {
		if n := envName(f.Names()[0]); n != "RUMOR_INSECURE" { // TestMain's: see there
			names = append(names, n)
		}
	}
	for _, n := range names {
		t.Setenv(n, "") // registers the restore
		os.Unsetenv(n)
	}
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// printConfig runs `rumor agent --print-config -o json` with args and
// decodes its output.
func printConfig(t *testing.T, args ...string) printedConfig {
	t.Helper()
	r := ok(t, append([]string{"agent", "--print-config", "-o", "json"}, args...)...)
	var p printedConfig
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatalf("print-config JSON: %v\n%s", err, r.stdout)
	}
	return p
}

// TestConfigPrecedence gives some settings in a file, some of those again
// in the environment and some of those again as flags: flags win over the
// environment, which wins over the file, which wins over the defaults.
func TestConfigPrecedence(t *testing.T) {
	clearEnv(t)
	file := writeFile(t, "rumor.toml", `# a comment
name = "from-file"
data = "/var/lib/rumor"
bind = "10.0.0.1:7946"
join = ["10.0.0.2:7946", "10.0.0.3:7946"]
replicas = 5
w = 2
log-level = "warn"
no-sync = true
`)
	t.Setenv("RUMOR_BIND", "10.0.0.9:7946")
	t.Setenv("RUMOR_REPLICAS", "4")
	t.Setenv("RUMOR_ZONE", "rack-1")
	t.Setenv("RUMOR_JOIN", "seed-a:7946, seed-b:7946")
	t.Setenv("RUMOR_DATA", "") // empty: unset, the file's value stands
	p := printConfig(t, "--config", file, "--replicas", "2", "--r", "quorum")

	want := map[string]struct {
		v   any
		src string
	}{
		"name":       {"from-file", "file"},
		"data":       {"/var/lib/rumor", "file"},
		"bind":       {"10.0.0.9:7946", "env RUMOR_BIND"},
		"join":       {[]any{"seed-a:7946", "seed-b:7946"}, "env RUMOR_JOIN"},
		"replicas":   {float64(2), "flag"},
		"r":          {"quorum", "flag"},
		"w":          {"2", "file"},
		"zone":       {"rack-1", "env RUMOR_ZONE"},
		"log-level":  {"warn", "file"},
		"no-sync":    {true, "file"},
		"http":       {"127.0.0.1:7948", "default"},
		"log-format": {"text", "default"},
	}
	for k, w := range want {
		if got := p.Config[k]; !reflect.DeepEqual(got, w.v) {
			t.Errorf("%s = %#v, want %#v", k, got, w.v)
		}
		if got := p.Sources[k]; got != w.src {
			t.Errorf("source of %s = %q, want %q", k, got, w.src)
		}
	}
	if p.File != file {
		t.Errorf("config_file %q, want %q", p.File, file)
	}
	// Every visible setting is listed, with a source.
	for _, f := range settingFlags() {
		name := f.Names()[0]
		if isHidden(f) {
			if _, ok := p.Config[name]; ok {
				t.Errorf("hidden setting %s printed at its default", name)
			}
			continue
		}
		if _, ok := p.Config[name]; !ok || p.Sources[name] == "" {
			t.Errorf("setting %s missing from --print-config", name)
		}
	}

	// RUMOR_CONFIG names the file when --config does not.
	t.Setenv("RUMOR_CONFIG", file)
	p = printConfig(t)
	if p.Config["name"] != "from-file" || p.Sources["name"] != "file" || p.Config["replicas"] != float64(4) {
		t.Errorf("with RUMOR_CONFIG: %+v", p)
	}
	// --config wins over RUMOR_CONFIG.
	other := writeFile(t, "other.toml", "name = \"other\"\ndata = \"/d\"\n")
	if p = printConfig(t, "--config", other); p.Config["name"] != "other" {
		t.Errorf("--config did not win over RUMOR_CONFIG: %+v", p)
	}
}

// TestPrintConfigRoundTrip feeds the TOML that --print-config prints back
// to --config: the result is the same configuration, every value now from
// the file.
func TestPrintConfigRoundTrip(t *testing.T) {
	t.Setenv("RUMOR_INSECURE", "") // sources as a user would see them (TestMain sets it)
	clearEnv(t)
	t.Setenv("RUMOR_ZONE", `rack "7" \ east`)
	r := ok(t, "agent", "--print-config", "--name", "n1", "--data", "/tmp/x y", "--join", "a:1,b:2", "--join", "c:3",
		"--replicas", "5", "--w", "all", "--no-sync", "--vnodes", "64", "--log-format", "json", "--clock-offset", "-1.5s",
		"--advertise-http", "198.51.100.7:80")
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if !strings.HasPrefix(line, "#") && !strings.Contains(line, "  # ") {
			t.Errorf("line without a source comment: %q", line)
		}
	}
	if !strings.Contains(r.stdout, `zone = "rack \"7\" \\ east"`) || !strings.Contains(r.stdout, "# env RUMOR_ZONE") {
		t.Errorf("zone not printed as TOML with its source:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, `clock-offset = "-1.5s"`) {
		t.Errorf("a hidden setting away from its default is printed:\n%s", r.stdout)
	}
	before := printConfig(t, "--name", "n1", "--data", "/tmp/x y", "--join", "a:1,b:2", "--join", "c:3",
		"--replicas", "5", "--w", "all", "--no-sync", "--vnodes", "64", "--log-format", "json", "--clock-offset", "-1.5s",
		"--advertise-http", "198.51.100.7:80")
	file := writeFile(t, "printed.toml", r.stdout)
	os.Unsetenv("RUMOR_ZONE")
	after := printConfig(t, "--config", file)
	if !reflect.DeepEqual(before.Config, after.Config) {
		t.Errorf("round trip changed the configuration:\nbefore %v\nafter  %v", before.Config, after.Config)
	}
	for k, src := range after.Sources {
		if src != "file" {
			t.Errorf("after the round trip %s comes from %q, want file", k, src)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	file := func(text string) string {
		p := filepath.Join(dir, fmt.Sprintf("c%d.toml", len(text)))
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		text string
		want []string
	}{
		{"unknown key", "data = \"/d\"\n\nreplica = 3\n", []string{":3: unknown key \"replica\"", `did you mean "replicas"?`}},
		{"wrong type", "data = \"/d\"\nreplicas = \"three\"\n", []string{":2: key \"replicas\": want an integer, got string \"three\""}},
		{"string as int", "data = 1\n", []string{":1: key \"data\": want a string, got integer 1"}},
		{"bool", "in-memory = \"yes\"\n", []string{`:1: key "in-memory": want true or false, got string "yes"`}},
		{"join not an array", "data = \"/d\"\n join = \"10.0.0.1:7946\"\n", []string{`:2: key "join": want an array of strings`}},
		{"join element", "join = [\"a:1\", 2]\n", []string{`:1: key "join": element 1: want a string, got integer 2`}},
		{"bad duration", "data = \"/d\"\nclock-offset = \"5 minutes\"\n", []string{`:2: key "clock-offset": bad duration "5 minutes"`}},
		{"duration as int", "clock-offset = 5\n", []string{`:1: key "clock-offset": want a duration string`}},
		{"bad r", "data = \"/d\"\n\n\nr = \"most\"\n", []string{`:4: bad r "most": want 1, 2, …, quorum or all`}},
		{"bad log level", "log-level = \"loud\"\n", []string{`:1: bad log-level "loud": want debug, info, warn or error`}},
		{"table", "data = \"/d\"\n[agent]\nname = \"x\"\n", []string{`:2: unknown key "agent"`}},
		{"syntax", "data = \"/d\"\nname = \n", []string{":2: ", "config "}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := file(tc.text)
			wantError(t, rumor(t, "agent", "--config", p, "--print-config"), exitError, append(tc.want, "config "+p)...)
		})
	}
	t.Run("missing file", func(t *testing.T) {
		p := filepath.Join(dir, "nope.toml")
		wantError(t, rumor(t, "agent", "--config", p, "--print-config"), exitError, "read config: open "+p, "no such file")
		t.Setenv("RUMOR_CONFIG", p)
		wantError(t, rumor(t, "agent", "--print-config"), exitError, "open "+p, "(from RUMOR_CONFIG)")
	})
	t.Run("env", func(t *testing.T) {
		for _, tc := range []struct{ env, val, want string }{
			{"RUMOR_REPLICAS", "three", `bad RUMOR_REPLICAS "three": want an integer`},
			{"RUMOR_NO_SYNC", "maybe", `bad RUMOR_NO_SYNC "maybe": want true or false`},
			{"RUMOR_CLOCK_OFFSET", "soon", `bad RUMOR_CLOCK_OFFSET "soon": want a duration`},
			{"RUMOR_W", "0", `bad RUMOR_W "0": want 1, 2, …, quorum, all or primary`},
			{"RUMOR_LOG_FORMAT", "xml", `bad RUMOR_LOG_FORMAT "xml": want text or json`},
		} {
			t.Setenv(tc.env, tc.val)
			wantError(t, rumor(t, "agent", "--data", dir, "--print-config"), exitError, tc.want)
			os.Unsetenv(tc.env)
		}
	})
}

// TestPrintConfigNoSideEffects: --print-config validates like a real start
// but opens neither storage nor sockets.
func TestPrintConfigNoSideEffects(t *testing.T) {
	clearEnv(t)
	data := filepath.Join(t.TempDir(), "never-created")
	busy := freeAddr(t)
	r := ok(t, "agent", "--print-config", "--data", data, "--http", busy, "--bind", busy)
	if !strings.Contains(r.stdout, fmt.Sprintf("data = %q", data)) {
		t.Errorf("print-config output:\n%s", r.stdout)
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("--print-config created the data directory: %v", err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--name", "x"}, "--data is required (or --in-memory)"},
		{[]string{"--in-memory", "--r", "most"}, `bad --r "most"`},
		{[]string{"--in-memory", "--replicas", "0"}, "N must be ≥ 1"},
		{[]string{"--in-memory", "--bind", "nohost"}, "nohost"},
		{[]string{"--in-memory", "--advertise", "0.0.0.0:7946"}, "unspecified host"},
		{[]string{"--in-memory", "--advertise-rpc", "0.0.0.0:7947"}, "unspecified host"},
		{[]string{"--in-memory", "-o", "yaml"}, `unknown output format "yaml"`},
	} {
		wantError(t, rumor(t, append([]string{"agent", "--print-config"}, tc.args...)...), exitError, tc.want)
	}
}

// docSection returns the text of doc between <!-- BEGIN name --> and
// <!-- END name --> and the offsets of that text.
func docSection(t *testing.T, doc, name string) (string, int, int) {
	t.Helper()
	begin, end := "<!-- BEGIN "+name+" -->\n", "<!-- END "+name+" -->"
	i := strings.Index(doc, begin)
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		t.Fatalf("docs/configuration.md lacks the %q … %q markers", begin, end)
	}
	return doc[i+len(begin) : j], i + len(begin), j
}

// TestConfigDoc keeps docs/configuration.md in step with the flags: its
// settings table is generated from the flag definitions, and its example
// file must parse and yield the effective configuration printed below it.
// `go test ./cli/rumor -run TestConfigDoc -update-docs` regenerates both.
// realignPrinted aligns the source comments of --print-config's TOML
// again, after values in it were replaced by others of another length.
func realignPrinted(out string) string {
	lines := strings.SplitAfter(out, "\n")
	width := 0
	for _, l := range lines {
		if i := strings.LastIndex(l, "  # "); i > 0 && !strings.HasPrefix(l, "#") {
			width = max(width, len(strings.TrimRight(l[:i], " ")))
		}
	}
	var b strings.Builder
	for _, l := range lines {
		if i := strings.LastIndex(l, "  # "); i > 0 && !strings.HasPrefix(l, "#") {
			l = fmt.Sprintf("%-*s  # %s", width, strings.TrimRight(l[:i], " "), l[i+4:])
		}
		b.WriteString(l)
	}
	return b.String()
}

func TestConfigDoc(t *testing.T) {
	t.Setenv("RUMOR_INSECURE", "") // sources as a user would see them (TestMain sets it)
	clearEnv(t)
	const path = "../../docs/configuration.md"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	regen := "run `go test ./cli/rumor -run TestConfigDoc -update-docs` to regenerate it"

	table, i, j := docSection(t, doc, "config-table")
	if want := configTable(); table != want {
		if !*updateDocs {
			t.Errorf("docs/configuration.md's settings table is out of date with the agent's flags: %s.\nhave:\n%s\nwant:\n%s", regen, table, want)
		}
		doc = doc[:i] + want + doc[j:]
	}
	if r := ok(t, "agent", "--config-table"); r.stdout != configTable() {
		t.Errorf("--config-table prints %q, want the table", r.stdout)
	}

	example, _, _ := docSection(t, doc, "config-example")
	body, ok1 := strings.CutPrefix(example, "```toml\n")
	body, ok2 := strings.CutSuffix(body, "```\n")
	if !ok1 || !ok2 {
		t.Fatalf("the config-example section is not one ```toml block: %q", example)
	}
	// The example is a secured node: its /etc/rumor files are made here
	// (print-config loads the TLS files and the tokens), and the gossip key
	// is in the environment, as the systemd unit's EnvironmentFile puts it.
	etc := t.TempDir()
	ok(t, "tls", "ca", "--dir", filepath.Join(etc, "tls"))
	ok(t, "tls", "cert", "--node", "n1", "--ip", "10.0.0.1", "--dir", filepath.Join(etc, "tls"))
	tokens := ok(t, "token", "generate", "--name", "admin", "--scope", "read-write").stdout
	if err := os.WriteFile(filepath.Join(etc, "tokens.toml"), []byte(tokens), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RUMOR_GOSSIP_KEY", strings.TrimSpace(ok(t, "keyring", "generate").stdout))
	file := writeFile(t, "rumor.toml", strings.ReplaceAll(body, "/etc/rumor/", etc+"/"))
	r := ok(t, "agent", "--print-config", "--config", file)
	if r.err != "" {
		t.Errorf("the example would not start (or the agent says more):\n%s", r.err)
	}
	out := strings.Replace(r.stdout, "# Configuration file: "+file, "# Configuration file: /etc/rumor/rumor.toml", 1)
	out = realignPrinted(strings.ReplaceAll(out, etc+"/", "/etc/rumor/"))
	want := "```toml\n" + out + "```\n"
	printed, i, j := docSection(t, doc, "config-example-printed")
	if printed != want {
		if !*updateDocs {
			t.Errorf("docs/configuration.md's example does not yield the configuration documented below it: %s.\nhave:\n%s\nwant:\n%s", regen, printed, want)
		}
		doc = doc[:i] + want + doc[j:]
	}
	// Every key of the example comes from the file.
	for _, line := range strings.Split(body, "\n") {
		k, _, found := strings.Cut(line, "=")
		if k = strings.TrimSpace(k); !found || strings.HasPrefix(k, "#") {
			continue
		}
		if !strings.Contains(out, "\n"+k+" = ") {
			t.Errorf("example key %q not in the printed configuration", k)
		}
	}
	if !strings.Contains(out, "# file") {
		t.Errorf("no value from the example file:\n%s", out)
	}
	if *updateDocs && doc != string(b) {
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Log("rewrote " + path)
	}
}

// TestEveryFlagHasEnv: every agent setting has a RUMOR_* variable named
// after it, and the help shows it.
func TestEveryFlagHasEnv(t *testing.T) {
	seen := map[string]string{}
	for _, f := range agentFlags() {
		name := f.Names()[0]
		d := f.(cli.DocGenerationFlag)
		env := envName(name)
		switch name {
		case flagPrintConfig, flagOutput, flagConfigTable:
			continue
		case flagConfig:
			env = "RUMOR_CONFIG"
		}
		if !strings.HasSuffix(d.GetUsage(), "[$"+env+"]") {
			t.Errorf("--%s help does not name %s: %q", name, env, d.GetUsage())
		}
		if len(d.GetEnvVars()) != 0 {
			t.Errorf("--%s has EnvVars %v: urfave/cli would read them and hide the source", name, d.GetEnvVars())
		}
		if o, dup := seen[env]; dup {
			t.Errorf("%s and %s share %s", o, name, env)
		}
		seen[env] = name
	}
	for _, global := range []string{"RUMOR_ADDR", "RUMOR_TOKEN", "RUMOR_CACERT"} {
		if n, ok := seen[global]; ok {
			t.Errorf("agent setting %s takes the client's %s", n, global)
		}
	}
}
