package node

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/rumorkv/rumor/crdt"
	"github.com/rumorkv/rumor/node/storage"
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
	_, _ = w.Write(stateOf(b))
}

func (n *Node) httpHandler() http.Handler {
	routes := map[string]http.HandlerFunc{
		"/v1/members": n.handleMembers,
		"/v1/ring":    n.handleRingArcs, // handleRing unless ?arcs=1
		healthPath:    n.handleHealth,
		"/v1/status":  n.handleStatus,
		"/v1/cluster": n.handleCluster,
		"/ui":         n.handleUI,
		"/ui/":        n.handleUI,
		metricsPath:   n.handleMetrics,
	}
	return n.guardHTTP(func(w http.ResponseWriter, r *http.Request) {
		// Routing is by hand, not with ServeMux: keys are taken from the
		// escaped path (ServeMux would clean "a//b" or "x/../y" and
		// redirect, which changes the key), and every answer, 404 and 405
		// included, is JSON.
		h, ok := routes[r.URL.Path]
		switch {
		case strings.HasPrefix(r.URL.Path, kvPrefix):
			n.handleKV(w, r)
			return
		case strings.HasPrefix(r.URL.Path, statePrefix):
			h, ok = n.handleState, true
		case r.URL.Path == keyringPath || strings.HasPrefix(r.URL.Path, keyringPath+"/"):
			n.handleKeyring(w, r) // GET lists; POST install, use, remove (keyring.go)
			return
		case r.URL.Path == "/v1/leave" || strings.HasPrefix(r.URL.Path, removePrefix):
			if r.Method != http.MethodPost {
				w.Header().Set("Allow", "POST")
				writeError(w, http.StatusMethodNotAllowed, "method not allowed: use POST")
				return
			}
			if r.URL.Path == "/v1/leave" {
				n.handleLeave(w, r)
			} else {
				n.handleRemove(w, r)
			}
			return
		}
		if !ok {
			writeError(w, http.StatusNotFound, "no such endpoint")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		h(w, r)
	})
}

const healthPath = "/v1/health"

// guardHTTP wraps every client request: a panic is answered 500 instead of
// dropping the connection, a request without the token it needs is answered
// 401 or 403 (when the node has tokens), requests past MaxInFlightRequests
// are answered 503, and a request with a body is answered with "Connection: close" until
// its handler has read the whole body (handleWrite lifts it), so net/http
// never reads a body after the handler without the body's deadline.
func (n *Node) guardHTTP(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				n.log.Error("client API handler panicked", "method", r.Method, "path", r.URL.Path,
					"panic", v, "stack", string(debug.Stack()))
				w.Header().Set("Connection", "close")
				writeError(w, http.StatusInternalServerError, "internal error")
			}
		}()
		if r.ContentLength != 0 {
			w.Header().Set("Connection", "close")
		}
		if !n.authorize(w, r) { // auth.go
			return
		}
		if r.URL.Path != healthPath && r.URL.Path != metricsPath {
			select {
			case n.httpLim.inflight <- struct{}{}:
				defer func() { <-n.httpLim.inflight }()
			default:
				n.writeOverloaded(w, "overloaded")
				return
			}
		}
		next(w, r)
	})
}

// writeOverloaded answers 503 with Retry-After.
func (n *Node) writeOverloaded(w http.ResponseWriter, msg string) {
	n.httpLim.overloaded.Add(1)
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusServiceUnavailable, msg)
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
	case errors.Is(err, storage.ErrDiskFull), errors.Is(err, syscall.ENOSPC):
		return http.StatusInsufficientStorage
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
	// Everything that can be refused is refused before the body is read.
	wc, err := ParseConsistency(q.Get("w"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("bad w=%q: want 1, 2, …, quorum, all or primary", q.Get("w")))
		return
	}
	opts := &WriteOptions{Context: r.Header.Get(ContextHeader), W: wc}
	if _, err := crdt.DecodeContext(opts.Context, n.cfg.MaxContextEntries); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("bad %s header: %v", ContextHeader, err))
		return
	}
	var ctxOut string
	if del {
		ctxOut, err = n.Delete(r.Context(), key, opts)
	} else {
		body, release, ok := n.readValue(w, r)
		if !ok {
			return
		}
		defer release()
		ctxOut, err = n.Put(r.Context(), key, body, opts)
	}
	if err != nil {
		writeError(w, statusFor(err), err.Error())
		return
	}
	w.Header().Set(ContextHeader, ctxOut)
	writeCompactJSON(w, http.StatusOK, writeBody{Context: ctxOut})
}

// readValue reads a PUT body under the body deadline (see limits.go) and
// the memory budget. It answers the client itself when it fails.
func (n *Node) readValue(w http.ResponseWriter, r *http.Request) (body []byte, release func(), ok bool) {
	limit := n.cfg.MaxValueSize
	if r.ContentLength > int64(limit) {
		writeError(w, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("value is %d bytes; the limit is %d", r.ContentLength, limit))
		return nil, nil, false
	}
	return n.readLimitedBody(w, r, limit, "value")
}

// readLimitedBody reads a request body of at most limit bytes (what names
// it in the answer) under the body deadline and the memory budget; the
// caller calls release when done with it. It answers the client itself
// when it fails.
func (n *Node) readLimitedBody(w http.ResponseWriter, r *http.Request, limit int, what string) (body []byte, release func(), ok bool) {
	rc := http.NewResponseController(w)
	br := &bodyReader{r: r.Body, rc: rc, start: time.Now(), base: n.cfg.HTTPBodyTimeout, minRate: n.cfg.HTTPMinBodyRate}
	_ = rc.SetReadDeadline(br.deadline())
	body, reserved, err := readBody(br, r.ContentLength, limit, &n.httpLim.bodies)
	var ne net.Error
	switch {
	case err == nil:
	case errors.Is(err, errBodyTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("%s exceeds the limit of %d bytes", what, limit))
		return nil, nil, false
	case errors.Is(err, errBodyBudget):
		n.writeOverloaded(w, err.Error())
		return nil, nil, false
	case errors.As(err, &ne) && ne.Timeout():
		writeError(w, http.StatusRequestTimeout, fmt.Sprintf("%v: %d bytes in %v; after the first %v a body must keep up %d bytes/s",
			errBodyTooSlow, br.n, time.Since(br.start).Round(time.Millisecond), n.cfg.HTTPBodyTimeout, n.cfg.HTTPMinBodyRate))
		return nil, nil, false
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("read body: %v", err))
		return nil, nil, false
	}
	// The whole body is in: the connection may be reused, no read deadline
	// may cancel the request (net/http's background read would), and the
	// answer gets a full HTTPWriteTimeout however long the upload took.
	w.Header().Del("Connection")
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Now().Add(n.cfg.HTTPWriteTimeout))
	return body, func() { n.httpLim.bodies.give(reserved) }, true
}

// MemberInfo describes one member as the client API reports it.
type MemberInfo struct {
	Name string `json:"name"`
	ID   string `json:"id"`
	// State is reachability: alive, suspect, dead (or left).
	State string `json:"state"`
	// Status is membership: joining (taking its ranges over), member,
	// leaving (handing them over), left.
	Status string `json:"status"`
	Gossip string `json:"gossip_addr"`
	RPC    string `json:"rpc_addr"`
	HTTP   string `json:"http_addr"`
	Zone   string `json:"zone,omitempty"`
}

// Members lists every member this node knows, with its reachability.
func (n *Node) Members() []MemberInfo {
	var out []MemberInfo
	for _, e := range n.mem.rows() {
		state := n.mem.liveness(e.Name)
		if e.Status == StatusLeft {
			state = StateLeft
		}
		out = append(out, MemberInfo{Name: e.Name, ID: fmt.Sprintf("%016x", e.ID), State: state, Status: e.Status,
			Gossip: e.Gossip, RPC: e.RPC, HTTP: e.HTTP, Zone: e.Zone})
	}
	return out
}

func (n *Node) handleMembers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.Members())
}

// RingInfo is the client API's view of the ring.
type RingInfo struct {
	N      int `json:"n"`
	VNodes int `json:"vnodes"`
	// Moving: a node is joining or leaving; ownership changes from
	// Ownership to NextOwnership as its transfers finish.
	Moving  bool             `json:"moving"`
	Members []RingMemberInfo `json:"members"`
}

// RingMemberInfo is one ring member and the share of the hash space it owns
// as primary, now and once transfers finish.
type RingMemberInfo struct {
	Name          string  `json:"name"`
	ID            string  `json:"id"`
	Zone          string  `json:"zone,omitempty"`
	State         string  `json:"state"`
	Status        string  `json:"status"`
	Ownership     float64 `json:"ownership"`
	NextOwnership float64 `json:"next_ownership"`
	// HTTP is the member's client API address ("" if it has none).
	HTTP string `json:"http,omitempty"`
	// RangesGaining and RangesLosing count the contiguous ranges of leaves
	// the member replicates only in the next ring, and only in the
	// current one: the ranges in transfer to and from it.
	RangesGaining int `json:"ranges_gaining"`
	RangesLosing  int `json:"ranges_losing"`
}

// Ring describes the current ring and, while nodes join or leave, the
// next one.
func (n *Node) Ring() RingInfo {
	v := n.view.Load()
	own, next := v.ring.Ownership(), v.next.Ownership()
	info := RingInfo{N: n.cfg.N, VNodes: v.ring.VNodes(), Moving: v.transfer()}
	for id, e := range v.byID {
		_, inCur := own[ring.NodeID(id)]
		_, inNext := next[ring.NodeID(id)]
		if !inCur && !inNext {
			continue
		}
		state := n.mem.liveness(e.Name)
		info.Members = append(info.Members, RingMemberInfo{Name: e.Name, ID: fmt.Sprintf("%016x", e.ID),
			Zone: e.Zone, State: state, Status: e.Status,
			Ownership: own[ring.NodeID(id)], NextOwnership: next[ring.NodeID(id)], HTTP: e.HTTP})
		if v.transfer() {
			m := &info.Members[len(info.Members)-1]
			gaining, losing := v.moving(ring.NodeID(id))
			m.RangesGaining, m.RangesLosing = len(gaining), len(losing)
		}
	}
	sort.Slice(info.Members, func(i, j int) bool { return info.Members[i].Name < info.Members[j].Name })
	return info
}

const removePrefix = "/v1/remove/"

// handleLeave serves POST /v1/leave: this node starts handing its ranges
// over and answers 202 at once; it reports "left" in /v1/status
// (transfer.state) when done, and an agent then exits.
func (n *Node) handleLeave(w http.ResponseWriter, r *http.Request) {
	st := n.mem.selfRow().Status
	if st != StatusLeft {
		n.goroutine(func() {
			if err := n.Leave(n.ctx); err != nil && n.ctx.Err() == nil {
				n.log.Warn("leave", "err", err)
			}
		})
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "leaving", "name": n.cfg.Name})
}

// handleRemove serves POST /v1/remove/{name}: declare a member that is gone
// for good left. 404 for an unknown name, 409 for a reachable member (ask
// it to leave instead).
func (n *Node) handleRemove(w http.ResponseWriter, r *http.Request) {
	name, err := url.PathUnescape(strings.TrimPrefix(r.URL.EscapedPath(), removePrefix))
	if err != nil || name == "" {
		writeError(w, http.StatusBadRequest, "remove needs a member name")
		return
	}
	switch err := n.Remove(name); {
	case errors.Is(err, ErrConflict):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, ErrNoMember):
		writeError(w, http.StatusNotFound, err.Error())
	case err != nil:
		writeError(w, http.StatusBadRequest, err.Error())
	default:
		writeJSON(w, http.StatusOK, map[string]string{"removed": name})
	}
}

func (n *Node) handleRing(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.Ring())
}

// handleHealth answers 200 {"status":"ok"} while the node can take writes,
// and 503 {"status":"unhealthy","error":…} while its storage refuses them
// (disk nearly full, or a failed write-ahead log: see storage.Store.Health);
// reads are still served then.
func (n *Node) handleHealth(w http.ResponseWriter, r *http.Request) {
	alive := 0
	for _, m := range n.Members() {
		if m.State == StateAlive || m.State == StateSuspect {
			alive++
		}
	}
	body := map[string]any{"status": "ok", "name": n.cfg.Name, "id": fmt.Sprintf("%016x", n.id), "members": alive}
	status := http.StatusOK
	if err := n.store.Health(); err != nil {
		body["status"], body["error"] = "unhealthy", err.Error()
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, body)
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
	// HTTPOverloaded counts client requests answered 503 for the
	// in-flight request or body memory limits; HTTPConnsRefused client
	// connections refused past MaxClientConns.
	HTTPOverloaded   uint64 `json:"http_overloaded"`
	HTTPConnsRefused uint64 `json:"http_conns_refused"`
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
		HTTPOverloaded:  n.httpLim.overloaded.Load(),
	}
	if n.httpLim.ln != nil {
		m.HTTPConnsRefused = n.httpLim.ln.refused.Load()
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
		"antientropy": n.AntiEntropy(), "process": processStatus(), "transfer": n.Transfers(),
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
