package node

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/rumorkv/rumor/ring"
)

// ContextHeader carries the opaque causal context on client requests and
// responses.
const ContextHeader = "X-Rumor-Context"

const (
	kvPrefix    = "/v1/kv/"
	statePrefix = "/v1/state/"
)

// keyFromPath takes the key from the escaped path after prefix.
func keyFromPath(r *http.Request, prefix string) ([]byte, error) {
	k, err := url.PathUnescape(strings.TrimPrefix(r.URL.EscapedPath(), prefix))
	if err != nil {
		return nil, fmt.Errorf("bad key escaping: %v", err)
	}
	if k == "" {
		return nil, errors.New("empty key")
	}
	return []byte(k), nil
}

// handleState serves GET /v1/state/{key}: this node's own copy of the key
// as its encoded state (crdt's canonical binary encoding; equal states have
// equal bytes), for tools and benchmarks that compare replicas. 404 if the
// node holds no copy.
func (n *Node) handleState(w http.ResponseWriter, r *http.Request) {
	key, err := keyFromPath(r, statePrefix)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	b, ok, err := n.store.Get(key)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if !ok {
		writeError(w, http.StatusNotFound, "no copy on this node")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	_, _ = w.Write(b)
}

func (n *Node) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/members", n.handleMembers)
	mux.HandleFunc("GET /v1/ring", n.handleRing)
	mux.HandleFunc("GET /v1/health", n.handleHealth)
	mux.HandleFunc("GET /v1/status", n.handleStatus)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Keys are taken from the escaped path by hand: ServeMux would
		// clean "a//b" or "x/../y" and redirect, which changes the key.
		if strings.HasPrefix(r.URL.Path, kvPrefix) {
			n.handleKV(w, r)
			return
		}
		if strings.HasPrefix(r.URL.Path, statePrefix) && r.Method == http.MethodGet {
			n.handleState(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

type errorBody struct {
	Error   string `json:"error"`
	Context string `json:"context,omitempty"`
}

// writeJSON writes v indented, for documents people read (status,
// members, ring, errors).
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeCompactJSON writes v on one line, for the key-value hot path.
func writeCompactJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

// statusFor maps request errors to HTTP status codes.
func statusFor(err error) int {
	switch {
	case errors.Is(err, ErrKeyTooLarge), errors.Is(err, ErrValueTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrBadContext), errors.Is(err, ErrBadKey):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrClosed):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

func (n *Node) handleKV(w http.ResponseWriter, r *http.Request) {
	key, err := keyFromPath(r, kvPrefix)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(key) > n.cfg.MaxKeySize {
		writeError(w, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("key is %d bytes; the limit is %d", len(key), n.cfg.MaxKeySize))
		return
	}
	q := r.URL.Query()
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		n.handleGet(w, r, key, q)
	case http.MethodPut, http.MethodPost:
		n.handleWrite(w, r, key, q, false)
	case http.MethodDelete:
		n.handleWrite(w, r, key, q, true)
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT, POST, DELETE")
		writeError(w, http.StatusMethodNotAllowed, "method not allowed")
	}
}

// writeBody is the JSON answer to a write.
type writeBody struct {
	Context string `json:"context"`
}

// GetBody is the JSON form of a read.
type GetBody struct {
	Values []string `json:"values"`
	// Encoding is "base64" when some value is not valid UTF-8 (then every
	// value is base64, standard encoding); absent otherwise.
	Encoding string `json:"encoding,omitempty"`
	Context  string `json:"context"`
}

func (n *Node) handleGet(w http.ResponseWriter, r *http.Request, key []byte, q url.Values) {
	rc, err := ParseConsistency(q.Get("r"))
	if err != nil || rc == Primary {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("bad r=%q: want 1, 2, …, quorum or all", q.Get("r")))
		return
	}
	local := q.Get("local") == "1" || q.Get("local") == "true"
	res, err := n.Get(r.Context(), key, &ReadOptions{R: rc, Local: local})
	if res != nil {
		w.Header().Set(ContextHeader, res.Context)
	}
	if errors.Is(err, ErrNotFound) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "not found", Context: res.Context})
		return
	}
	if err != nil {
		writeError(w, statusFor(err), err.Error())
		return
	}
	wantJSON := strings.Contains(r.Header.Get("Accept"), "application/json")
	if len(res.Siblings) == 1 && !wantJSON {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(res.Siblings[0].Value)
		}
		return
	}
	body := GetBody{Context: res.Context, Values: make([]string, len(res.Siblings))}
	for _, s := range res.Siblings {
		if !utf8.Valid(s.Value) {
			body.Encoding = "base64"
		}
	}
	for i, s := range res.Siblings {
		if body.Encoding == "base64" {
			body.Values[i] = base64.StdEncoding.EncodeToString(s.Value)
		} else {
			body.Values[i] = string(s.Value)
		}
	}
	status := http.StatusOK
	if len(res.Siblings) > 1 {
		status = http.StatusMultipleChoices
	}
	writeCompactJSON(w, status, body)
}

func (n *Node) handleWrite(w http.ResponseWriter, r *http.Request, key []byte, q url.Values, del bool) {
	wc, err := ParseConsistency(q.Get("w"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("bad w=%q: want 1, 2, …, quorum, all or primary", q.Get("w")))
		return
	}
	opts := &WriteOptions{Context: r.Header.Get(ContextHeader), W: wc}
	var ctxOut string
	if del {
		ctxOut, err = n.Delete(r.Context(), key, opts)
	} else {
		if r.ContentLength > int64(n.cfg.MaxValueSize) {
			writeError(w, http.StatusRequestEntityTooLarge,
				fmt.Sprintf("value is %d bytes; the limit is %d", r.ContentLength, n.cfg.MaxValueSize))
			return
		}
		body, rerr := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(n.cfg.MaxValueSize)))
		if rerr != nil {
			var mbe *http.MaxBytesError
			if errors.As(rerr, &mbe) {
				writeError(w, http.StatusRequestEntityTooLarge,
					fmt.Sprintf("value exceeds the limit of %d bytes", n.cfg.MaxValueSize))
				return
			}
			writeError(w, http.StatusBadRequest, fmt.Sprintf("read body: %v", rerr))
			return
		}
		ctxOut, err = n.Put(r.Context(), key, body, opts)
	}
	if err != nil {
		writeError(w, statusFor(err), err.Error())
		return
	}
	w.Header().Set(ContextHeader, ctxOut)
	writeCompactJSON(w, http.StatusOK, writeBody{Context: ctxOut})
}

// MemberInfo describes one member as the client API reports it.
type MemberInfo struct {
	Name   string `json:"name"`
	ID     string `json:"id"`
	State  string `json:"state"`
	Gossip string `json:"gossip_addr"`
	RPC    string `json:"rpc_addr"`
	HTTP   string `json:"http_addr"`
	Zone   string `json:"zone,omitempty"`
}

// Members lists every member this node knows, with its reachability.
func (n *Node) Members() []MemberInfo {
	var out []MemberInfo
	for _, e := range n.mem.rows() {
		state := StateDead
		switch {
		case e.Status == StatusLeft:
			state = StateLeft
		case n.mem.reachable(e.Name):
			state = StateAlive
		}
		out = append(out, MemberInfo{Name: e.Name, ID: fmt.Sprintf("%016x", e.ID), State: state,
			Gossip: e.Gossip, RPC: e.RPC, HTTP: e.HTTP, Zone: e.Zone})
	}
	return out
}

func (n *Node) handleMembers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.Members())
}

// RingInfo is the client API's view of the ring.
type RingInfo struct {
	N       int              `json:"n"`
	VNodes  int              `json:"vnodes"`
	Members []RingMemberInfo `json:"members"`
}

// RingMemberInfo is one ring member and the share of the hash space it owns
// as primary.
type RingMemberInfo struct {
	Name      string  `json:"name"`
	ID        string  `json:"id"`
	Zone      string  `json:"zone,omitempty"`
	State     string  `json:"state"`
	Ownership float64 `json:"ownership"`
}

// Ring describes the current ring.
func (n *Node) Ring() RingInfo {
	v := n.view.Load()
	own := v.ring.Ownership()
	info := RingInfo{N: n.cfg.N, VNodes: v.ring.VNodes()}
	for _, m := range v.ring.Members() {
		e := v.byID[uint64(m.ID)]
		state := StateDead
		if n.mem.reachable(e.Name) {
			state = StateAlive
		}
		info.Members = append(info.Members, RingMemberInfo{Name: e.Name, ID: fmt.Sprintf("%016x", e.ID),
			Zone: e.Zone, State: state, Ownership: own[ring.NodeID(m.ID)]})
	}
	sort.Slice(info.Members, func(i, j int) bool { return info.Members[i].Name < info.Members[j].Name })
	return info
}

func (n *Node) handleRing(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.Ring())
}

func (n *Node) handleHealth(w http.ResponseWriter, r *http.Request) {
	alive := 0
	for _, m := range n.Members() {
		if m.State == StateAlive {
			alive++
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"status": "ok", "name": n.cfg.Name, "id": fmt.Sprintf("%016x", n.id), "members": alive,
	})
}

// Metrics is a snapshot of the node's counters.
type Metrics struct {
	Writes          uint64         `json:"writes"`
	Reads           uint64         `json:"reads"`
	Forwarded       uint64         `json:"forwarded"`
	Replicated      uint64         `json:"replicated"`
	HintsStored     uint64         `json:"hints_stored"`
	HintsDelivered  uint64         `json:"hints_delivered"`
	HintBytes       uint64         `json:"hint_bytes"` // bytes sent handing off hints
	HintsPending    map[string]int `json:"hints_pending"`
	ReadRepairs     uint64         `json:"read_repairs"`
	SiblingWarnings uint64         `json:"sibling_warnings"`
}

// Metrics returns a snapshot of the node's counters.
func (n *Node) Metrics() Metrics {
	m := Metrics{
		Writes:          n.metrics.writes.Load(),
		Reads:           n.metrics.reads.Load(),
		Forwarded:       n.metrics.forwarded.Load(),
		Replicated:      n.metrics.replicated.Load(),
		HintsStored:     n.metrics.hintsStored.Load(),
		HintsDelivered:  n.metrics.hintsDelivered.Load(),
		HintBytes:       n.metrics.hintBytes.Load(),
		ReadRepairs:     n.metrics.readRepairs.Load(),
		SiblingWarnings: n.metrics.siblingWarnings.Load(),
		HintsPending:    map[string]int{},
	}
	if targets, err := n.store.HintTargets(); err == nil {
		v := n.view.Load()
		for t, c := range targets {
			name := fmt.Sprintf("%016x", t)
			if e, ok := v.byID[t]; ok {
				name = e.Name
			}
			m.HintsPending[name] = c
		}
	}
	return m
}

func (n *Node) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"name": n.cfg.Name, "id": fmt.Sprintf("%016x", n.id), "metrics": n.Metrics(),
		"antientropy": n.AntiEntropy(), "process": processStatus(),
	})
}

// ProcessStatus is what /v1/status reports about the process a node runs
// in (with several nodes in one process, they all report the same).
type ProcessStatus struct {
	CPUSeconds float64 `json:"cpu_seconds"`
	Goroutines int     `json:"goroutines"`
	HeapBytes  uint64  `json:"heap_bytes"`
}

func processStatus() ProcessStatus {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ProcessStatus{CPUSeconds: cpu.Seconds(), Goroutines: runtime.NumGoroutine(), HeapBytes: ms.HeapAlloc}
}
