package node

import (
	"reflect"
	"testing"

	"github.com/rumorkv/rumor/crdt"
)

// Decoders of what peers send: the membership state (push/pull), a node's
// metadata record (gossip), and the causal summaries in anti-entropy
// requests. None may panic or accept what does not re-encode to itself.

func FuzzDecodeTable(f *testing.F) {
	rows := []memberEntry{
		{Name: "n1", ID: 1, Gossip: "127.0.0.1:7946", RPC: "127.0.0.1:7947", HTTP: "127.0.0.1:7948", Status: StatusMember, Version: 7},
		{Name: "n2", ID: 2, Zone: "z", Status: StatusLeft, Version: 1},
	}
	b, err := encodeTable(rows)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{stateVersion, 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		rows, err := decodeTable(b)
		if err != nil {
			return
		}
		if len(rows) > maxMembers {
			t.Fatalf("%d rows accepted", len(rows))
		}
		for _, e := range rows {
			if err := e.validate(); err != nil {
				t.Fatalf("invalid row accepted: %v", err)
			}
		}
		again, err := encodeTable(rows)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeTable(again)
		if err != nil || !reflect.DeepEqual(back, rows) {
			t.Fatalf("round trip: %v %v", back, err)
		}
	})
}

func FuzzDecodeMeta(f *testing.F) {
	b, err := encodeMeta(memberEntry{Name: "n1", ID: 9, Gossip: "a:1", RPC: "a:2", Status: StatusMember, Version: 3})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeMeta(b)
		if err != nil {
			return
		}
		if err := e.validate(); err != nil {
			t.Fatalf("invalid meta accepted: %v", err)
		}
		again, err := encodeMeta(e)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeMeta(again)
		if err != nil || back != e {
			t.Fatalf("round trip: %+v -> %+v (%v)", e, back, err)
		}
	})
}

func FuzzDecodeHave(f *testing.F) {
	f.Add(encodeHave(map[uint64]crdt.VV{1: {7: 3, 9: 1}, 1 << 63: {7: 1}}))
	f.Add([]byte{haveVersion, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		have, err := decodeHave(b)
		if err != nil {
			return
		}
		for _, vv := range have {
			for a, c := range vv {
				if a == 0 || c == 0 {
					t.Fatalf("zero entry accepted: %v", vv)
				}
			}
		}
		back, err := decodeHave(encodeHave(have))
		if err != nil || (len(have) > 0 && !reflect.DeepEqual(back, have)) {
			t.Fatalf("round trip: %v -> %v (%v)", have, back, err)
		}
	})
}
