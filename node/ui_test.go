package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/rumorkv/rumor/ring"
)

// checkArcs checks that the arcs of all members partition [0, 1) and that
// each member's arcs add up to own[member].
func checkArcs(t *testing.T, what string, arcs map[string][][2]float64, own map[string]float64) {
	t.Helper()
	type arc struct {
		lo, hi float64
		name   string
	}
	var all []arc
	for name, as := range arcs {
		sum := 0.0
		for i, a := range as {
			if !(a[0] >= 0 && a[0] < a[1] && a[1] <= 1) {
				t.Fatalf("%s: %s arc %d is %v", what, name, i, a)
			}
			if i > 0 && a[0] <= as[i-1][1] {
				t.Fatalf("%s: %s arcs %v and %v touch or are out of order", what, name, as[i-1], a)
			}
			sum += a[1] - a[0]
			all = append(all, arc{a[0], a[1], name})
		}
		if math.Abs(sum-own[name]) > 1e-12 {
			t.Fatalf("%s: %s arcs add up to %v, ownership %v", what, name, sum, own[name])
		}
	}
	for name, o := range own {
		if _, ok := arcs[name]; !ok && o > 0 {
			t.Fatalf("%s: %s owns %v but has no arcs", what, name, o)
		}
	}
	if len(all) == 0 {
		t.Fatalf("%s: no arcs", what)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].lo < all[j].lo })
	if all[0].lo != 0 || all[len(all)-1].hi != 1 {
		t.Fatalf("%s: arcs span [%v, %v), not [0, 1)", what, all[0].lo, all[len(all)-1].hi)
	}
	for i := 1; i < len(all); i++ {
		if all[i].lo != all[i-1].hi {
			t.Fatalf("%s: arc [%v, %v) of %s follows one ending at %v", what, all[i].lo, all[i].hi, all[i].name, all[i-1].hi)
		}
	}
}

// externalRef finds what in a page could make a browser fetch something:
// absolute URLs, src/href attributes other than data: URLs, CSS url() and
// @import.
var externalRef = regexp.MustCompile(`(?i)https?:|//[a-z0-9.-]+\.[a-z]|\b(src|href|action)\s*=\s*["']?[^"'\s>]*|url\(|@import`)

// The web view is one self-contained page, and /v1/ring?arcs=1 gives arcs
// that partition the circle; without ?arcs=1 /v1/ring is unchanged.
func TestUIPage(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	base := "http://" + nodes[0].HTTPAddr()
	get := func(method, path string, hdr ...string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s: read: %v", method, path, err)
		}
		return resp, b
	}

	for _, p := range []string{"/ui", "/ui/"} {
		resp, page := get("GET", p)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("GET %s: %d %s", p, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if !bytes.Equal(page, uiPage) || !bytes.Contains(page, []byte("<svg")) || !bytes.Contains(page, []byte("/v1/ring?arcs=1")) {
			t.Fatalf("GET %s: not the web view (%d bytes)", p, len(page))
		}
		// The only src/href is the empty data: favicon, which keeps the
		// browser from asking for /favicon.ico.
		for _, m := range externalRef.FindAll(page, -1) {
			if string(m) != `href="data:,` {
				t.Errorf("GET %s: page refers to something outside itself: %q", p, m)
			}
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'none'") || strings.Count(csp, "'sha256-") != 2 {
			t.Errorf("GET %s: Content-Security-Policy %q", p, csp)
		}
	}
	if resp, b := get("HEAD", "/ui"); resp.StatusCode != 200 || len(b) != 0 {
		t.Fatalf("HEAD /ui: %d, %d bytes", resp.StatusCode, len(b))
	}
	if resp, _ := get("POST", "/ui"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /ui: %d", resp.StatusCode)
	}
	if resp, _ := get("GET", "/ui/other"); resp.StatusCode != 404 {
		t.Fatalf("GET /ui/other: %d", resp.StatusCode)
	}

	// Without ?arcs=1: the fields of before, no arcs.
	resp, b := get("GET", "/v1/ring")
	if resp.StatusCode != 200 || bytes.Contains(b, []byte("arcs")) {
		t.Fatalf("GET /v1/ring: %d %s", resp.StatusCode, b)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var plain RingInfo
	if err := dec.Decode(&plain); err != nil || len(plain.Members) != 3 {
		t.Fatalf("GET /v1/ring does not decode strictly as RingInfo: %v %s", err, b)
	}

	resp, b = get("GET", "/v1/ring?arcs=1")
	if resp.StatusCode != 200 || resp.Header.Get("ETag") == "" {
		t.Fatalf("GET /v1/ring?arcs=1: %d %v", resp.StatusCode, resp.Header)
	}
	if bytes.Contains(b, []byte("next_arcs")) {
		t.Fatalf("next_arcs while the ring is not moving: %s", b)
	}
	var info RingArcsInfo
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatalf("decode arcs: %v", err)
	}
	arcs, own := map[string][][2]float64{}, map[string]float64{}
	for _, m := range info.Members {
		arcs[m.Name], own[m.Name] = m.Arcs, m.Ownership
	}
	if len(arcs) != 3 || info.Moving {
		t.Fatalf("want 3 members, not moving: %+v", info.RingInfo)
	}
	checkArcs(t, "/v1/ring?arcs=1", arcs, own)
	// The arcs are the ring's own: the owner of each arc's middle.
	r := nodes[0].view.Load().ring
	for _, m := range info.Members {
		for _, a := range m.Arcs {
			h := uint64(math.Ldexp((a[0]+a[1])/2, 64))
			if got := fmt.Sprintf("%016x", r.Owner(h)); got != m.ID {
				t.Fatalf("arc %v of %s (%s): Owner(%#x) = %s", a, m.Name, m.ID, h, got)
			}
		}
	}
	// Revalidation: 304 while nothing changed.
	if resp, b := get("GET", "/v1/ring?arcs=1", "If-None-Match", resp.Header.Get("ETag")); resp.StatusCode != http.StatusNotModified || len(b) != 0 {
		t.Fatalf("GET /v1/ring?arcs=1 with its ETag: %d, %d bytes", resp.StatusCode, len(b))
	}
	if resp, _ := get("GET", "/v1/ring?arcs=1", "If-None-Match", `"0000000000000000"`); resp.StatusCode != 200 {
		t.Fatalf("GET /v1/ring?arcs=1 with another ETag: %d", resp.StatusCode)
	}
}

// While the ring moves, next_arcs describes the next ring: present for
// every member, empty for a leaving one, and arcs is empty for a joining
// one.
func TestRingArcsMoving(t *testing.T) {
	ms := []ring.Member{{ID: 0x1111}, {ID: 0x2222}, {ID: 0x3333}, {ID: 0x4444}}
	cur, next := ring.New(ms[:3], 64), ring.New([]ring.Member{ms[0], ms[1], ms[3]}, 64)
	names := []string{"a", "b", "leaving", "joining"}
	info := RingInfo{N: 3, VNodes: 64, Moving: true}
	curOwn, nextOwn := cur.Ownership(), next.Ownership()
	for i, m := range ms {
		info.Members = append(info.Members, RingMemberInfo{Name: names[i], ID: fmt.Sprintf("%016x", m.ID),
			Ownership: curOwn[m.ID], NextOwnership: nextOwn[m.ID]})
	}
	b, err := json.Marshal(withArcs(info, cur, next))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Moving  bool `json:"moving"`
		Members []struct {
			Name          string        `json:"name"`
			Ownership     float64       `json:"ownership"`
			NextOwnership float64       `json:"next_ownership"`
			Arcs          [][2]float64  `json:"arcs"`
			NextArcs      *[][2]float64 `json:"next_arcs"`
		} `json:"members"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	arcs, own, nextArcs, nextOwnership := map[string][][2]float64{}, map[string]float64{}, map[string][][2]float64{}, map[string]float64{}
	for _, m := range got.Members {
		if m.NextArcs == nil {
			t.Fatalf("%s has no next_arcs while moving: %s", m.Name, b)
		}
		if len(m.Arcs) > 0 {
			arcs[m.Name] = m.Arcs
		}
		if len(*m.NextArcs) > 0 {
			nextArcs[m.Name] = *m.NextArcs
		}
		own[m.Name], nextOwnership[m.Name] = m.Ownership, m.NextOwnership
	}
	if _, ok := arcs["joining"]; ok {
		t.Fatalf("joining member has arcs in the current ring: %v", arcs["joining"])
	}
	if _, ok := nextArcs["leaving"]; ok {
		t.Fatalf("leaving member has arcs in the next ring: %v", nextArcs["leaving"])
	}
	checkArcs(t, "current", arcs, own)
	checkArcs(t, "next", nextArcs, nextOwnership)

	info.Moving = false
	b, _ = json.Marshal(withArcs(info, cur, cur))
	if bytes.Contains(b, []byte("next_arcs")) {
		t.Fatalf("next_arcs while not moving: %s", b)
	}
}
