package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// Shell completion scripts. bash and zsh call the program back with
// --generate-bash-completion (urfave/cli's protocol; the zsh script is its
// autocomplete/zsh_autocomplete with the program name fixed, the bash one
// needs no bash-completion package); fish gets a static script generated
// from the command tree.
const bashCompletion = `# rumor bash completion: source <(rumor completion bash)
_rumor_complete() {
  local cur="${COMP_WORDS[COMP_CWORD]}"
  local words=("${COMP_WORDS[@]:0:COMP_CWORD}")
  local opts
  if [[ "$cur" == -* ]]; then
    opts=$("${words[@]}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    opts=$("${words[@]}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
}

complete -o bashdefault -o default -F _rumor_complete rumor
`

const zshCompletion = `#compdef rumor
# rumor zsh completion: source <(rumor completion zsh)

_rumor_zsh_autocomplete() {
  local -a opts
  local cur
  cur=${words[-1]}
  if [[ "$cur" == "-"* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion)}")
  fi

  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}

compdef _rumor_zsh_autocomplete rumor
`

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script: bash, zsh or fish",
		ArgsUsage: "SHELL",
		Description: "bash: source <(rumor completion bash)   (or save it in /etc/bash_completion.d/rumor)\n" +
			"zsh:  source <(rumor completion zsh)\n" +
			"fish: rumor completion fish > ~/.config/fish/completions/rumor.fish",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageErr(c, "completion needs the SHELL: bash, zsh or fish")
			}
			switch sh := c.Args().First(); sh {
			case "bash":
				_, err := fmt.Fprint(c.App.Writer, bashCompletion)
				return err
			case "zsh":
				_, err := fmt.Fprint(c.App.Writer, zshCompletion)
				return err
			case "fish":
				_, err := fmt.Fprint(c.App.Writer, fishCompletion(c.App))
				return err
			default:
				return usageErr(c, fmt.Sprintf("unknown shell %q: want bash, zsh or fish", sh))
			}
		},
	}
}

// fishCompletion generates a fish script from app's commands and flags.
// (urfave/cli's ToFishCompletion recurses forever on the help command.)
func fishCompletion(app *cli.App) string {
	var b strings.Builder
	b.WriteString("# rumor fish completion: rumor completion fish > ~/.config/fish/completions/rumor.fish\n")
	b.WriteString("complete -c rumor -f\n")
	flags := func(cond string, fs []cli.Flag) {
		for _, f := range fs {
			if v, ok := f.(cli.VisibleFlag); ok && !v.IsVisible() {
				continue
			}
			usage := ""
			if d, ok := f.(cli.DocGenerationFlag); ok {
				usage = d.GetUsage()
			}
			for _, name := range f.Names() {
				opt := "-l"
				if len(name) == 1 {
					opt = "-s"
				}
				fmt.Fprintf(&b, "complete -c rumor -n %s %s %s", fishQuote(cond), opt, name)
				if d, ok := f.(cli.DocGenerationFlag); ok && d.TakesValue() {
					b.WriteString(" -r")
				}
				fmt.Fprintf(&b, " -d %s\n", fishQuote(usage))
			}
		}
	}
	flags("__fish_use_subcommand", app.Flags)
	for _, cmd := range app.Commands {
		if cmd.Hidden {
			continue
		}
		for _, name := range cmd.Names() {
			fmt.Fprintf(&b, "complete -c rumor -n __fish_use_subcommand -a %s -d %s\n", fishQuote(name), fishQuote(cmd.Usage))
		}
		flags("__fish_seen_subcommand_from "+strings.Join(cmd.Names(), " "), cmd.Flags)
		for _, sub := range cmd.Subcommands {
			if sub.Hidden || len(cmd.Subcommands) == 1 {
				continue // a lone subcommand ("create") repeats its command
			}
			for _, name := range sub.Names() {
				fmt.Fprintf(&b, "complete -c rumor -n %s -a %s -d %s\n", fishQuote("__fish_seen_subcommand_from "+strings.Join(cmd.Names(), " ")),
					fishQuote(name), fishQuote(sub.Usage))
			}
			flags("__fish_seen_subcommand_from "+strings.Join(sub.Names(), " "), sub.Flags)
		}
	}
	return b.String()
}

// fishQuote quotes s as one fish word.
func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", `\'`).Replace(s) + "'"
}

// completing reports whether args ask for completion candidates
// (urfave/cli's --generate-bash-completion, added by the scripts above).
func completing(args []string) bool {
	return len(args) > 0 && strings.TrimLeft(args[len(args)-1], "-") == "generate-bash-completion"
}
