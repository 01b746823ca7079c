package main

import (
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestReorderArgs(t *testing.T) {
	tests := []struct {
		name string
		in   string // args after "rumor", separated by "|"
		want string // "=" means unchanged
	}{
		// Nothing to do.
		{"no args", "", "="},
		{"help flag only", "--help", "="},
		{"no positionals", "members", "="},
		{"flags only", "members|-o|json", "="},

		// Positionals go after "--", flags before them.
		{"one positional", "get|k", "get|--|k"},
		{"flag after positional", "get|k|-o|json", "get|-o|json|--|k"},
		{"flag before positional", "get|-o|json|k", "get|-o|json|--|k"},
		{"flags on both sides", "get|--r|all|k|-o|json", "get|--r|all|-o|json|--|k"},
		{"README put", "put|greeting|hello, world|--context|C1", "put|--context|C1|--|greeting|hello, world"},
		{"value between positionals", "put|k|--w|all|v", "put|--w|all|--|k|v"},
		{"alias command", "delete|k|-c|C", "delete|-c|C|--|k"},
		{"alias flag", "put|k|v|-c|C", "put|-c|C|--|k|v"},
		{"empty positional", "put|k|", "put|--|k|"},
		{"lone dash is a positional", "put|k|-", "put|--|k|-"},

		// "--" ends the flags.
		{"double dash", "put|k|--|-5", "put|--|k|-5"},
		{"double dash first", "put|--|-k|-v", "put|--|-k|-v"},
		{"flag-like after double dash", "get|--|--local", "get|--|--local"},
		{"flags then double dash", "get|--local|--|-k", "get|--local|--|-k"},
		{"double dash twice", "put|k|--|--|x", "put|--|k|--|x"},

		// A flag's value may start with a dash.
		{"value starting with dash", "put|k|v|--context|-abc", "put|--context|-abc|--|k|v"},
		{"value that is a double dash", "put|k|v|--context|--", "put|--context|--|--|k|v"},
		{"value that looks like a flag", "get|k|--addr|--local", "get|--addr|--local|--|k"},

		// --flag=value and bool flags take no separate value.
		{"flag=value", "get|k|--r=all", "get|--r=all|--|k"},
		{"short flag=value", "get|k|-o=json", "get|-o=json|--|k"},
		{"bool flag then positional", "get|--local|k", "get|--local|--|k"},
		{"bool flag after positional", "get|k|--local|-o|json", "get|--local|-o|json|--|k"},
		{"bool flag=false", "get|k|--local=false", "get|--local=false|--|k"},
		{"unknown flag is kept as a flag", "get|k|--bogus", "get|--bogus|--|k"},
		{"help flag after positional", "get|k|--help", "get|--help"},
		{"short help flag between", "put|k|-h|v|--w|all", "put|-h"},
		{"help flag as a value", "put|k|--context|--help", "put|--context|--help|--|k"},
		{"help after double dash is a positional", "get|--|--help", "get|--|--help"},

		// A flag missing its value stays last, so the parser reports it.
		{"dangling value flag", "put|k|v|--context", "put|--context"},
		{"dangling after other flags", "get|k|--local|-o", "get|--local|-o"},

		// Global flags before the command stay there.
		{"global flag", "--addr|h:1|get|k|--local", "--addr|h:1|get|--local|--|k"},
		{"global flag=value", "--addr=h:1|get|k", "--addr=h:1|get|--|k"},
		{"global short flag", "-o|json|get|k", "-o|json|get|--|k"},
		{"global flags then command flags", "--token|T|-o|json|put|k|v|--w|all", "--token|T|-o|json|put|--w|all|--|k|v"},
		{"global value naming a command", "--addr|get|put|k|v", "--addr|get|put|--|k|v"},
		{"global bool flag", "--help|get|k", "--help|get|--|k"},
		{"global flag without command", "--addr|h:1", "="},
		{"global flag missing its value", "--addr", "="},
		{"double dash before the command", "--|get|k|-o|json", "="},

		// Commands the function does not know are left alone.
		{"unknown command", "bogus|k|-o|json", "="},
		{"help command", "help|get", "="},
		{"positional first", "k|get", "="},

		// Agent and demo flags.
		{"agent repeated join", "agent|--join|a:1|--join|b:2|--data|/d", "="},
		{"agent stray positional", "agent|extra|--data|/d", "agent|--data|/d|--|extra"},
		{"agent bool", "agent|--in-memory|--no-sync", "="},
		{"demo", "demo|--nodes|3|--duration|1s", "="},

		// Subcommands take the flags that follow them.
		{"subcommand flag after key", "keyring|install|K|--addr|h:1", "keyring|install|--addr|h:1|--|K"},
		{"subcommand bool flag", "keyring|remove|--force|K|-o|json", "keyring|remove|--force|-o|json|--|K"},
		{"subcommand without args", "keyring|list|-o|json", "="},
		{"unknown subcommand", "keyring|bogus|-o|json", "keyring|-o|json|--|bogus"},
		// Subcommands.
		{"tls subcommand", "tls|cert|--node|n1|--ip|10.0.0.1", "="},
		{"tls create", "tls|ca|create|--dir|d", "="},
		{"tls stray positional", "tls|ca|extra|--dir|d", "tls|ca|--dir|d|--|extra"},
		{"tls create stray positional", "tls|cert|create|x|--node|n", "tls|cert|create|--node|n|--|x"},
	}
	app := newApp(io.Discard, io.Discard)
	split := func(s string) []string {
		if s == "" {
			return []string{"rumor"}
		}
		return append([]string{"rumor"}, strings.Split(s, "|")...)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := split(tc.in)
			want := in
			if tc.want != "=" {
				want = split(tc.want)
			}
			orig := slices.Clone(in)
			got := reorderArgs(app, in)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("reorderArgs(%q)\n got %q\nwant %q", in, got, want)
			}
			if !reflect.DeepEqual(in, orig) {
				t.Errorf("reorderArgs modified its input: %q, was %q", in, orig)
			}
		})
	}
	if got := reorderArgs(app, nil); got != nil {
		t.Errorf("reorderArgs(nil) = %q", got)
	}
}

// TestReorderArgsParse checks that reordered arguments parse to what the
// user meant, through the real flag parser (an action that records what it
// saw stands in for each command).
func TestReorderArgsParse(t *testing.T) {
	type parsed struct {
		args                []string
		context, w, r, outp string
		local               bool
	}
	tests := []struct {
		in   string
		want parsed
	}{
		{"put|greeting|hello, world|--context|C1", parsed{args: []string{"greeting", "hello, world"}, context: "C1", outp: "text"}},
		{"put|k|--|-5", parsed{args: []string{"k", "-5"}, outp: "text"}},
		{"put|k|v|--context|-abc|--w|all", parsed{args: []string{"k", "v"}, context: "-abc", w: "all", outp: "text"}},
		{"get|k|-o|json|--local|--r|quorum", parsed{args: []string{"k"}, r: "quorum", local: true, outp: "json"}},
		{"get|help", parsed{args: []string{"help"}, outp: "text"}},
		{"get|h", parsed{args: []string{"h"}, outp: "text"}},
		{"-o|json|get|k", parsed{args: []string{"k"}, outp: "json"}},
		{"-o|json|get|k|-o|text", parsed{args: []string{"k"}, outp: "text"}},
	}
	for _, tc := range tests {
		var got parsed
		app := newApp(io.Discard, io.Discard)
		for _, c := range app.Commands {
			c.Action = func(c *cli.Context) error {
				got = parsed{args: c.Args().Slice(), outp: lookup(c, "output"), local: c.Bool("local"),
					context: c.String("context"), w: c.String("w"), r: c.String("r")}
				return nil
			}
		}
		args := append([]string{"rumor"}, strings.Split(tc.in, "|")...)
		if err := app.Run(reorderArgs(app, args)); err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q parsed as %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// FuzzReorderArgs checks reorderArgs' invariants on arbitrary argument
// lists: no panic, the input left alone, the program and everything up to
// the command kept in place, and no token invented (only "--" is added).
func FuzzReorderArgs(f *testing.F) {
	f.Add("get|k|-o|json")
	f.Add("--addr|h:1|put|k|--|-5|--context|C")
	f.Add("put|k|v|--context")
	f.Add("-o|json|members|--help|x")
	f.Add("agent|--join|a,b|--data|/d|extra")
	f.Add("||--|-|")
	app := newApp(io.Discard, io.Discard)
	f.Fuzz(func(t *testing.T, s string) {
		in := append([]string{"rumor"}, strings.Split(s, "|")...)
		orig := slices.Clone(in)
		out := reorderArgs(app, in)
		if !slices.Equal(in, orig) {
			t.Fatalf("input modified: %q, was %q", in, orig)
		}
		if len(out) == 0 || out[0] != "rumor" {
			t.Fatalf("reorderArgs(%q) = %q", in, out)
		}
		count := map[string]int{}
		for _, a := range in {
			count[a]++
		}
		for _, a := range out {
			if count[a] == 0 && a != "--" {
				t.Fatalf("reorderArgs(%q) = %q: %q invented", in, out, a)
			}
			count[a]--
		}
		// Up to and including the command name nothing moves.
		i := 1
		for i < len(in) && strings.HasPrefix(in[i], "-") && in[i] != "--" {
			if takesValue(app.Flags, in[i]) {
				i++
			}
			i++
		}
		if i < len(in) && findCommand(app, in[i]) != nil {
			if len(out) <= i || !slices.Equal(out[:i+1], in[:i+1]) {
				t.Fatalf("reorderArgs(%q) = %q: prefix moved", in, out)
			}
		}
	})
}
