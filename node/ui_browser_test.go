package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/rumorkv/rumor/ring"
)

// uiSnapshot is what the page shows, as TestUIChromium reads it from the
// DOM.
type uiSnapshot struct {
	CX, CY float64
	Arcs   []struct {
		Node, Ring, D, Class string
	}
	Rows []struct {
		Node, State string
		Cells       []string // text of each cell
		Warn        string   // title of the row's warning mark
	}
	Self    string
	Banner  string
	Updated string
}

const uiSnapshotJS = `(() => {
  const q = (s) => Array.from(document.querySelectorAll(s));
  const track = document.querySelector('circle.track');
  const banner = document.getElementById('banner');
  return {
    CX: +track.getAttribute('cx'), CY: +track.getAttribute('cy'),
    Arcs: q('svg path.arc').map((p) => ({Node: p.getAttribute('data-node'), Ring: p.getAttribute('data-ring'),
      D: p.getAttribute('d') || '', Class: p.getAttribute('class')})),
    Rows: q('#members tbody tr[data-node]').map((r) => ({Node: r.getAttribute('data-node'), State: r.getAttribute('data-state'),
      Cells: Array.from(r.cells).map((c) => c.textContent.trim()),
      Warn: r.querySelector('.warn') ? r.querySelector('.warn').getAttribute('title') : ''})),
    Self: document.getElementById('self').textContent,
    Banner: banner.hidden ? '' : banner.textContent,
    Updated: document.getElementById('updated').getAttribute('data-updated') || '',
  };
})()`

// arcCmd is one arc the page draws: "M x0 y0A r r 0 0 1 x1 y1".
var arcCmd = regexp.MustCompile(`M(-?[0-9.]+) (-?[0-9.]+)A([0-9.]+) ([0-9.]+) 0 0 1 (-?[0-9.]+) (-?[0-9.]+)`)

// turns measures the arcs of an SVG path drawn by the page: the sum of
// their angles around (cx, cy), in turns.
func turns(d string, cx, cy float64) (float64, error) {
	ms := arcCmd.FindAllStringSubmatchIndex(d, -1)
	covered := 0
	sum := 0.0
	for _, m := range ms {
		covered += m[1] - m[0]
		var v [6]float64
		for i := range v {
			f, err := strconv.ParseFloat(d[m[2+2*i]:m[3+2*i]], 64)
			if err != nil {
				return 0, err
			}
			v[i] = f
		}
		r0, r1 := math.Hypot(v[0]-cx, v[1]-cy), math.Hypot(v[4]-cx, v[5]-cy)
		if math.Abs(r0-v[2]) > 0.01 || math.Abs(r1-v[2]) > 0.01 {
			return 0, fmt.Errorf("arc %q is not on its circle of radius %v", d[m[0]:m[1]], v[2])
		}
		// SVG's y axis points down: clockwise is a growing atan2 angle.
		a := math.Atan2(v[5]-cy, v[4]-cx) - math.Atan2(v[1]-cy, v[0]-cx)
		if a < 0 {
			a += 2 * math.Pi
		}
		sum += a
	}
	if covered != len(d) {
		return 0, fmt.Errorf("path has %d bytes that are not arcs: %.80q", len(d)-covered, d)
	}
	return sum / (2 * math.Pi), nil
}

// findChromium returns the path of a Chromium or Chrome binary.
func findChromium() (string, bool) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, true
		}
	}
	return "", false
}

// procEntry is a process as /proc/<pid>/stat describes it.
type procEntry struct {
	pid, ppid int
	zombie    bool
}

// processes lists the live processes (zombies marked).
func processes() map[int]procEntry {
	out := map[int]procEntry{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid …; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		pid, err1 := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		ppid, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil {
			continue
		}
		out[pid] = procEntry{pid: pid, ppid: ppid, zombie: f[0] == "Z"}
	}
	return out
}

// browserTree returns root and its descendants, and every process whose
// command line mentions dir (the browser's data directory, which its
// crash handler, reparented to init, names too).
func browserTree(root int, dir string) map[int]bool {
	procs := processes()
	tree := map[int]bool{}
	if _, ok := procs[root]; ok {
		tree[root] = true
	}
	for grew := true; grew; {
		grew = false
		for pid, e := range procs {
			if !tree[pid] && tree[e.ppid] {
				tree[pid], grew = true, true
			}
		}
	}
	for pid := range procs {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && bytes.Contains(b, []byte(dir)) {
			tree[pid] = true
		}
	}
	return tree
}

// describe lists the pids of tree still running, with their command lines.
func describe(tree map[int]bool) []string {
	procs := processes()
	var out []string
	for pid := range tree {
		if e, ok := procs[pid]; ok && !e.zombie {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			out = append(out, fmt.Sprintf("%d: %.200s", pid, bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
		}
	}
	return out
}

// newBrowser starts a headless Chromium for t, or skips t without one.
// Every process of the browser is gone when t ends, passed or failed.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	exe, ok := findChromium()
	if !ok {
		t.Skip("chromium not installed: apt-get install chromium")
	}
	dataDir := t.TempDir() // removed after the browser is gone (cleanups run last first)
	var tree map[int]bool  // the browser's processes, taken before it is closed
	t.Cleanup(func() {
		if tree == nil {
			return
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			left := describe(tree)
			if len(left) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("chromium processes left after the test:\n%s", strings.Join(left, "\n"))
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root, where Chromium's sandbox refuses to start
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		// Without these Chromium keeps calling home, which on a machine
		// without a network floods it with refused connections.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(dataDir),
		// The crash handler keeps its database under the configuration
		// directory: in dataDir, not in the user's home.
		chromedp.Env("XDG_CONFIG_HOME="+filepath.Join(dataDir, "config"), "XDG_CACHE_HOME="+filepath.Join(dataDir, "cache")),
		chromedp.WindowSize(1360, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc) // kills the browser and waits for it
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		if c := chromedp.FromContext(ctx); c != nil && c.Browser != nil && c.Browser.Process() != nil {
			tree = browserTree(c.Browser.Process().Pid, dataDir)
		}
		// Close the browser gracefully, or kill it (cancelAlloc) after 10 s.
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		defer ccancel()
		if err := chromedp.Cancel(cctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("close browser: %v", err)
		}
		cancel()
	})
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int]("1")); err != nil {
		t.Fatalf("start %s: %v", exe, err)
	}
	return ctx
}

// uiDriver reads and photographs the web view in a browser tab.
type uiDriver struct {
	t   *testing.T
	ctx context.Context
	dir string // where screenshots go

	mu     sync.Mutex
	errors []string // script exceptions and console errors
	ignore func(url, text string) bool
}

// openUI starts a browser on url; the page's script errors and console
// errors are recorded (except those ignore accepts) for noErrors.
func openUI(t *testing.T, url string, ignore func(url, text string) bool) *uiDriver {
	t.Helper()
	ctx, cancel := context.WithTimeout(newBrowser(t), 3*time.Minute)
	t.Cleanup(cancel)
	d := &uiDriver{t: t, ctx: ctx, ignore: ignore, dir: os.Getenv("RUMOR_UI_SCREENSHOT_DIR")}
	if d.dir == "" {
		d.dir = t.TempDir()
	} else if err := os.MkdirAll(d.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	err := chromedp.Listen(ctx, func(ev any) {
		d.mu.Lock()
		defer d.mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			x := ev.ExceptionDetails
			msg := x.Text
			if x.Exception != nil {
				msg += " " + x.Exception.Description
			}
			d.errors = append(d.errors, fmt.Sprintf("exception at %d:%d: %s", x.LineNumber+1, x.ColumnNumber+1, msg))
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError && (d.ignore == nil || !d.ignore(ev.Entry.URL, ev.Entry.Text)) {
				d.errors = append(d.errors, "console: "+ev.Entry.Text+" "+ev.Entry.URL)
			}
		}
	})
	if err != nil {
		t.Fatalf("listen to the browser: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("load %s: %v", url, err)
	}
	return d
}

// noErrors fails the test if the page reported an error so far.
func (d *uiDriver) noErrors() {
	d.t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.errors) > 0 {
		d.t.Fatalf("the page reported errors:\n%s", strings.Join(d.errors, "\n"))
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](d *uiDriver, expr string) T {
	d.t.Helper()
	v, err := chromedp.Run(d.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		d.t.Fatalf("evaluate %.60q: %v", expr, err)
	}
	return v
}

func (d *uiDriver) snapshot() uiSnapshot {
	d.t.Helper()
	return eval[uiSnapshot](d, uiSnapshotJS)
}

// wait polls the page until ok accepts it.
func (d *uiDriver) wait(timeout time.Duration, what string, ok func(uiSnapshot) error) uiSnapshot {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := d.snapshot()
		err := ok(s)
		if err == nil {
			return s
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// shoot saves a screenshot of the whole page as name, after checking it is
// a PNG of a sane size.
func (d *uiDriver) shoot(name string) {
	d.t.Helper()
	img, err := chromedp.Run(d.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		d.t.Fatalf("screenshot: %v", err)
	}
	pic, err := png.Decode(bytes.NewReader(img))
	if err != nil {
		d.t.Fatalf("screenshot is not a PNG: %v", err)
	}
	b := pic.Bounds()
	if b.Dx() < 800 || b.Dy() < 500 || b.Dx() > 8000 || b.Dy() > 8000 {
		d.t.Fatalf("screenshot is %dx%d", b.Dx(), b.Dy())
	}
	path := filepath.Join(d.dir, name)
	if err := os.WriteFile(path, img, 0o644); err != nil {
		d.t.Fatal(err)
	}
	d.t.Logf("screenshot %dx%d: %s", b.Dx(), b.Dy(), path)
}

func (s uiSnapshot) states() map[string]string {
	m := map[string]string{}
	for _, r := range s.Rows {
		m[r.Node] = r.State
	}
	return m
}

// shares measures each node's arcs in ring ("current" or "next").
func (s uiSnapshot) shares(ring string) (map[string]float64, error) {
	out := map[string]float64{}
	for _, a := range s.Arcs {
		if a.Ring != ring {
			continue
		}
		tu, err := turns(a.D, s.CX, s.CY)
		if err != nil {
			return nil, fmt.Errorf("arcs of %s: %w", a.Node, err)
		}
		out[a.Node] += tu
	}
	return out, nil
}

// checkShares checks that each node's arcs cover its share of the circle,
// and all of them the whole circle.
func checkShares(t *testing.T, s uiSnapshot, ring string, own map[string]float64) {
	t.Helper()
	got, err := s.shares(ring)
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for name, o := range own {
		t.Logf("%s ring: %s's arcs cover %.4f of the circle, ownership %.4f", ring, name, got[name], o)
		if math.Abs(got[name]-o) > 0.005 {
			t.Fatalf("%s ring: %s's arcs cover %.4f of the circle, its ownership is %.4f", ring, name, got[name], o)
		}
		total += got[name]
	}
	if len(got) != len(own) || math.Abs(total-1) > 0.005 {
		t.Fatalf("%s ring: arcs of %d nodes cover %.4f of the circle; want %d nodes, 1", ring, len(got), total, len(own))
	}
}

// The web view in a real browser: a 3-node cluster's ring drawn with each
// node's share, members alive, a node's death shown by the live refresh,
// and the error banner while the answering node is down, gone once it is
// back. It saves screenshots to $RUMOR_UI_SCREENSHOT_DIR (else a temporary
// directory).
func TestUIChromium(t *testing.T) {
	if _, ok := findChromium(); !ok {
		t.Skip("chromium not installed: apt-get install chromium")
	}
	nodes := startCluster(t, 3, nil)
	const keys = 30
	for i := range keys {
		if _, err := nodes[i%3].Put(bg, []byte(fmt.Sprintf("ui-%d", i)), []byte("v"), &WriteOptions{W: All}); err != nil {
			t.Fatal(err)
		}
	}
	d := openUI(t, "http://"+nodes[0].HTTPAddr()+"/ui", nil)
	names := []string{"n1", "n2", "n3"}

	s := d.wait(20*time.Second, "three nodes drawn and alive", func(s uiSnapshot) error {
		drawn := map[string]bool{}
		for _, a := range s.Arcs {
			if a.Ring == "current" && a.D != "" {
				drawn[a.Node] = true
			}
		}
		st := s.states()
		for _, n := range names {
			if !drawn[n] || st[n] != StateAlive {
				return fmt.Errorf("%s: drawn %v, state %q; rows %+v", n, drawn[n], st[n], s.Rows)
			}
		}
		if len(s.Rows) != 3 {
			return fmt.Errorf("%d rows, want 3: %+v", len(s.Rows), s.Rows)
		}
		return nil
	})
	if s.Self != "n1" || s.Banner != "" || s.Updated == "" {
		t.Fatalf("header: self %q, banner %q, updated %q", s.Self, s.Banner, s.Updated)
	}
	// /v1/cluster fills the statistics: with N=3 every node holds every key.
	aeCell := regexp.MustCompile(`^\d+ / \d+$`)
	d.wait(20*time.Second, "statistics of every node", func(s uiSnapshot) error {
		for _, r := range s.Rows {
			if len(r.Cells) != 10 || r.Cells[5] != fmt.Sprint(keys) || r.Cells[6] != "0" || !aeCell.MatchString(r.Cells[7]) || r.Warn != "" {
				return fmt.Errorf("row %s: %q (warning %q)", r.Node, r.Cells, r.Warn)
			}
		}
		return nil
	})
	own := map[string]float64{}
	for _, m := range nodes[0].Ring().Members {
		own[m.Name] = m.Ownership
	}
	checkShares(t, s, "current", own)
	for _, a := range s.Arcs {
		if a.Ring != "current" {
			t.Fatalf("arcs of %s in ring %q while the ring is not moving", a.Node, a.Ring)
		}
	}
	d.noErrors()

	// A node stops: the page shows it down by itself.
	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	d.wait(15*time.Second, "n3 shown down", func(s uiSnapshot) error {
		st := s.states()
		if st["n3"] == StateAlive || st["n3"] == "" || st["n1"] != StateAlive || st["n2"] != StateAlive {
			return fmt.Errorf("states %v", st)
		}
		for _, a := range s.Arcs {
			if a.Node == "n3" && !strings.Contains(a.Class, "down") {
				return fmt.Errorf("n3's arcs are drawn as up: class %q", a.Class)
			}
		}
		return nil
	})
	// n1 cannot ask n3 for its statistics any more: "-" and a warning.
	d.wait(15*time.Second, "n3's statistics gone", func(s uiSnapshot) error {
		for _, r := range s.Rows {
			if r.Node == "n3" && (r.Cells[5] != "-" || r.Warn == "") {
				return fmt.Errorf("row n3: %q (warning %q)", r.Cells, r.Warn)
			}
		}
		return nil
	})
	t.Logf("the page showed n3 down %v after it stopped", time.Since(start).Round(100*time.Millisecond))
	d.noErrors()
	d.shoot("rumor-ui.png")

	// The answering node stops: the banner says so; it goes once the node
	// answers again on the same address.
	addr := nodes[0].HTTPAddr()
	if err := nodes[0].Close(); err != nil {
		t.Fatal(err)
	}
	d.wait(15*time.Second, "error banner", func(s uiSnapshot) error {
		if s.Banner == "" {
			return errors.New("no banner")
		}
		return nil
	})
	d.shoot("rumor-ui-down.png")
	cfg := *nodes[0].cfg
	cfg.HTTPAddr = addr
	cfg.Join = []string{nodes[1].GossipAddr()}
	openNode(t, &cfg)
	d.wait(20*time.Second, "banner gone once n1 is back", func(s uiSnapshot) error {
		if s.Banner != "" {
			return fmt.Errorf("banner %q", s.Banner)
		}
		if st := s.states(); st["n1"] != StateAlive || st["n2"] != StateAlive {
			return fmt.Errorf("states %v", st)
		}
		return nil
	})
}

// The web view against a fake node: a moving ring (next ring drawn inside),
// every /v1/cluster column filled in, a node whose statistics failed, a
// member that left, a node name full of markup (shown as text, never run),
// and then /v1/cluster answering 404 (the columns fall back to "-").
func TestUIRendering(t *testing.T) {
	if _, ok := findChromium(); !ok {
		t.Skip("chromium not installed: apt-get install chromium")
	}
	const evil = `<img src=x onerror="document.title='pwned'">`
	ids := map[string]ring.NodeID{"n1": 0x1111, "n2": 0x2222, "n3": 0x3333, evil: 0x4444, "old": 0x5555}
	cur := ring.New([]ring.Member{{ID: ids["n1"]}, {ID: ids["n2"]}, {ID: ids["n3"]}}, 64)
	next := ring.New([]ring.Member{{ID: ids["n1"]}, {ID: ids["n2"]}, {ID: ids[evil]}}, 64)
	curOwn, nextOwn := cur.Ownership(), next.Ownership()
	type who struct{ name, state, status, zone string }
	all := []who{{"n1", StateAlive, StatusMember, "z1"}, {"n2", StateAlive, StatusMember, "z2"},
		{"n3", StateSuspect, StatusLeaving, "z3"}, {evil, StateAlive, StatusJoining, "<b>z</b>"}, {"old", StateLeft, StatusLeft, ""}}
	info := RingInfo{N: 3, VNodes: 64, Moving: true}
	var members []MemberInfo
	for _, w := range all {
		id := fmt.Sprintf("%016x", ids[w.name])
		members = append(members, MemberInfo{Name: w.name, ID: id, State: w.state, Status: w.status, Zone: w.zone})
		if w.name != "old" {
			info.Members = append(info.Members, RingMemberInfo{Name: w.name, ID: id, Zone: w.zone, State: w.state,
				Status: w.status, Ownership: curOwn[ids[w.name]], NextOwnership: nextOwn[ids[w.name]]})
		}
	}
	last := time.Now().Add(-3 * time.Second).UTC().Format(time.RFC3339)
	cluster := map[string]any{"name": "n1", "n": 3, "vnodes": 64, "moving": true, "nodes": []map[string]any{
		{"name": "n1", "state": StateAlive, "status": StatusMember, "ownership": curOwn[ids["n1"]], "keys": 12345,
			"hints_pending": 2, "ae_ranges_in_sync": 10, "ae_ranges_total": 12, "last_exchange": last,
			"bytes_repaired": 1572864, "keys_repaired": 7},
		{"name": "n2", "state": StateAlive, "status": StatusMember, "keys": 12001, "hints_pending": 0,
			"ae_ranges_in_sync": 12, "ae_ranges_total": 12, "bytes_repaired": 0, "keys_repaired": 0},
		{"name": "n3", "state": StateSuspect, "status": StatusLeaving, "error": "ask n3: connection refused"},
		{"name": evil, "state": StateAlive, "status": StatusJoining, "keys": 0, "hints_pending": 0,
			"ae_ranges_in_sync": 0, "ae_ranges_total": 4, "bytes_repaired": 0, "keys_repaired": 0},
	}}
	var noCluster atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ui":
			(*Node)(nil).handleUI(w, r) // the real page and headers (CSP)
		case "/v1/ring":
			if r.URL.Query().Get("arcs") != "1" {
				writeError(w, http.StatusBadRequest, "the page asks for arcs")
				return
			}
			writeJSON(w, 200, withArcs(info, cur, next))
		case "/v1/members":
			writeJSON(w, 200, members)
		case "/v1/health":
			writeJSON(w, 200, map[string]any{"status": "ok", "name": "n1"})
		case "/v1/cluster":
			if noCluster.Load() {
				writeError(w, http.StatusNotFound, "no such endpoint")
				return
			}
			writeJSON(w, 200, cluster)
		default:
			writeError(w, http.StatusNotFound, "no such endpoint")
		}
	}))
	t.Cleanup(srv.Close)
	d := openUI(t, srv.URL+"/ui", func(url, text string) bool {
		return noCluster.Load() && strings.HasSuffix(url, "/v1/cluster") && strings.Contains(text, "404")
	})

	row := func(s uiSnapshot, name string) []string {
		for _, r := range s.Rows {
			if r.Node == name {
				return r.Cells
			}
		}
		return nil
	}
	s := d.wait(20*time.Second, "five rows and both rings", func(s uiSnapshot) error {
		if len(s.Rows) != 5 || len(row(s, "n1")) < 10 || row(s, "n1")[5] != "12,345" {
			return fmt.Errorf("rows %+v", s.Rows)
		}
		if cs, err := s.shares("current"); err != nil || len(cs) != 3 {
			return fmt.Errorf("current ring: %v %v", cs, err)
		}
		if ns, err := s.shares("next"); err != nil || len(ns) != 3 {
			return fmt.Errorf("next ring: %v %v", ns, err)
		}
		return nil
	})
	byName := func(own map[ring.NodeID]float64) map[string]float64 {
		out := map[string]float64{}
		for name, id := range ids {
			if o, ok := own[id]; ok {
				out[name] = o
			}
		}
		return out
	}
	checkShares(t, s, "current", byName(curOwn))
	checkShares(t, s, "next", byName(nextOwn))

	// Markup in names and zones is text.
	if n := eval[int](d, `document.querySelectorAll('img, [onerror], tbody b, #legend b, svg b').length`); n != 0 {
		t.Fatalf("the page made %d elements out of a node's name or zone", n)
	}
	if title := eval[string](d, `document.title`); strings.Contains(title, "pwned") || !strings.Contains(title, "n1") {
		t.Fatalf("document.title %q", title)
	}
	if c := row(s, evil); c == nil || c[0] != evil || c[3] != "<b>z</b>" {
		t.Fatalf("row of the node with markup in its name: %q", c)
	}

	// Each column shows what the sources say.
	want := map[string][]string{ // a regexp per column: Node, State, Status, Zone, Ownership, Keys, Hints, AE, Last, Repaired
		"n1":  {`^n1this node$`, `^alive$`, `^member$`, `^z1$`, `^\d+\.\d % → \d+\.\d %$`, `^12,345$`, `^2$`, `^10 / 12$`, `^\d+ s ago$`, `^1\.5 MiB$`},
		"n2":  {`^n2$`, `^alive$`, `^member$`, `^z2$`, `% → `, `^12,001$`, `^0$`, `^12 / 12$`, `^never$`, `^0 B$`},
		"n3":  {`^n3!$`, `^suspect$`, `^leaving$`, `^z3$`, `% → 0\.0 %$`, `^-$`, `^-$`, `^-$`, `^-$`, `^-$`},
		evil:  {``, `^alive$`, `^joining$`, ``, `^0\.0 % → `, `^0$`, `^0$`, `^0 / 4$`, `^never$`, `^0 B$`},
		"old": {`^old$`, `^left$`, `^left$`, `^-$`, `^-$`, `^-$`, `^-$`, `^-$`, `^-$`, `^-$`},
	}
	for name, res := range want {
		cells := row(s, name)
		if len(cells) != len(res) {
			t.Fatalf("row %q: %q", name, cells)
		}
		for i, re := range res {
			if !regexp.MustCompile(re).MatchString(cells[i]) {
				t.Errorf("row %q column %d: %q, want %s", name, i, cells[i], re)
			}
		}
	}
	for _, r := range s.Rows {
		if (r.Node == "n3") != (r.Warn != "") || r.Node == "n3" && !strings.Contains(r.Warn, "connection refused") {
			t.Errorf("row %q: warning %q", r.Node, r.Warn)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if m := eval[string](d, `document.getElementById('center-moving').textContent`); !strings.Contains(m, "moving") {
		t.Fatalf("no word of the move in the ring's centre: %q", m)
	}
	if h := eval[string](d, `document.getElementById('ring-hint').textContent`); !strings.Contains(h, "inner ring") {
		t.Fatalf("the legend does not say what the inner ring is: %q", h)
	}
	d.noErrors()
	d.shoot("rumor-ui-moving.png")

	// Without /v1/cluster the statistics columns show "-".
	noCluster.Store(true)
	d.wait(10*time.Second, "statistics gone with /v1/cluster", func(s uiSnapshot) error {
		for _, r := range s.Rows {
			for i := 5; i < len(r.Cells); i++ {
				if r.Cells[i] != "-" {
					return fmt.Errorf("row %q column %d: %q", r.Node, i, r.Cells[i])
				}
			}
		}
		if len(s.Rows) != 5 {
			return fmt.Errorf("%d rows", len(s.Rows))
		}
		return nil
	})
	if note := eval[string](d, `document.getElementById('cluster-note').textContent`); !strings.Contains(note, "/v1/cluster") {
		t.Fatalf("cluster note %q", note)
	}
	d.noErrors()
}

// The web view of a node with tokens: the page itself loads without one,
// asks for a token when the node answers 401, says so when the node
// refuses the one given, and draws the cluster once given a good one
// (read-only is enough), which it keeps for the tab (sessionStorage, not
// the URL) across a reload.
func TestUIChromiumToken(t *testing.T) {
	if _, ok := findChromium(); !ok {
		t.Skip("chromium not installed: apt-get install chromium")
	}
	nodes := startCluster(t, 2, func(c *Config) { c.Tokens = testTokens() })
	if _, err := nodes[0].Put(bg, []byte("k"), []byte("v"), &WriteOptions{W: All}); err != nil {
		t.Fatal(err)
	}
	// The browser reports every 401 answer as a console error.
	d := openUI(t, "http://"+nodes[0].HTTPAddr()+"/ui", func(url, text string) bool {
		return strings.Contains(text, "401")
	})
	type authState struct {
		Hidden bool
		Note   string
		Stored string
		URL    string
	}
	const authJS = `(() => ({Hidden: document.getElementById('auth').hidden,
  Note: document.getElementById('auth-note').textContent,
  Stored: sessionStorage.getItem('rumor-token') || '', URL: location.href}))()`
	waitAuth := func(what string, ok func(a authState) bool) authState {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			a := eval[authState](d, authJS)
			if ok(a) {
				return a
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 15 s: %+v", what, a)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	submit := func(tok string) {
		t.Helper()
		if err := chromedp.Do(d.ctx, chromedp.SendKeys(chromedp.CSS("#token"), tok),
			chromedp.Click(chromedp.CSS("#auth button[type=submit]"))); err != nil {
			t.Fatalf("fill the token form: %v", err)
		}
	}
	drawn := func(s uiSnapshot) error {
		st := s.states()
		if len(s.Rows) != 2 || st["n1"] != StateAlive || st["n2"] != StateAlive || len(s.Arcs) == 0 {
			return fmt.Errorf("rows %+v, %d arcs", s.Rows, len(s.Arcs))
		}
		for _, r := range s.Rows {
			if r.Cells[5] != "1" { // keys, from /v1/cluster
				return fmt.Errorf("row %s: %q", r.Node, r.Cells)
			}
		}
		return nil
	}

	waitAuth("the token form", func(a authState) bool { return !a.Hidden })
	if s := d.snapshot(); len(s.Arcs) != 0 || len(s.Rows) != 0 || s.Banner != "" {
		t.Fatalf("without a token the page shows %d arcs, rows %+v, banner %q", len(s.Arcs), s.Rows, s.Banner)
	}
	d.shoot("rumor-ui-token.png")

	submit("not-a-token-of-this-cluster")
	a := waitAuth("the refused token said so", func(a authState) bool {
		return !a.Hidden && strings.Contains(a.Note, "did not accept")
	})
	if a.Stored != "" {
		t.Fatalf("a refused token is kept: %+v", a)
	}

	submit(roSecret)
	d.wait(20*time.Second, "the cluster drawn with the read-only token", drawn)
	a = waitAuth("the form gone", func(a authState) bool { return a.Hidden })
	if a.Stored != roSecret || strings.Contains(a.URL, roSecret) || strings.Contains(a.URL, "token") {
		t.Fatalf("token kept as %q, page at %q", a.Stored, a.URL)
	}
	if got := deniedCounts(t, nodes[0].Node); got["missing"] < 1 || got["unknown"] < 1 || got["read_only"] != 0 {
		t.Fatalf("denials %v", got)
	}
	d.noErrors()

	// A reload keeps the token: no form, the cluster at once.
	if err := chromedp.Do(d.ctx, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	d.wait(20*time.Second, "the cluster drawn after a reload", drawn)
	if a := eval[authState](d, authJS); !a.Hidden {
		t.Fatalf("the form is back after a reload: %+v", a)
	}
	missing := deniedCounts(t, nodes[0].Node)["missing"]
	time.Sleep(2500 * time.Millisecond) // a refresh or more
	if got := deniedCounts(t, nodes[0].Node)["missing"]; got != missing {
		t.Fatalf("requests without the token after the reload: %v denials, were %v", got, missing)
	}
	d.noErrors()
}
