package node

import (
	"testing"
	"time"
)

// A joining node gains ranges and loses none; the current owners lose
// ranges to it; with no move under way nobody gains or loses.
func TestViewRangesInTransfer(t *testing.T) {
	rows := []memberEntry{
		{ID: 1, Name: "n1", Status: StatusMember},
		{ID: 2, Name: "n2", Status: StatusMember},
		{ID: 3, Name: "n3", Status: StatusMember},
		{ID: 4, Name: "n4", Status: StatusMember},
	}
	cur, nxt, byID := buildRings(rows, 64)
	if v := newView(cur, nxt, byID, 3, 1); len(v.gaining) != 0 || len(v.losing) != 0 {
		t.Fatalf("settled ring: gaining %d, losing %d ranges", len(v.gaining), len(v.losing))
	}
	rows = append(rows, memberEntry{ID: 5, Name: "n5", Status: StatusJoining})
	cur, nxt, byID = buildRings(rows, 64)
	joiner := newView(cur, nxt, byID, 3, 5)
	if len(joiner.gaining) == 0 || len(joiner.losing) != 0 {
		t.Errorf("joining node: gaining %d, losing %d ranges", len(joiner.gaining), len(joiner.losing))
	}
	lost := 0
	for id := uint64(1); id <= 4; id++ {
		v := newView(cur, nxt, byID, 3, id)
		if len(v.gaining) != 0 {
			t.Errorf("n%d gains %d ranges from a join", id, len(v.gaining))
		}
		lost += len(v.losing)
	}
	// Every leaf the joiner gains, one current owner loses.
	if lost == 0 {
		t.Error("no current owner loses a range to the joining node")
	}
	if got := joiner.gaining.Intersect(joiner.curRepl[5]); len(got) != 0 {
		t.Errorf("gained ranges %v are already replicated now", got)
	}
}

func TestProgressRate(t *testing.T) {
	var p progress
	t0 := time.Unix(1000, 0)
	if r := p.note(1000, t0); r != 0 {
		t.Fatalf("first sample: rate %v", r)
	}
	if r := p.note(900, t0.Add(100*time.Millisecond)); r != 0 {
		t.Fatalf("sample too soon changed the rate to %v", r)
	}
	if r := p.note(800, t0.Add(time.Second)); r != 200 {
		t.Fatalf("200 keys in 1 s: rate %v", r)
	}
	if r := p.note(800, t0.Add(2*time.Second)); r != 0.7*200 {
		t.Fatalf("no progress for 1 s: rate %v, want %v", r, 0.7*200)
	}
	// A new, larger move starts the estimate over.
	if r := p.note(5000, t0.Add(3*time.Second)); r != 0 {
		t.Fatalf("new move: rate %v", r)
	}
}
