package node

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/rumorkv/rumor/ring"
)

// methodSummary returns the receiver's Summary (empty request), for
// cluster-wide status: GET /v1/cluster, `rumor status`, the /ui page.
const methodSummary uint16 = 13

// summaryTimeout bounds each member's answer to a cluster status request.
const summaryTimeout = 2 * time.Second

// Summary is what a node reports of itself in cluster status: its data,
// the hints it holds for others, and its anti-entropy state.
type Summary struct {
	// Keys is the number of keys (tombstones included) stored here.
	Keys int64 `msgpack:"k"`
	// HintsPending is the number of hints held here for other members.
	HintsPending int64 `msgpack:"h"`
	// RangesInSync of RangesTotal ranges shared with peers were found in
	// sync by their last exchange.
	RangesInSync int `msgpack:"s"`
	RangesTotal  int `msgpack:"t"`
	// LastExchange is the end of the most recent anti-entropy exchange
	// with any peer, in Unix nanoseconds (0: none yet).
	LastExchange int64 `msgpack:"x"`
	// KeysRepaired and BytesRepaired count the copies anti-entropy changed
	// here and the size of the states that changed them.
	KeysRepaired  uint64 `msgpack:"kr"`
	BytesRepaired uint64 `msgpack:"br"`
}

// summary computes this node's Summary.
func (n *Node) summary() Summary {
	s := Summary{
		Keys:          n.ae.index.Keys(),
		KeysRepaired:  n.ae.keysRepaired.Load(),
		BytesRepaired: n.ae.bytesRepaired.Load(),
	}
	if targets, err := n.store.HintTargets(); err == nil {
		for _, c := range targets {
			s.HintsPending += int64(c)
		}
	}
	v := n.view.Load()
	a := n.ae
	a.mu.Lock()
	for id, rs := range v.shared {
		s.RangesTotal += len(rs)
		p := a.mu.peers[uint64(id)]
		if p == nil {
			continue
		}
		if p.inSync {
			s.RangesInSync += len(rs)
		}
		if t := p.lastExchange; !t.IsZero() && t.UnixNano() > s.LastExchange {
			s.LastExchange = t.UnixNano()
		}
	}
	a.mu.Unlock()
	return s
}

// ClusterStatus is the answer to GET /v1/cluster: a row per member (left
// members excepted), as the answering node sees the ring and as each
// member reports itself.
type ClusterStatus struct {
	// Name is the node that answered.
	Name   string `json:"name"`
	N      int    `json:"n"`
	VNodes int    `json:"vnodes"`
	// Moving: a node is joining or leaving (see RingInfo).
	Moving bool         `json:"moving"`
	Nodes  []NodeStatus `json:"nodes"`
}

// NodeStatus is one member's row in ClusterStatus. The membership and ring
// fields come from the answering node; the rest from the member itself,
// asked over peer RPC with a deadline. Error is set when it could not be
// asked (then the member's own fields are zero).
type NodeStatus struct {
	Name          string  `json:"name"`
	ID            string  `json:"id"`
	Zone          string  `json:"zone,omitempty"`
	State         string  `json:"state"`
	Status        string  `json:"status"`
	HTTP          string  `json:"http,omitempty"`
	Ownership     float64 `json:"ownership"`
	NextOwnership float64 `json:"next_ownership"`

	Keys           int64      `json:"keys"`
	HintsPending   int64      `json:"hints_pending"`
	AERangesInSync int        `json:"ae_ranges_in_sync"`
	AERangesTotal  int        `json:"ae_ranges_total"`
	LastExchange   *time.Time `json:"last_exchange,omitempty"`
	BytesRepaired  uint64     `json:"bytes_repaired"`
	KeysRepaired   uint64     `json:"keys_repaired"`
	Error          string     `json:"error,omitempty"`
}

// Cluster asks every member that has not left for its Summary (at once,
// each with a deadline of summaryTimeout) and returns a row per member,
// sorted by name. Unreachable members are not asked: their row says so.
func (n *Node) Cluster(ctx context.Context) ClusterStatus {
	v := n.view.Load()
	own, next := v.ring.Ownership(), v.next.Ownership()
	out := ClusterStatus{Name: n.cfg.Name, N: n.cfg.N, VNodes: v.ring.VNodes(), Moving: v.transfer()}
	var entries []memberEntry
	for _, e := range n.mem.rows() {
		if e.Status == StatusLeft {
			continue
		}
		entries = append(entries, e)
		out.Nodes = append(out.Nodes, NodeStatus{
			Name: e.Name, ID: fmt.Sprintf("%016x", e.ID), Zone: e.Zone,
			State: n.mem.liveness(e.Name), Status: e.Status, HTTP: e.HTTP,
			Ownership: own[ring.NodeID(e.ID)], NextOwnership: next[ring.NodeID(e.ID)],
		})
	}
	var wg sync.WaitGroup
	for i, e := range entries {
		row := &out.Nodes[i]
		switch {
		case e.ID == n.id:
			row.fill(n.summary())
			continue
		case row.State == StateDead:
			row.Error = "unreachable"
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := n.askSummary(ctx, e.RPC)
			if err != nil {
				row.Error = err.Error()
				return
			}
			row.fill(s)
		}()
	}
	wg.Wait()
	sort.Slice(out.Nodes, func(i, j int) bool { return out.Nodes[i].Name < out.Nodes[j].Name })
	return out
}

func (r *NodeStatus) fill(s Summary) {
	r.Keys, r.HintsPending = s.Keys, s.HintsPending
	r.AERangesInSync, r.AERangesTotal = s.RangesInSync, s.RangesTotal
	r.KeysRepaired, r.BytesRepaired = s.KeysRepaired, s.BytesRepaired
	if s.LastExchange > 0 {
		t := time.Unix(0, s.LastExchange).UTC()
		r.LastExchange = &t
	}
}

// askSummary asks the member at rpcAddr for its Summary.
func (n *Node) askSummary(ctx context.Context, rpcAddr string) (Summary, error) {
	ctx, cancel := context.WithTimeout(ctx, summaryTimeout)
	defer cancel()
	var s Summary
	b, err := n.call(ctx, rpcAddr, methodSummary, nil)
	if err != nil {
		return s, fmt.Errorf("summary: %w", err)
	}
	if err := decode(b, &s); err != nil {
		return s, fmt.Errorf("summary from %s: %w", rpcAddr, err)
	}
	return s, nil
}

// serveSummary answers methodSummary.
func (n *Node) serveSummary() ([]byte, error) {
	s := n.summary()
	return encode(&s)
}

func (n *Node) handleCluster(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.Cluster(r.Context()))
}
