package main

// The agent's settings come from four places, each overriding the ones
// after it: command-line flags, RUMOR_* environment variables, a TOML file
// (--config, RUMOR_CONFIG) and the flags' defaults. The flag definitions
// are the single list of settings: a setting's file key is its flag name
// and its environment variable is RUMOR_ followed by the name in upper case
// with dashes as underscores.
//
// The loader is written here rather than taken from urfave/cli's altsrc:
// altsrc ignores unknown keys in the file, reports type errors without the
// file or line, and cannot tell afterwards where a value came from, which
// --print-config shows. The agent's setting flags therefore carry no
// EnvVars: urfave/cli only parses the command line (so IsSet means "given
// as a flag") and resolveSettings reads the environment and the file.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/urfave/cli/v2"

	"github.com/rumorkv/rumor/node"
)

// Sources of a setting's value, as --print-config shows them ("env" is
// followed by the variable's name).
const (
	srcFlag    = "flag"
	srcEnv     = "env"
	srcFile    = "file"
	srcDefault = "default"
)

// Flags of `rumor agent` that are not settings: they choose what the
// command does, not how the node runs, so they have no file key (and only
// --config an environment variable).
const (
	flagConfig      = "config"
	flagPrintConfig = "print-config"
	flagConfigTable = "config-table"
	flagOutput      = "output"

	// envConfig names the configuration file when --config does not.
	envConfig = "RUMOR_CONFIG"
)

// settingFlags returns the definitions of the agent's settings, in the
// order they are documented and printed. Built per call: urfave/cli keeps
// parsed state in flag values.
func settingFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "name", Usage: "member name, unique in the cluster", DefaultText: "the host name"},
		&cli.StringFlag{Name: "data", Usage: "data directory (created if missing; a new directory means a new node identity); required unless --in-memory"},
		&cli.BoolFlag{Name: "in-memory", Usage: "keep everything in memory (lost on exit)"},
		&cli.StringFlag{Name: "bind", Value: "127.0.0.1:7946", Usage: "gossip listen address, TCP and UDP (0.0.0.0:7946: every interface)"},
		&cli.StringFlag{Name: "advertise", Usage: "gossip address other nodes use; a bare IP or host takes --bind's port",
			DefaultText: "--bind; with a 0.0.0.0 host, this machine's private IP"},
		&cli.StringFlag{Name: "rpc", Usage: "peer RPC listen address", DefaultText: "--bind's host, port + 1"},
		&cli.StringFlag{Name: "advertise-rpc", Usage: "peer RPC address other nodes dial (behind NAT or a port mapping)",
			DefaultText: "--rpc; a 0.0.0.0 host becomes --advertise's host"},
		&cli.StringFlag{Name: "http", Value: "127.0.0.1:7948", Usage: "client HTTP API listen address (empty: no HTTP API)"},
		&cli.StringFlag{Name: "advertise-http", Usage: "client HTTP API address announced to the cluster (members, ring)",
			DefaultText: "--http; a 0.0.0.0 host becomes --advertise's host"},
		&cli.StringSliceFlag{Name: "join", Usage: "gossip addresses (host:port; DNS names resolved at each attempt) of seeds, comma-separated or repeated; unreachable seeds are retried"},
		&cli.StringFlag{Name: "zone", Usage: "failure zone (rack, site): replicas prefer distinct zones"},
		&cli.IntFlag{Name: "replicas", Aliases: []string{"n"}, Value: 3, Usage: "replication factor N (the same on every node)"},
		&cli.StringFlag{Name: "r", Value: "1", Usage: "default read quorum: 1, quorum, all or a count"},
		&cli.StringFlag{Name: "w", Value: "1", Usage: "default write quorum: 1, quorum, all, primary or a count"},
		&cli.IntFlag{Name: "vnodes", Usage: "virtual nodes per member (the same on every node; 0: the ring's default)"},
		&cli.DurationFlag{Name: "clock-offset", Usage: "shift this node's clock (fault injection: a node with a wrong clock loses no writes)", Hidden: true},
		&cli.StringFlag{Name: "gossip-key", Usage: "gossip encryption key: base64 of 16, 24 or 32 bytes (rumor keyring generate); seeds the keyring of a node that has none yet (a keyring file wins); prefer the environment variable or the config file to keep it out of the process list",
			DefaultText: "none: the agent needs a key or the keyring file, unless --insecure"},
		&cli.StringFlag{Name: "keyring-file", Usage: "where the gossip keyring is kept (JSON, mode 0600; rotations with rumor keyring update it)",
			DefaultText: "keyring in --data; in memory with --in-memory"},
		&cli.BoolFlag{Name: "no-sync", Usage: "acknowledge writes before they are fsynced (faster, loses recent writes on a crash)"},
		&cli.StringFlag{Name: "tokens-file", Usage: "file of bearer tokens for the client API (TOML, see docs/security.md): every request but GET /v1/health and the /ui page then needs one",
			DefaultText: "none: the agent needs one for a client API, unless --insecure"},
		&cli.BoolFlag{Name: "insecure", Usage: "start without the protections not configured (a gossip key, TLS, client tokens; see docs/security.md), listing them in a warning; without it the agent refuses to start and says what is missing"},
		&cli.StringFlag{Name: "tls-ca", Usage: "CA certificate (PEM) peers' certificates must chain to; with --tls-cert and --tls-key: mutual TLS 1.3 between nodes and HTTPS for the client API",
			DefaultText: "none: the agent needs the three TLS files, unless --insecure"},
		&cli.StringFlag{Name: "tls-cert", Usage: "this node's certificate (PEM), signed by --tls-ca (rumor tls cert)"},
		&cli.StringFlag{Name: "tls-key", Usage: "the private key (PEM) of --tls-cert"},
		&cli.BoolFlag{Name: "tls-verify-hostname", Usage: "also check that a peer's certificate names the address it is dialed at (its advertised RPC address)"},
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
		&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json"},
	}
}

// actionFlags are the agent's flags that are not settings.
func actionFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagConfig, Usage: "read settings from this TOML file (keys are the flag names)"},
		&cli.BoolFlag{Name: flagPrintConfig, Usage: "print the effective configuration (TOML, or JSON with -o json) with each value's source, and exit"},
		outputFlag(),
		&cli.BoolFlag{Name: flagConfigTable, Usage: "print the settings table of docs/configuration.md and exit", Hidden: true},
	}
}

// agentFlags are all of the agent's flags; each setting's help names its
// environment variable.
func agentFlags() []cli.Flag {
	var out []cli.Flag
	for _, f := range settingFlags() {
		hint := " [$" + envName(f.Names()[0]) + "]"
		switch f := f.(type) {
		case *cli.StringFlag:
			f.Usage += hint
		case *cli.BoolFlag:
			f.Usage += hint
		case *cli.IntFlag:
			f.Usage += hint
		case *cli.DurationFlag:
			f.Usage += hint
		case *cli.StringSliceFlag:
			f.Usage += hint
		}
		out = append(out, f)
	}
	for _, f := range actionFlags() {
		if f, ok := f.(*cli.StringFlag); ok && f.Name == flagConfig {
			f.Usage += " [$" + envConfig + "]"
		}
		out = append(out, f)
	}
	return out
}

// envName is a setting's environment variable: RUMOR_LOG_LEVEL for
// log-level.
func envName(name string) string {
	return "RUMOR_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// settingChecks validate the string settings with a fixed vocabulary; each
// returns what it wants if v is not acceptable.
var settingChecks = map[string]func(v string) (want string, ok bool){
	"r": func(v string) (string, bool) {
		l, err := node.ParseConsistency(v)
		return "1, 2, …, quorum or all", err == nil && l != node.Primary
	},
	"w": func(v string) (string, bool) {
		_, err := node.ParseConsistency(v)
		return "1, 2, …, quorum, all or primary", err == nil
	},
	"log-level": func(v string) (string, bool) {
		var lv slog.Level
		return "debug, info, warn or error", lv.UnmarshalText([]byte(v)) == nil
	},
	"log-format": func(v string) (string, bool) {
		return "text or json", v == "text" || v == "json"
	},
}

// secretSettings are not printed by --print-config: it shows that they
// are set, not their value.
var secretSettings = map[string]bool{"gossip-key": true}

// redacted stands for a secret setting's value in --print-config.
const redacted = "(redacted)"

// intStrings are string settings a config file may also give as an
// integer ("w = 2").
var intStrings = map[string]bool{"r": true, "w": true}

// settings are the agent's resolved settings.
type settings struct {
	// file is the configuration file read ("" if none).
	file string
	// names lists the settings in definition order; hidden ones are
	// documented nowhere.
	names  []string
	hidden map[string]bool
	vals   map[string]any    // string, bool, int, time.Duration or []string
	src    map[string]string // srcFlag, "env RUMOR_X", srcFile, srcDefault
	defs   map[string]any
}

func (s *settings) str(name string) string             { return s.vals[name].(string) }
func (s *settings) boolean(name string) bool           { return s.vals[name].(bool) }
func (s *settings) integer(name string) int            { return s.vals[name].(int) }
func (s *settings) duration(name string) time.Duration { return s.vals[name].(time.Duration) }
func (s *settings) list(name string) []string          { return s.vals[name].([]string) }

// flagDefault returns a setting flag's default value.
func flagDefault(f cli.Flag) any {
	switch f := f.(type) {
	case *cli.StringFlag:
		return f.Value
	case *cli.BoolFlag:
		return f.Value
	case *cli.IntFlag:
		return f.Value
	case *cli.DurationFlag:
		return f.Value
	case *cli.StringSliceFlag:
		if f.Value == nil {
			return []string{}
		}
		return slices.Clone(f.Value.Value())
	}
	panic(fmt.Sprintf("setting %s: unsupported flag type %T", f.Names()[0], f))
}

// defaultText is a flag's description of a derived default ("" if its
// default is its value).
func defaultText(f cli.Flag) string {
	switch f := f.(type) {
	case *cli.StringFlag:
		return f.DefaultText
	case *cli.BoolFlag:
		return f.DefaultText
	case *cli.IntFlag:
		return f.DefaultText
	case *cli.DurationFlag:
		return f.DefaultText
	case *cli.StringSliceFlag:
		return f.DefaultText
	}
	return ""
}

func isHidden(f cli.Flag) bool {
	v, ok := f.(cli.VisibleFlag)
	return ok && !v.IsVisible()
}

// splitList splits comma-separated list items (flags may be repeated, and
// each may hold several), dropping blanks.
func splitList(items []string) []string {
	out := []string{}
	for _, j := range items {
		for _, s := range strings.Split(j, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// resolveSettings finds every setting's value and source: the command line
// (c), else the environment (env; an empty variable counts as unset), else
// the configuration file, else the default.
func resolveSettings(c *cli.Context, env func(string) (string, bool)) (*settings, error) {
	s := &settings{hidden: map[string]bool{}, vals: map[string]any{}, src: map[string]string{}, defs: map[string]any{}}
	path, fromEnv := c.String(flagConfig), false
	if !c.IsSet(flagConfig) {
		path, fromEnv = "", true
		if v, ok := env(envConfig); ok && v != "" {
			path = v
		}
	}
	var file map[string]fileValue
	if path != "" {
		var err error
		if file, err = readConfigFile(path); err != nil {
			if fromEnv {
				return nil, fmt.Errorf("%w (from %s)", err, envConfig)
			}
			return nil, err
		}
		s.file = path
	}
	for _, f := range settingFlags() {
		name := f.Names()[0]
		s.names = append(s.names, name)
		s.hidden[name] = isHidden(f)
		s.defs[name] = flagDefault(f)
		var v any
		var err error
		ev := envName(name)
		if c.IsSet(name) {
			v, s.src[name] = flagValue(c, f), srcFlag
			err = check(name, v, "--"+name)
		} else if raw, ok := env(ev); ok && raw != "" {
			s.src[name] = srcEnv + " " + ev
			if v, err = parseEnv(f, raw); err != nil {
				err = fmt.Errorf("bad %s %q: %v", ev, raw, err)
			} else {
				err = check(name, v, ev)
			}
		} else if fv, ok := file[name]; ok {
			v, s.src[name] = fv.v, srcFile
			if err = check(name, v, name); err != nil {
				err = fmt.Errorf("config %s: %w", fv.where, err)
			}
		} else {
			v, s.src[name] = s.defs[name], srcDefault
		}
		if err != nil {
			return nil, err
		}
		s.vals[name] = v
	}
	return s, nil
}

// check validates a string setting with a fixed vocabulary; label names
// where the value came from (--r, RUMOR_R, r).
func check(name string, v any, label string) error {
	fn, ok := settingChecks[name]
	if !ok {
		return nil
	}
	if want, ok := fn(v.(string)); !ok {
		return exitErr{msg: fmt.Sprintf("bad %s %q: want %s", label, v, want), code: exitError}
	}
	return nil
}

func flagValue(c *cli.Context, f cli.Flag) any {
	name := f.Names()[0]
	switch f.(type) {
	case *cli.StringFlag:
		return c.String(name)
	case *cli.BoolFlag:
		return c.Bool(name)
	case *cli.IntFlag:
		return c.Int(name)
	case *cli.DurationFlag:
		return c.Duration(name)
	case *cli.StringSliceFlag:
		return splitList(c.StringSlice(name))
	}
	panic(fmt.Sprintf("setting %s: unsupported flag type %T", name, f))
}

// parseEnv parses an environment variable's value for setting f (a list
// is comma-separated).
func parseEnv(f cli.Flag, raw string) (any, error) {
	switch f.(type) {
	case *cli.StringFlag:
		return raw, nil
	case *cli.BoolFlag:
		b, err := strconv.ParseBool(strings.TrimSpace(raw))
		if err != nil {
			return nil, errors.New("want true or false")
		}
		return b, nil
	case *cli.IntFlag:
		n, err := strconv.Atoi(strings.TrimSpace(raw))
		if err != nil {
			return nil, errors.New("want an integer")
		}
		return n, nil
	case *cli.DurationFlag:
		d, err := time.ParseDuration(strings.TrimSpace(raw))
		if err != nil {
			return nil, errors.New("want a duration such as 1.5s or 2m")
		}
		return d, nil
	case *cli.StringSliceFlag:
		return splitList([]string{raw}), nil
	}
	panic(fmt.Sprintf("setting %s: unsupported flag type %T", f.Names()[0], f))
}

// fileValue is a setting read from the configuration file.
type fileValue struct {
	v     any
	where string // "path:line" (or just path if the line is unknown)
}

// readConfigFile reads a TOML configuration file: every key must be a
// setting's flag name with a value of its type.
func readConfigFile(path string) (map[string]fileValue, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("config %s:%d: %s", path, pe.Position.Line, pe.Message)
		}
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	flags := map[string]cli.Flag{}
	var known []string
	for _, f := range settingFlags() {
		flags[f.Names()[0]] = f
		if !isHidden(f) {
			known = append(known, f.Names()[0])
		}
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	// Report the first problem in file order.
	slices.SortFunc(keys, func(a, b string) int { return keyLine(data, a) - keyLine(data, b) })
	out := map[string]fileValue{}
	for _, k := range keys {
		where := path
		if l := keyLine(data, k); l > 0 {
			where = fmt.Sprintf("%s:%d", path, l)
		}
		f, ok := flags[k]
		if !ok {
			hint := ""
			if _, table := raw[k].(map[string]any); table {
				hint = " (a table: the file has none, settings are top-level keys)"
			} else if s := closest(k, known); s != "" {
				hint = fmt.Sprintf(" (did you mean %q?)", s)
			}
			return nil, fmt.Errorf("config %s: unknown key %q%s; keys are the agent's flag names: %s", where, k, hint, strings.Join(known, ", "))
		}
		v, err := fileSetting(f, k, raw[k])
		if err != nil {
			return nil, fmt.Errorf("config %s: key %q: %v", where, k, err)
		}
		out[k] = fileValue{v: v, where: where}
	}
	return out, nil
}

// fileSetting converts a decoded TOML value to setting f's type.
func fileSetting(f cli.Flag, key string, v any) (any, error) {
	switch f.(type) {
	case *cli.StringFlag:
		if s, ok := v.(string); ok {
			return s, nil
		}
		if n, ok := v.(int64); ok && intStrings[key] {
			return strconv.FormatInt(n, 10), nil
		}
		return nil, fmt.Errorf("want a string, got %s", tomlType(v))
	case *cli.BoolFlag:
		if b, ok := v.(bool); ok {
			return b, nil
		}
		return nil, fmt.Errorf("want true or false, got %s", tomlType(v))
	case *cli.IntFlag:
		n, ok := v.(int64)
		if !ok {
			return nil, fmt.Errorf("want an integer, got %s", tomlType(v))
		}
		if int64(int(n)) != n {
			return nil, fmt.Errorf("integer %d out of range", n)
		}
		return int(n), nil
	case *cli.DurationFlag:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("want a duration string such as \"1.5s\", got %s", tomlType(v))
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return nil, fmt.Errorf("bad duration %q: want a number with a unit such as \"1.5s\" or \"2m\"", s)
		}
		return d, nil
	case *cli.StringSliceFlag:
		arr, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("want an array of strings such as [\"10.0.0.1:7946\"], got %s", tomlType(v))
		}
		out := []string{}
		for i, e := range arr {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("element %d: want a string, got %s", i, tomlType(e))
			}
			out = append(out, splitList([]string{s})...)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported flag type %T", f)
}

// tomlType describes a decoded TOML value for an error message.
func tomlType(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("string %q", v)
	case int64:
		return fmt.Sprintf("integer %d", v)
	case float64:
		return fmt.Sprintf("float %v", v)
	case bool:
		return fmt.Sprintf("boolean %v", v)
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("%T", v)
}

// keyLine returns the 1-based line where a top-level key is assigned in a
// TOML document, 0 if not found. The files are flat (a table is an error),
// so the first assignment of the key at the start of a line is the one.
func keyLine(data []byte, key string) int {
	q := regexp.QuoteMeta(key)
	re := regexp.MustCompile(`(?m)^[ \t]*(?:` + q + `|"` + q + `"|'` + q + `')[ \t]*[=.]|^[ \t]*\[+[ \t]*(?:` + q + `|"` + q + `")[ \t]*[\].]`)
	loc := re.FindIndex(data)
	if loc == nil {
		return 0
	}
	return bytes.Count(data[:loc[0]], []byte("\n")) + 1
}

// closest returns the name in names nearest to s if it is a likely typo
// (edit distance at most 2), else "".
func closest(s string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(s, n); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// printable returns a setting's value as --print-config shows it: a
// duration as its string (TOML has no duration type), a secret redacted.
func (s *settings) printable(name string) any {
	v := s.vals[name]
	if secretSettings[name] && v != "" {
		return redacted
	}
	if d, ok := v.(time.Duration); ok {
		return d.String()
	}
	return v
}

// shown reports whether --print-config shows a setting: hidden ones only
// when they differ from their default.
func (s *settings) shown(name string) bool {
	return !s.hidden[name] || s.src[name] != srcDefault
}

// writeTOML prints the settings as a TOML file that --config reads back,
// each value followed by a comment naming its source.
func (s *settings) writeTOML(w io.Writer) error {
	var b strings.Builder
	b.WriteString("# rumor agent: effective configuration (--print-config).\n")
	b.WriteString("# Feed it back with --config FILE; each value is followed by its source.\n")
	if s.file != "" {
		fmt.Fprintf(&b, "# Configuration file: %s\n", s.file)
	}
	for _, name := range s.names {
		if s.printable(name) == redacted {
			fmt.Fprintf(&b, "# %s is a secret and not shown: put its value back before using this file.\n", name)
		}
	}
	var lines []string
	width := 0
	for _, name := range s.names {
		if !s.shown(name) {
			continue
		}
		var kv bytes.Buffer
		if err := toml.NewEncoder(&kv).Encode(map[string]any{name: s.printable(name)}); err != nil {
			return fmt.Errorf("encode %s: %w", name, err)
		}
		line := strings.TrimSpace(kv.String())
		lines = append(lines, line)
		width = max(width, len(line))
	}
	i := 0
	for _, name := range s.names {
		if !s.shown(name) {
			continue
		}
		fmt.Fprintf(&b, "%-*s  # %s\n", width, lines[i], s.src[name])
		i++
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// printedConfig is --print-config's JSON form.
type printedConfig struct {
	// File is the configuration file read, if any.
	File string `json:"config_file,omitempty"`
	// Config maps each setting's file key to its value.
	Config map[string]any `json:"config"`
	// Sources maps each setting's file key to where its value came from:
	// "flag", "env RUMOR_X", "file" or "default".
	Sources map[string]string `json:"sources"`
}

func (s *settings) writeJSON(w io.Writer) error {
	p := printedConfig{File: s.file, Config: map[string]any{}, Sources: map[string]string{}}
	for _, name := range s.names {
		if s.shown(name) {
			p.Config[name] = s.printable(name)
			p.Sources[name] = s.src[name]
		}
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// configTable returns the Markdown table of every agent flag that
// docs/configuration.md holds between its config-table markers.
func configTable() string {
	var b strings.Builder
	b.WriteString("| Flag | Environment | File key | Default | Meaning |\n")
	b.WriteString("|---|---|---|---|---|\n")
	cell := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	row := func(f cli.Flag, env, key string) {
		names := make([]string, 0, 2)
		for i, n := range f.Names() {
			if i > 0 && len(n) == 1 {
				names = append(names, "`-"+n+"`")
			} else {
				names = append(names, "`--"+n+"`")
			}
		}
		usage := ""
		if d, ok := f.(cli.DocGenerationFlag); ok {
			usage = d.GetUsage()
		}
		def := defaultText(f)
		if def == "" {
			switch v := flagDefault(f).(type) {
			case string:
				def = "`" + v + "`"
				if v == "" {
					def = "(none)"
				}
			case []string:
				def = "(none)"
			default:
				def = fmt.Sprintf("`%v`", v)
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", strings.Join(names, ", "), env, key, cell(def), cell(usage))
	}
	for _, f := range settingFlags() {
		if !isHidden(f) {
			name := f.Names()[0]
			row(f, "`"+envName(name)+"`", "`"+name+"`")
		}
	}
	for _, f := range actionFlags() {
		if isHidden(f) {
			continue
		}
		env := "—"
		if f.Names()[0] == flagConfig {
			env = "`" + envConfig + "`"
		}
		row(f, env, "—")
	}
	return b.String()
}
