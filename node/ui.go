package node

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/rumorkv/rumor/ring"
)

// uiPage is the web view served at /ui: one self-contained page (inline
// CSS and script, no external resource) that polls /v1/ring?arcs=1,
// /v1/members and /v1/cluster.
//
//go:embed ui/index.html
var uiPage []byte

// uiCSP is the page's Content-Security-Policy: nothing may load from
// anywhere but this node, and only the page's own inline script and style
// (pinned by their hashes) run.
var uiCSP = func() string {
	hashes := func(tag string) string {
		re := regexp.MustCompile(`(?s)<` + tag + `>(.*?)</` + tag + `>`)
		var out []string
		for _, m := range re.FindAllSubmatch(uiPage, -1) {
			sum := sha256.Sum256(m[1])
			out = append(out, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
		}
		return strings.Join(out, " ")
	}
	return "default-src 'none'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; " +
		"frame-ancestors 'none'; script-src " + hashes("script") + "; style-src " + hashes("style")
}()

// handleUI serves GET /ui and /ui/: the web view.
func (n *Node) handleUI(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Security-Policy", uiCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(uiPage)
	}
}

// RingArcsInfo is /v1/ring?arcs=1: RingInfo with each member's arcs.
type RingArcsInfo struct {
	RingInfo
	// Members is RingInfo.Members with arcs; in JSON it takes the place
	// of the embedded field.
	Members []RingMemberArcs `json:"members"`
}

// RingMemberArcs is a ring member with the parts of the hash space it owns
// as primary, as [start, end) fractions of the space in [0, 1], ordered
// from 0, adjacent ranges merged (an arc that wraps past 0 is split there).
// Arcs is for the current ring (empty for a joining member), NextArcs for
// the next ring, present only while the ring is moving (empty for a
// leaving member).
type RingMemberArcs struct {
	RingMemberInfo
	Arcs     [][2]float64 `json:"arcs"`
	NextArcs [][2]float64 `json:"next_arcs,omitzero"`
}

// RingArcs describes the ring like Ring, with every member's arcs.
func (n *Node) RingArcs() RingArcsInfo {
	// Ring loads the view itself: take the arcs from the view it used, the
	// one current both before and after the call (views are never reused).
	// Should the view keep changing, the last one is taken: the arcs and
	// the rest then disagree for one answer.
	v := n.view.Load()
	info := n.Ring()
	for range 10 {
		w := n.view.Load()
		if w == v {
			break
		}
		v, info = w, n.Ring()
	}
	return withArcs(info, v.ring, v.next)
}

// withArcs adds to info the members' arcs in cur and, while info.Moving,
// in next.
func withArcs(info RingInfo, cur, next *ring.Ring) RingArcsInfo {
	fractions := func(as []ring.Arc) [][2]float64 {
		out := make([][2]float64, len(as))
		for i, a := range as {
			out[i] = [2]float64{float64(a.Lo) / (1 << ring.LeafBits), float64(a.Hi) / (1 << ring.LeafBits)}
		}
		return out
	}
	curArcs := cur.Arcs()
	var nextArcs map[ring.NodeID][]ring.Arc
	if info.Moving {
		nextArcs = next.Arcs()
	}
	out := RingArcsInfo{RingInfo: info, Members: make([]RingMemberArcs, 0, len(info.Members))}
	for _, m := range info.Members {
		ma := RingMemberArcs{RingMemberInfo: m, Arcs: [][2]float64{}}
		id, err := strconv.ParseUint(m.ID, 16, 64)
		if err == nil {
			ma.Arcs = fractions(curArcs[ring.NodeID(id)])
		}
		if info.Moving {
			ma.NextArcs = [][2]float64{}
			if err == nil {
				ma.NextArcs = fractions(nextArcs[ring.NodeID(id)])
			}
		}
		out.Members = append(out.Members, ma)
	}
	return out
}

// handleRingArcs serves /v1/ring: with ?arcs=1 (or true) RingArcs, else
// handleRing's answer unchanged. The arcs answer carries an ETag, so a
// poller revalidating it (the web view) gets 304 while nothing changed.
// It is written on one line: with the default 4096 vnodes it is some
// 8000 arcs for 3 nodes, about 330 KB.
func (n *Node) handleRingArcs(w http.ResponseWriter, r *http.Request) {
	if a := r.URL.Query().Get("arcs"); a != "1" && a != "true" {
		n.handleRing(w, r)
		return
	}
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(n.RingArcs()); err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("encode ring: %v", err))
		return
	}
	etag := fmt.Sprintf(`"%016x"`, xxhash.Sum64(buf.Bytes()))
	h := w.Header()
	h.Set("ETag", etag)
	h.Set("Cache-Control", "no-cache")
	if etagMatch(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// etagMatch reports whether an If-None-Match header names etag (weak
// comparison, as RFC 9110 asks for If-None-Match).
func etagMatch(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}
