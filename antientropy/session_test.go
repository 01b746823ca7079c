package antientropy

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// wireBytes counts the bytes of a message as sent.
func wireBytes(t testing.TB, m *Message) int {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back Message
	if err := back.Decode(b, Limits{}); err != nil {
		t.Fatalf("%s does not decode: %v", m.Type, err)
	}
	return len(b)
}

// runSession drives a whole session in memory between two item sets, as two
// nodes would over the wire (every message encoded and decoded), and
// returns the initiator's result and the bytes sent both ways.
func runSession(t testing.TB, cfg Config, local, remote []uint64) (Result, int) {
	t.Helper()
	hashOf := func(items []uint64) Digest {
		var d Digest
		for _, it := range items {
			d = d.Xor(Digest{Hi: checksum(it), Lo: it})
		}
		return d
	}
	ini := NewInitiator(cfg, 42, hashOf(local), uint64(len(local)))
	msg := ini.Summary()
	bytes := wireBytes(t, msg)
	reply, need, err := Respond(msg, 42, hashOf(remote), uint64(len(remote)))
	if err != nil {
		t.Fatal(err)
	}
	var resp *Responder
	if need {
		resp = NewResponder(cfg, slices.Clone(remote), msg.Count)
		reply = resp.First()
	}
	for {
		bytes += wireBytes(t, reply)
		if ini.NeedItems(reply) {
			ini.SetItems(slices.Clone(local))
		}
		next, err := ini.Step(reply)
		if err != nil {
			t.Fatal(err)
		}
		if next == nil {
			break
		}
		bytes += wireBytes(t, next)
		if resp == nil {
			t.Fatalf("initiator sent %s to a responder without a session", next.Type)
		}
		if reply, err = resp.Step(next); err != nil {
			t.Fatal(err)
		}
	}
	if !ini.Done() {
		t.Fatal("session not done")
	}
	return ini.Result(), bytes
}

func TestSessionFindsExactDifference(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, tc := range []struct {
		name                          string
		common, onlyLocal, onlyRemote int
	}{
		{"in sync", 5000, 0, 0},
		{"one missing remotely", 5000, 1, 0},
		{"one missing locally", 5000, 0, 1},
		{"few both ways", 20000, 20, 30},
		{"1k per side", 100000, 1000, 1000},
		{"many (list)", 1000, 3000, 3000},
		{"initiator empty (pull all)", 0, 0, 500},
		{"responder empty (push all)", 0, 700, 0},
		{"both empty", 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			local, remote, wantLocal, wantRemote := randomSets(rng, tc.common, tc.onlyLocal, tc.onlyRemote)
			res, bytes := runSession(t, Config{}, local, remote)
			d := tc.onlyLocal + tc.onlyRemote
			switch {
			case d == 0:
				if !res.InSync {
					t.Fatalf("equal sets not in sync: %+v", res)
				}
			case len(local) == 0:
				if !res.PullAll {
					t.Fatalf("empty initiator should pull all: %+v", res)
				}
			default:
				if !slices.Equal(sorted(res.LocalOnly), sorted(wantLocal)) || !slices.Equal(sorted(res.RemoteOnly), sorted(wantRemote)) {
					t.Fatalf("found %d/%d, want %d/%d", len(res.LocalOnly), len(res.RemoteOnly), len(wantLocal), len(wantRemote))
				}
			}
			per := "-"
			if d > 0 {
				per = fmt.Sprintf("%.1f", float64(bytes)/float64(d))
			}
			t.Logf("%d common, %d differences: %d bytes (%s per difference), %d symbols, %d rounds, list=%v",
				tc.common, d, bytes, per, res.Symbols, res.Rounds, res.List)
			if d == 0 && bytes > 64 {
				t.Errorf("in-sync session cost %d bytes, want <= 64", bytes)
			}
		})
	}
}

func TestRingMismatch(t *testing.T) {
	ini := NewInitiator(Config{}, 1, Digest{1, 2}, 3)
	reply, need, err := Respond(ini.Summary(), 2, Digest{1, 2}, 3)
	if err != nil || need || reply.Type != MsgRingMismatch {
		t.Fatalf("reply %+v need %v err %v", reply, need, err)
	}
	if _, err := ini.Step(reply); err == nil {
		t.Fatal("ring mismatch not reported")
	}
}

func TestProtocolViolations(t *testing.T) {
	ini := NewInitiator(Config{}, 1, Digest{1, 2}, 3)
	if _, err := ini.Step(&Message{Type: MsgMore, Upto: 5}); err == nil {
		t.Fatal("initiator accepted More")
	}
	ini = NewInitiator(Config{}, 1, Digest{1, 2}, 3)
	ini.SetItems([]uint64{1, 2, 3})
	if _, err := ini.Step(&Message{Type: MsgSymbols, Count: 4, Start: 7, Symbols: make([]CodedSymbol, 1)}); err == nil {
		t.Fatal("initiator accepted symbols out of order")
	}
	r := NewResponder(Config{}, []uint64{1, 2}, 5)
	r.First()
	if _, err := r.Step(&Message{Type: MsgMore, Upto: 1}); err == nil {
		t.Fatal("responder accepted More going backwards")
	}
	if _, err := r.Step(&Message{Type: MsgSummary}); err == nil {
		t.Fatal("responder accepted a second Summary")
	}
}
