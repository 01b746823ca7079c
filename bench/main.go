// Command bench runs Rumor's benchmarks and writes their reports: a summary
// on stdout, the full figures as JSON (--json FILE) and plots (--plot FILE,
// PNG or SVG by the extension).
//
//	go run ./bench rebalance [--from 3] [--to 16] [--vnodes 4096] [--keys 100000] [--json F] [--plot F]
//	go run ./bench load [--nodes 3 | --addrs host:port,…] [--client http|embedded] [--concurrency 50] …
//	go run ./bench partition-heal [--mode inproc|netns] [--nodes 5] [--keys 1000000] [--diverge 10000] [--shape halves] …
//	go run ./bench nemesis [--mode inproc|netns] [--seed 1] [--duration 60s] [--faults kill,pause,…] [--runs 20] …
//
// Each command lives in its own file (rebalance.go, load.go,
// partitionheal.go with scenario.go); what they
// share is here (app, flags, output), in plot.go (plots), cluster.go
// (in-process clusters), hist.go (latency histograms) and cpu.go (CPU time
// and profiles). A new command is a file with a constructor returning a
// *cli.Command, listed in newApp.
//
// Exit codes: 0 success, 1 error (one line on stderr).
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"

	"github.com/rumorkv/rumor/node"
)

func main() {
	node.SetProcs() // fsync-heavy: see its doc
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run executes the program with args and returns its exit code; tests call
// it the way the shell does.
func run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	app.Metadata = map[string]any{"args": args}
	if err := app.Run(args); err != nil {
		msg := strings.Join(strings.Fields(err.Error()), " ")
		if !strings.HasPrefix(msg, "bench: ") {
			msg = "bench: " + msg
		}
		fmt.Fprintln(stderr, msg)
		return 1
	}
	return 0
}

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:           "bench",
		Usage:          "Rumor benchmarks",
		Writer:         stdout,
		ErrWriter:      stderr,
		HideVersion:    true,
		ExitErrHandler: func(*cli.Context, error) {}, // run() reports errors
		Commands: []*cli.Command{
			rebalanceCommand(),
			loadCommand(),
			partitionHealCommand(),
			crashCommand(),
			scaleOutCommand(),
			nemesisCommand(),
		},
	}
}

// Flags every command that reports takes. Constructors, because a flag
// value holds parse state.
func jsonFlag() cli.Flag {
	return &cli.StringFlag{Name: "json", Usage: "write the full results as JSON to `FILE`"}
}

func plotFlag(what string) cli.Flag {
	return &cli.StringFlag{Name: "plot", Usage: "plot " + what + " to `FILE` (.png or .svg)"}
}

func seedFlag() cli.Flag {
	return &cli.Uint64Flag{Name: "seed", Value: 1, Usage: "random seed (same seed, same run)"}
}

// environment describes the machine and build a result was measured on.
type environment struct {
	Time       time.Time `json:"time"`
	Args       []string  `json:"args"`
	GoVersion  string    `json:"go_version"`
	OS         string    `json:"os"`
	Arch       string    `json:"arch"`
	NumCPU     int       `json:"num_cpu"`
	GOMAXPROCS int       `json:"gomaxprocs"`
	CPUModel   string    `json:"cpu_model,omitempty"`
	Hostname   string    `json:"hostname,omitempty"`
}

func currentEnvironment(c *cli.Context) environment {
	host, _ := os.Hostname()
	return environment{
		Time:       time.Now().UTC().Truncate(time.Second),
		Args:       invocation(c),
		GoVersion:  runtime.Version(),
		OS:         runtime.GOOS,
		Arch:       runtime.GOARCH,
		NumCPU:     runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		CPUModel:   cpuModel(),
		Hostname:   host,
	}
}

// invocation returns the arguments the program was run with (without the
// program name), for reports.
func invocation(c *cli.Context) []string {
	if args, ok := c.App.Metadata["args"].([]string); ok && len(args) > 0 {
		return args[1:]
	}
	return nil
}

// cpuModel returns the processor's name from /proc/cpuinfo (Linux), or "".
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// writeJSON writes v, indented, to the file name ("" writes nothing).
func writeJSON(name string, v any) error {
	if name == "" {
		return nil
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	return writeFile(name, append(b, '\n'))
}

// checkOutputs fails early, before a long run, when an output file cannot
// be written: a plot with an unknown extension or a missing directory.
func checkOutputs(jsonFile string, plotFiles ...string) error {
	for _, f := range append([]string{jsonFile}, plotFiles...) {
		if f == "" {
			continue
		}
		if st, err := os.Stat(filepath.Dir(f)); err != nil || !st.IsDir() {
			return fmt.Errorf("output %s: directory %s does not exist", f, filepath.Dir(f))
		}
	}
	for _, f := range plotFiles {
		if f == "" {
			continue
		}
		if _, err := plotFormat(f); err != nil {
			return err
		}
	}
	return nil
}

// table writes aligned columns to w; flush when done.
func table(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progress is a progress bar on a terminal and nothing otherwise, so logs
// and CI output stay clean.
type progress struct {
	bar *progressbar.ProgressBar
}

// newProgress starts a bar counting to total on w, if w is a terminal.
func newProgress(w io.Writer, total int64, desc string) *progress {
	if !isTerminal(w) || total <= 0 {
		return &progress{}
	}
	return &progress{bar: progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowCount(),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)}
}

// set moves the bar to n.
func (p *progress) set(n int64) {
	if p.bar != nil {
		_ = p.bar.Set64(n)
	}
}

// done removes the bar.
func (p *progress) done() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}

var errUsage = errors.New("bench: bad arguments")

// usageErr is a flag or argument problem.
func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}
