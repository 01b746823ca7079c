package node

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// getCluster fetches GET /v1/cluster from n over real HTTP.
func getCluster(t *testing.T, n *testNode) ClusterStatus {
	t.Helper()
	resp, err := http.Get("http://" + n.HTTPAddr() + "/v1/cluster")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/cluster: %s", resp.Status)
	}
	var cs ClusterStatus
	if err := json.NewDecoder(resp.Body).Decode(&cs); err != nil {
		t.Fatalf("decode /v1/cluster: %v", err)
	}
	return cs
}

// Every node's row in /v1/cluster carries what that node reports of
// itself: keys, hints, anti-entropy ranges in sync and the last exchange.
// A node that goes away is reported as such, promptly, and the others'
// rows still come back.
func TestClusterStatus(t *testing.T) {
	nodes := startCluster(t, 3, func(c *Config) { c.AEInterval = 200 * time.Millisecond })
	const keys = 60
	for i := 0; i < keys; i++ {
		if _, err := nodes[i%3].Put(bg, []byte(fmt.Sprintf("k%d", i)), []byte("v"), nil); err != nil {
			t.Fatal(err)
		}
	}
	var cs ClusterStatus
	eventually(t, 20*time.Second, func() error {
		cs = getCluster(t, nodes[1])
		if len(cs.Nodes) != 3 {
			return fmt.Errorf("%d rows", len(cs.Nodes))
		}
		for _, r := range cs.Nodes {
			// N=3 on 3 nodes: every node holds every key.
			switch {
			case r.Error != "":
				return fmt.Errorf("%s: %s", r.Name, r.Error)
			case r.Keys != keys:
				return fmt.Errorf("%s reports %d keys, want %d", r.Name, r.Keys, keys)
			case r.AERangesTotal == 0 || r.AERangesInSync != r.AERangesTotal:
				return fmt.Errorf("%s: %d of %d ranges in sync", r.Name, r.AERangesInSync, r.AERangesTotal)
			case r.LastExchange == nil:
				return fmt.Errorf("%s: no exchange yet", r.Name)
			}
		}
		return nil
	})
	if cs.Name != "n2" || cs.N != 3 || cs.VNodes == 0 || cs.Moving {
		t.Errorf("header: name %q n %d vnodes %d moving %v", cs.Name, cs.N, cs.VNodes, cs.Moving)
	}
	sum := 0.0
	for i, r := range cs.Nodes {
		if want := fmt.Sprintf("n%d", i+1); r.Name != want || r.State != StateAlive || r.Status != StatusMember || r.HTTP == "" || r.ID == "" {
			t.Errorf("row %d: %+v", i, r)
		}
		if age := time.Since(*r.LastExchange); age < 0 || age > time.Minute {
			t.Errorf("%s: last exchange %v ago", r.Name, age)
		}
		sum += r.Ownership
	}
	if sum < 0.999 || sum > 1.001 {
		t.Errorf("ownership sums to %v", sum)
	}

	// n3 goes away: writes leave hints for it, and its row says it cannot
	// be asked, without holding up the answer past the per-node deadline.
	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := nodes[0].Put(bg, []byte(fmt.Sprintf("h%d", i)), []byte("v"), nil); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 15*time.Second, func() error {
		start := time.Now()
		cs = getCluster(t, nodes[0])
		if d := time.Since(start); d > summaryTimeout+time.Second {
			t.Errorf("/v1/cluster took %v with a node down", d)
		}
		var hints int64
		for _, r := range cs.Nodes[:2] {
			if r.Error != "" {
				return fmt.Errorf("%s: %s", r.Name, r.Error)
			}
			hints += r.HintsPending
		}
		r3 := cs.Nodes[2]
		if r3.State == StateAlive || r3.Error == "" {
			return fmt.Errorf("n3 after Close: state %s, error %q", r3.State, r3.Error)
		}
		if hints == 0 {
			return fmt.Errorf("no hints pending for n3")
		}
		return nil
	})
	if r3 := cs.Nodes[2]; r3.Keys != 0 || r3.LastExchange != nil {
		t.Errorf("n3 could not be asked but its row has its own fields: %+v", r3)
	}
}
