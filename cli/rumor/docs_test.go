package main

// Tests that keep the documentation honest: the deployment files and every
// `rumor agent` command in the docs use only real flags of the agent, and
// the "three agents on one machine" commands of docs/operations.md, run as
// written (on free ports and temporary directories), form a cluster.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"
)

const docsDir = "../../docs"

// agentFlagNames returns every name (and alias) of the agent command's
// flags, as newApp defines them.
func agentFlagNames(t *testing.T) map[string]bool {
	t.Helper()
	cmd := findCommand(newApp(io.Discard, io.Discard), "agent")
	if cmd == nil {
		t.Fatal("no agent command")
	}
	names := map[string]bool{}
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			names[n] = true
		}
	}
	if !names["bind"] || !names["join"] {
		t.Fatalf("agent flags look wrong: %v", names)
	}
	return names
}

// agentArgs returns the arguments after "agent" in a command line (nil if
// there is none), with a leading program path and a trailing "&" removed.
func agentArgs(words []string) []string {
	i := slices.Index(words, "agent")
	if i < 0 || i == 0 || filepath.Base(words[i-1]) != "rumor" {
		return nil
	}
	out := slices.Clone(words[i+1:])
	if n := len(out); n > 0 && out[n-1] == "&" {
		out = out[:n-1]
	}
	return out
}

// flagValues parses agent arguments into flag → values ("--a=b", "--a b",
// "-a b"; a boolean flag has the value ""). A token that is not a flag is
// an error: the agent takes no positional arguments.
func flagValues(args []string, boolFlags map[string]bool) (map[string][]string, error) {
	out := map[string][]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
			return nil, fmt.Errorf("positional argument %q", a)
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch {
		case hasVal:
		case boolFlags[name]:
			val = ""
		case i+1 < len(args):
			i++
			val = args[i]
		default:
			return nil, fmt.Errorf("flag --%s without a value", name)
		}
		out[name] = append(out[name], val)
	}
	return out, nil
}

// boolAgentFlags are the agent's boolean flags (they take no separate
// value).
func boolAgentFlags() map[string]bool {
	out := map[string]bool{}
	for _, f := range findCommand(newApp(io.Discard, io.Discard), "agent").Flags {
		if _, ok := f.(*cli.BoolFlag); ok {
			for _, n := range f.Names() {
				out[n] = true
			}
		}
	}
	return out
}

// checkFlags reports every flag in flags that the agent does not have.
func checkFlags(t *testing.T, where string, flags map[string][]string, known map[string]bool) {
	t.Helper()
	if len(flags) == 0 {
		t.Errorf("%s: no agent flags found", where)
	}
	for name := range flags {
		if !known[name] {
			t.Errorf("%s: --%s is not a flag of `rumor agent`", where, name)
		}
	}
}

// yamlDocs decodes every document of a multi-document YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
	return docs
}

// dig walks a decoded YAML document along keys (map keys, or list indices
// given as ints).
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func strs(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

// TestDocsKubernetes checks docs/deploy/kubernetes.yaml: it parses, runs
// `rumor agent` with real flags only, and is consistent with itself (the
// seeds are the pods' names in the headless service that publishes
// not-ready addresses, on the gossip port the agent binds; the ports the
// agent uses are the ones declared; the data directory is the volume). It
// is secure as shipped: with the Secrets docs/operations.md makes, the
// agent would start without --insecure, and the certificate names the
// addresses clients use.
func TestDocsKubernetes(t *testing.T) {
	secureEnv(t)
	docs := yamlDocs(t, filepath.Join(docsDir, "deploy", "kubernetes.yaml"))
	known, bools := agentFlagNames(t), boolAgentFlags()
	byKind := map[string][]map[string]any{}
	for _, d := range docs {
		k := fmt.Sprint(d["kind"])
		byKind[k] = append(byKind[k], d)
	}
	if len(byKind["StatefulSet"]) != 1 {
		t.Fatalf("want one StatefulSet, got kinds %v", byKind)
	}
	sts := byKind["StatefulSet"][0]
	svcName := fmt.Sprint(dig(sts, "spec", "serviceName"))
	var headless map[string]any
	for _, s := range byKind["Service"] {
		if dig(s, "metadata", "name") == svcName {
			headless = s
		}
	}
	if headless == nil {
		t.Fatalf("no Service named %q (the StatefulSet's serviceName)", svcName)
	}
	if dig(headless, "spec", "clusterIP") != "None" || dig(headless, "spec", "publishNotReadyAddresses") != true {
		t.Errorf("service %s must be headless (clusterIP: None) and publish not-ready addresses", svcName)
	}

	c := dig(sts, "spec", "template", "spec", "containers", 0)
	words := append(strs(dig(c, "command")), strs(dig(c, "args"))...)
	args := agentArgs(words)
	if args == nil {
		t.Fatalf("the container does not run `rumor agent`: %q", words)
	}
	flags, err := flagValues(args, bools)
	if err != nil {
		t.Fatalf("container args: %v", err)
	}
	checkFlags(t, "kubernetes.yaml", flags, known)

	one := func(name string) string {
		t.Helper()
		if len(flags[name]) != 1 {
			t.Fatalf("kubernetes.yaml: want one --%s, got %q", name, flags[name])
		}
		return flags[name][0]
	}
	_, gossipPort, err := net.SplitHostPort(one("bind"))
	if err != nil {
		t.Fatal(err)
	}
	_, httpPort, err := net.SplitHostPort(one("http"))
	if err != nil {
		t.Fatal(err)
	}
	if adv := one("advertise"); adv != "$(POD_IP):"+gossipPort {
		t.Errorf("--advertise %s, want $(POD_IP):%s", adv, gossipPort)
	}
	// Every seed is a pod of the StatefulSet in the headless service.
	replicas := fmt.Sprint(dig(sts, "spec", "replicas"))
	seeds := strings.Split(one("join"), ",")
	if fmt.Sprint(len(seeds)) != replicas {
		t.Errorf("%d seeds for %s replicas", len(seeds), replicas)
	}
	stsName := fmt.Sprint(dig(sts, "metadata", "name"))
	for i, s := range seeds {
		want := fmt.Sprintf("%s-%d.%s.$(POD_NAMESPACE).svc.cluster.local:%s", stsName, i, svcName, gossipPort)
		if s != want {
			t.Errorf("seed %d is %q, want %q", i, s, want)
		}
	}
	// The env variables the args use come from the downward API; the
	// gossip key from a Secret.
	env, values := map[string]string{}, map[string]string{}
	secretEnv := map[string][2]string{} // variable → Secret, key
	for i := 0; dig(c, "env", i) != nil; i++ {
		name := fmt.Sprint(dig(c, "env", i, "name"))
		env[name] = fmt.Sprint(dig(c, "env", i, "valueFrom", "fieldRef", "fieldPath"))
		if v, ok := dig(c, "env", i, "value").(string); ok {
			values[name] = v
		}
		if ref := dig(c, "env", i, "valueFrom", "secretKeyRef"); ref != nil {
			secretEnv[name] = [2]string{fmt.Sprint(dig(ref, "name")), fmt.Sprint(dig(ref, "key"))}
		}
	}
	for v, field := range map[string]string{"POD_NAME": "metadata.name", "POD_IP": "status.podIP", "POD_NAMESPACE": "metadata.namespace"} {
		if env[v] != field {
			t.Errorf("env %s from %q, want the downward API's %s", v, env[v], field)
		}
	}
	if _, ok := secretEnv["RUMOR_GOSSIP_KEY"]; !ok {
		t.Error("RUMOR_GOSSIP_KEY does not come from a Secret (secretKeyRef)")
	}
	// Declared ports: gossip TCP and UDP, RPC (gossip + 1), HTTP.
	ports := map[string]bool{}
	for i := 0; dig(c, "ports", i) != nil; i++ {
		ports[fmt.Sprintf("%v/%v", dig(c, "ports", i, "containerPort"), dig(c, "ports", i, "protocol"))] = true
	}
	var gp int
	fmt.Sscan(gossipPort, &gp)
	for _, p := range []string{gossipPort + "/TCP", gossipPort + "/UDP", fmt.Sprintf("%d/TCP", gp+1), httpPort + "/TCP"} {
		if !ports[p] {
			t.Errorf("container port %s not declared (have %v)", p, ports)
		}
	}
	if p, sch := dig(c, "readinessProbe", "httpGet", "path"), dig(c, "readinessProbe", "httpGet", "scheme"); p != "/v1/health" || sch != "HTTPS" {
		t.Errorf("readiness probe %v %v, want /v1/health over HTTPS (the only path open without a token)", sch, p)
	}
	if dig(c, "livenessProbe") == nil || dig(c, "livenessProbe", "httpGet", "path") == "/v1/health" {
		t.Errorf("want a liveness probe that is not /v1/health (503 on a full disk is no reason to restart)")
	}
	// The data directory is the volume claimed per pod.
	claim := fmt.Sprint(dig(sts, "spec", "volumeClaimTemplates", 0, "metadata", "name"))
	mounted := false
	for i := 0; dig(c, "volumeMounts", i) != nil; i++ {
		if dig(c, "volumeMounts", i, "name") == claim && dig(c, "volumeMounts", i, "mountPath") == one("data") {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("--data %s is not the mount of the volume claim %q", one("data"), claim)
	}
	// Annotation-based scraping cannot send a token or trust the CA: it
	// would only collect 401s. docs/operations.md has a ServiceMonitor.
	if a := dig(sts, "spec", "template", "metadata", "annotations", "prometheus.io/scrape"); a != nil {
		t.Errorf("prometheus.io/scrape: %v on the pods: /metrics needs HTTPS and a token, which annotations cannot carry", a)
	}

	// The Secrets docs/operations.md makes, mounted where the manifest says.
	s := runSecretsBlock(t, "k8s-secrets")
	volumes := map[string]string{} // volume → Secret
	for i := 0; dig(sts, "spec", "template", "spec", "volumes", i) != nil; i++ {
		v := dig(sts, "spec", "template", "spec", "volumes", i)
		sec := dig(v, "secret", "secretName")
		if sec == nil {
			continue
		}
		volumes[fmt.Sprint(dig(v, "name"))] = fmt.Sprint(sec)
		if m := dig(v, "secret", "defaultMode"); m != 0o400 {
			t.Errorf("Secret volume %v: defaultMode %v, want 0400 (256)", dig(v, "name"), m)
		}
	}
	mounts := map[string]string{} // mount path → Secret
	for i := 0; dig(c, "volumeMounts", i) != nil; i++ {
		if sec, ok := volumes[fmt.Sprint(dig(c, "volumeMounts", i, "name"))]; ok {
			mounts[fmt.Sprint(dig(c, "volumeMounts", i, "mountPath"))] = sec
		}
	}
	secretFile := func(where, path string) string {
		t.Helper()
		for dir, sec := range mounts {
			if key, ok := strings.CutPrefix(path, dir+"/"); ok {
				keys, made := s.secrets[sec]
				if !made {
					t.Fatalf("%s: %s is in Secret %s, which docs/operations.md does not create", where, path, sec)
				}
				f, ok := keys[key]
				if !ok {
					t.Fatalf("%s: %s is key %s of Secret %s, which docs/operations.md creates without it (keys %v)", where, path, key, sec, keys)
				}
				return f
			}
		}
		t.Fatalf("%s: %s is not in a mounted Secret (mounts %v)", where, path, mounts)
		return ""
	}
	for name, ref := range secretEnv {
		f, ok := s.secrets[ref[0]][ref[1]]
		if !ok {
			t.Fatalf("env %s: key %s of Secret %s, which docs/operations.md does not create", name, ref[1], ref[0])
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv(name, string(b)) // as the kubelet does: the bytes as they are
	}

	// The agent accepts the arguments as the kubelet expands them, with
	// the Secrets' files, and would start: secure as shipped.
	ns := s.vars["NS"]
	if ns == "" {
		t.Fatal("the k8s-secrets block sets no NS (the namespace)")
	}
	expand := strings.NewReplacer("$(POD_NAME)", "rumor-0", "$(POD_IP)", "10.1.2.3", "$(POD_NAMESPACE)", ns)
	var expanded []string
	for _, a := range args {
		a = expand.Replace(a)
		if name, val, ok := strings.Cut(a, "="); ok && strings.HasPrefix(val, "/etc/rumor/") {
			a = name + "=" + secretFile(name, val)
		}
		expanded = append(expanded, a)
	}
	config := wantSecure(t, "kubernetes.yaml", expanded...)
	if config["advertise"] != "10.1.2.3:7946" || config["name"] != "rumor-0" {
		t.Errorf("effective configuration %v", config)
	}
	// HTTPS clients reach a pod at its advertised client address (rumor
	// ring follows it) and, inside the pod, at RUMOR_ADDR with the CA in
	// RUMOR_CACERT: the one certificate must name both, and the Service
	// name a ServiceMonitor checks (serverName: rumor-client).
	adv := strings.TrimPrefix(fmt.Sprint(config["advertise-http"]), "https://")
	advHost, _, err := net.SplitHostPort(adv)
	if err != nil {
		t.Fatalf("advertise-http %q: %v", adv, err)
	}
	local, _, err := net.SplitHostPort(strings.TrimPrefix(values["RUMOR_ADDR"], "https://"))
	if err != nil || !strings.HasPrefix(values["RUMOR_ADDR"], "https://") {
		t.Fatalf("RUMOR_ADDR=%q, want https://HOST:PORT", values["RUMOR_ADDR"])
	}
	certNames(t, fmt.Sprint(config["tls-cert"]), advHost, local, "rumor-client")
	if got := secretFile("RUMOR_CACERT", values["RUMOR_CACERT"]); got != config["tls-ca"] {
		t.Errorf("RUMOR_CACERT is %s, want the CA of --tls-ca (%s)", got, config["tls-ca"])
	}
}

// unitDirectives reads a systemd unit: directive → values, with
// backslash continuations joined.
func unitDirectives(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	var cur string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur == "" && (line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") || strings.HasPrefix(line, "[")) {
			continue
		}
		cont := strings.HasSuffix(line, "\\")
		cur += strings.TrimSuffix(line, "\\") + " "
		if cont {
			continue
		}
		k, v, ok := strings.Cut(cur, "=")
		if !ok {
			t.Fatalf("%s: not a directive: %q", path, cur)
		}
		out[strings.TrimSpace(k)] = append(out[strings.TrimSpace(k)], strings.TrimSpace(v))
		cur = ""
	}
	return out
}

// tomlKeys returns the top-level keys of a flat TOML file (key = value
// lines, comments), and the string value of each simple string key.
func tomlKeys(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	keyRe := regexp.MustCompile(`^([A-Za-z0-9_-]+)\s*=\s*(.*)$`)
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := keyRe.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("%s: unexpected line %q (sections are not used for the agent)", path, line)
		}
		out[m[1]] = strings.Trim(m[2], `"`)
	}
	return out
}

// TestDocsSystemd checks docs/deploy/rumor.service and the configuration
// file it reads: real agent flags and keys, the data directory in the
// unit's state directory, the settings the guide promises; and that the
// agent would start with them as shipped (no --insecure), given the files
// the guide's secrets commands make and the gossip key from the unit's
// EnvironmentFile.
func TestDocsSystemd(t *testing.T) {
	secureEnv(t)
	known, bools := agentFlagNames(t), boolAgentFlags()
	unit := unitDirectives(t, filepath.Join(docsDir, "deploy", "rumor.service"))
	if len(unit["ExecStart"]) != 1 {
		t.Fatalf("want one ExecStart, got %q", unit["ExecStart"])
	}
	args := agentArgs(strings.Fields(unit["ExecStart"][0]))
	if args == nil {
		t.Fatalf("ExecStart does not run `rumor agent`: %q", unit["ExecStart"][0])
	}
	flags, err := flagValues(args, bools)
	if err != nil {
		t.Fatalf("ExecStart: %v", err)
	}
	checkFlags(t, "rumor.service", flags, known)
	if got := flags["config"]; len(got) != 1 || got[0] != "/etc/rumor/rumor.toml" {
		t.Errorf("ExecStart --config %q, want /etc/rumor/rumor.toml", got)
	}
	for k, want := range map[string]string{
		"User": "rumor", "StateDirectory": "rumor", "Restart": "on-failure", "KillSignal": "SIGTERM",
	} {
		if got := unit[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%q, want %s", k, got, want)
		}
	}
	if len(unit["LimitNOFILE"]) != 1 {
		t.Error("no LimitNOFILE")
	}
	// The gossip key comes from a root-only file systemd reads, not from
	// the world-readable configuration file; reload is SIGHUP (TLS files).
	if got := unit["EnvironmentFile"]; len(got) != 1 || got[0] != "/etc/rumor/rumor.env" {
		t.Errorf("EnvironmentFile=%q, want /etc/rumor/rumor.env (the gossip key)", got)
	}
	if got := unit["ExecReload"]; len(got) != 1 || !strings.Contains(got[0], "kill -HUP $MAINPID") {
		t.Errorf("ExecReload=%q, want kill -HUP $MAINPID (reloads the TLS files)", got)
	}

	conf := tomlKeys(t, filepath.Join(docsDir, "deploy", "rumor.toml"))
	for k := range conf {
		if !known[k] {
			t.Errorf("rumor.toml: key %q is not a flag of `rumor agent`", k)
		}
	}
	if want := "/var/lib/" + unit["StateDirectory"][0]; conf["data"] != want {
		t.Errorf("rumor.toml data = %q, want the unit's state directory %s", conf["data"], want)
	}
	if _, ok := conf["gossip-key"]; ok {
		t.Error("rumor.toml holds the gossip key: it belongs in the EnvironmentFile (mode 0600)")
	}

	// The agent reads the file: every key parses, with the right type,
	// and it would start as configured. The files it names are the ones
	// the guide makes (moved to a temporary directory, as is the data
	// directory); the gossip key is what rumor.env holds.
	raw, err := os.ReadFile(filepath.Join(docsDir, "deploy", "rumor.toml"))
	if err != nil {
		t.Fatal(err)
	}
	s := runSecretsBlock(t, "secure-secrets")
	t.Setenv("RUMOR_GOSSIP_KEY", strings.TrimSpace(s.read(t, "gossip.key")))
	text := string(raw)
	for k, v := range conf {
		switch {
		case k == "data":
			text = strings.ReplaceAll(text, strconv.Quote(v), strconv.Quote(filepath.Join(t.TempDir(), "data")))
		case strings.HasPrefix(v, "/etc/rumor/"):
			text = strings.ReplaceAll(text, strconv.Quote(v), strconv.Quote(etcPath(t, s, "rumor.toml "+k, v)))
		}
	}
	path := filepath.Join(t.TempDir(), "rumor.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	config := wantSecure(t, "rumor.toml", "--config", path)
	_, sources, _ := printConfigNote(t, "--config", path)
	for k := range conf {
		if src := sources[k]; src != "file" {
			t.Errorf("key %s: source %q, want the file", k, src)
		}
	}
	certNames(t, fmt.Sprint(config["tls-cert"]), strings.Split(conf["http"], ":")[0])
}

// fencedBlocks returns the fenced code blocks of a Markdown file, each with
// the nearest preceding HTML comment (a marker) if only blank lines
// separate them.
type fencedBlock struct {
	marker string
	lines  []string
}

func fencedBlocks(t *testing.T, path string) []fencedBlock {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []fencedBlock
	marker := ""
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		switch {
		case strings.HasPrefix(l, "<!--"):
			marker = l
		case strings.HasPrefix(l, "```"):
			blk := fencedBlock{marker: marker}
			for i++; i < len(lines) && !strings.HasPrefix(strings.TrimSpace(lines[i]), "```"); i++ {
				blk.lines = append(blk.lines, lines[i])
			}
			out = append(out, blk)
			marker = ""
		case l != "":
			marker = ""
		}
	}
	return out
}

// shellWords splits a command line like a shell would for the docs'
// commands: whitespace, single and double quotes, backslash line
// continuations already joined, "#" starting a comment.
func shellWords(line string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == '#' && !inWord:
			return out, nil
		case r == ' ' || r == '\t':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated quote in %q", line)
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}

// joinLines returns the lines of a code block with backslash
// continuations joined.
func joinLines(lines []string) []string {
	var out []string
	cur := ""
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if strings.HasSuffix(l, "\\") {
			cur += strings.TrimSuffix(l, "\\") + " "
			continue
		}
		out = append(out, cur+l)
		cur = ""
	}
	return out
}

// commands returns the command lines of a code block split into words
// (empty and comment-only lines left out).
func commands(t *testing.T, lines []string) [][]string {
	t.Helper()
	var out [][]string
	for _, l := range joinLines(lines) {
		w, err := shellWords(l)
		if err != nil {
			t.Fatal(err)
		}
		if len(w) > 0 {
			out = append(out, w)
		}
	}
	return out
}

// TestDocsAgentCommands checks every `rumor agent` command in the
// documentation's code blocks for flags the agent does not have.
func TestDocsAgentCommands(t *testing.T) {
	known, bools := agentFlagNames(t), boolAgentFlags()
	files, err := filepath.Glob(filepath.Join(docsDir, "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../README.md")
	seen := 0
	for _, f := range files {
		for _, b := range fencedBlocks(t, f) {
			for _, l := range joinLines(b.lines) {
				// Code blocks also hold diagrams and output: look only
				// at lines that run the agent.
				if !strings.Contains(l, "rumor agent") {
					continue
				}
				w, err := shellWords(l)
				if err != nil {
					t.Errorf("%s: %v", f, err)
					continue
				}
				args := agentArgs(w)
				if args == nil {
					continue
				}
				// "…" stands for the rest of a command in prose-like
				// examples; a value ending in "…" is not checked further.
				if i := slices.IndexFunc(args, func(s string) bool { return strings.Contains(s, "…") }); i >= 0 {
					args = args[:i]
				}
				flags, err := flagValues(args, bools)
				if err != nil {
					t.Errorf("%s: %q: %v", f, strings.Join(w, " "), err)
					continue
				}
				checkFlags(t, fmt.Sprintf("%s: %q", filepath.Base(f), strings.Join(w, " ")), flags, known)
				seen++
			}
		}
	}
	if seen < 6 {
		t.Errorf("found only %d `rumor agent` commands in the docs; the scan is broken", seen)
	}
}

// markedBlock returns the code block of docs/operations.md marked with
// "<!-- test: NAME ".
func markedBlock(t *testing.T, name string) []string {
	t.Helper()
	var found []fencedBlock
	for _, b := range fencedBlocks(t, filepath.Join(docsDir, "operations.md")) {
		if strings.HasPrefix(b.marker, "<!-- test: "+name+" ") || b.marker == "<!-- test: "+name+" -->" {
			found = append(found, b)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one code block marked %q in docs/operations.md, found %d", name, len(found))
	}
	return found[0].lines
}

// TestDocsThreeAgents runs the "three agents on one machine" commands of
// docs/operations.md as written, with their addresses moved to free ports
// and their data directories to temporary ones, checks that the three form
// a cluster, and runs the commands the guide gives to try it. The block's
// --insecure does what it must: the package's TestMain default is cleared.
func TestDocsThreeAgents(t *testing.T) {
	t.Setenv("RUMOR_INSECURE", "")
	bools := boolAgentFlags()
	var agents [][]string
	for _, w := range commands(t, markedBlock(t, "three-agents")) {
		if args := agentArgs(w); args != nil {
			agents = append(agents, args)
		}
	}
	if len(agents) != 3 {
		t.Fatalf("want three `rumor agent` lines in the marked block, got %d", len(agents))
	}

	// Every doc address gets a free one: a gossip address whose next port
	// (the default RPC port) is free too, HTTP addresses anywhere.
	addr := map[string]string{}
	var parsed []map[string][]string
	for i, a := range agents {
		f, err := flagValues(a, bools)
		if err != nil {
			t.Fatalf("agent %d: %v", i+1, err)
		}
		for _, need := range []string{"name", "data", "bind", "http"} {
			if len(f[need]) != 1 {
				t.Fatalf("agent %d: the guide's command must set --%s once (two agents on one machine would collide on the default): %q", i+1, need, a)
			}
		}
		bind, _ := freePair(t)
		addr[f["bind"][0]] = bind
		addr[f["http"][0]] = closedAddr(t)
		if len(f["rpc"]) == 1 {
			addr[f["rpc"][0]] = closedAddr(t)
		}
		parsed = append(parsed, f)
	}
	mapAddr := func(s string) string {
		t.Helper()
		m, ok := addr[s]
		if !ok {
			t.Fatalf("the guide uses %s, which is no agent's --bind, --rpc or --http in the block", s)
		}
		return m
	}
	root := t.TempDir()
	var https []string
	var started []*agent
	for i, f := range parsed {
		var args []string
		for name, vals := range f {
			for _, v := range vals {
				switch name {
				case "bind", "http", "rpc":
					v = mapAddr(v)
				case "join":
					var seeds []string
					for _, s := range strings.Split(v, ",") {
						seeds = append(seeds, mapAddr(strings.TrimSpace(s)))
					}
					v = strings.Join(seeds, ",")
				case "data":
					v = filepath.Join(root, strings.TrimPrefix(filepath.Clean(v), "/"))
				}
				if bools[name] {
					args = append(args, "--"+name)
				} else {
					args = append(args, "--"+name, v)
				}
			}
		}
		a := startAgent(t, args...)
		https = append(https, mapAddr(f["http"][0]))
		a.waitHealthy(t, https[i])
		started = append(started, a)
	}

	// The cluster forms: every agent sees three alive members.
	for _, h := range https {
		waitMembers(t, h, 3)
	}

	// The commands the guide gives to try it, on the moved addresses. The
	// CLI's default address must be one of the agents'.
	defaultAddr := mapAddr("127.0.0.1:7948")
	puts := map[string]string{}
	checks := commands(t, markedBlock(t, "three-agents-check"))
	if len(checks) == 0 {
		t.Fatal("the three-agents-check block has no commands")
	}
	for _, w := range checks {
		if len(w) < 2 || filepath.Base(w[0]) != "rumor" {
			t.Fatalf("unexpected command in the check block: %q", w)
		}
		args := slices.Clone(w[1:])
		hasAddr := false
		for i := range args {
			if i > 0 && args[i-1] == "--addr" {
				args[i], hasAddr = mapAddr(args[i]), true
			}
		}
		if !hasAddr {
			args = append([]string{"--addr", defaultAddr}, args...)
		}
		r := rumor(t, args...)
		if r.code != 0 {
			t.Fatalf("guide command %q failed: %v", strings.Join(w, " "), r)
		}
		pos := slices.DeleteFunc(slices.Clone(args), func(s string) bool { return strings.HasPrefix(s, "-") })
		pos = slices.DeleteFunc(pos, func(s string) bool { return slices.Contains(https, s) })
		switch {
		case len(pos) == 3 && pos[0] == "put":
			puts[pos[1]] = pos[2]
		case len(pos) == 2 && pos[0] == "get" && puts[pos[1]] != "":
			if want := puts[pos[1]] + "\n"; r.stdout != want {
				t.Errorf("guide command %q printed %q, want %q", strings.Join(w, " "), r.stdout, want)
			}
		}
	}
	if len(puts) == 0 {
		t.Error("the check block writes nothing")
	}

	// A write on one agent is read on every other.
	ok(t, "put", "docs-key", "docs-value", "--addr", https[0], "--w", "all")
	for _, h := range https[1:] {
		if r := ok(t, "get", "docs-key", "--addr", h); r.stdout != "docs-value\n" {
			t.Errorf("get at %s: %v", h, r)
		}
	}
	for i, a := range started {
		if code := a.stop(t); code != 0 {
			t.Errorf("agent %d exited %d; stderr:\n%s", i+1, code, a.stderr)
		}
	}
}

// TestDocsShellWords pins the small shell splitter the docs tests use.
func TestDocsShellWords(t *testing.T) {
	for in, want := range map[string][]string{
		`./rumor put greeting hello   # a comment`: {"./rumor", "put", "greeting", "hello"},
		`rumor put cart '["apples","pears"]' -o x`: {"rumor", "put", "cart", `["apples","pears"]`, "-o", "x"},
		`a "b c" d#e`: {"a", "b c", "d#e"},
		`  `:          nil,
	} {
		got, err := shellWords(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("shellWords(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := shellWords(`a 'b`); err == nil {
		t.Error("unterminated quote accepted")
	}
	f, err := flagValues([]string{"--name=n1", "--in-memory", "--join", "a,b", "-n", "3"}, map[string]bool{"in-memory": true})
	if err != nil || f["name"][0] != "n1" || f["in-memory"][0] != "" || f["join"][0] != "a,b" || f["n"][0] != "3" {
		t.Errorf("flagValues: %v, %v", f, err)
	}
	if _, err := flagValues([]string{"--data", "d", "extra"}, nil); err == nil {
		t.Error("flagValues accepted a positional argument")
	}
}
