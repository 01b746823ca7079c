package antientropy

import (
	"reflect"
	"testing"
)

func sampleMessages() []*Message {
	return []*Message{
		{Type: MsgSummary, Ring: 7, Hash: Digest{1, 2}, Count: 300},
		{Type: MsgInSync},
		{Type: MsgRingMismatch, Ring: 9},
		{Type: MsgPullAll, Count: 12},
		{Type: MsgSymbols, Count: 5, Start: 16, Symbols: []CodedSymbol{{1, 2, -3}, {4, 5, 6}}},
		{Type: MsgSymbols, Count: 0},
		{Type: MsgMore, Upto: 40},
		{Type: MsgListReq},
		{Type: MsgList, Items: []uint64{0, 3, 1 << 63, 1<<64 - 1}},
	}
}

func TestMessageRoundTrip(t *testing.T) {
	for _, m := range sampleMessages() {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var back Message
		if err := back.UnmarshalBinary(b); err != nil {
			t.Fatalf("%s: %v", m.Type, err)
		}
		if !reflect.DeepEqual(*m, back) {
			t.Fatalf("%s: round trip %+v -> %+v", m.Type, m, back)
		}
	}
}

func TestMessageRejects(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":          {},
		"bad version":    {9, byte(MsgInSync)},
		"unknown type":   {wireVersion, 99},
		"trailing":       {wireVersion, byte(MsgInSync), 0},
		"short summary":  {wireVersion, byte(MsgSummary), 1, 2, 3},
		"huge symbols":   {wireVersion, byte(MsgSymbols), 1, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"huge list":      {wireVersion, byte(MsgList), 0xff, 0xff, 0xff, 0xff, 0x0f},
		"duplicate item": {wireVersion, byte(MsgList), 2, 5, 0},
	} {
		var m Message
		if err := m.UnmarshalBinary(b); err == nil {
			t.Errorf("%s: accepted %+v", name, m)
		}
	}
	if _, err := (&Message{Type: MsgList, Items: []uint64{3, 1}}).MarshalBinary(); err == nil {
		t.Error("unsorted list encoded")
	}
}

func FuzzDecodeMessage(f *testing.F) {
	for _, m := range sampleMessages() {
		b, _ := m.MarshalBinary()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		if err := m.Decode(b, Limits{MaxSymbols: 1 << 16, MaxItems: 1 << 16}); err != nil {
			return
		}
		out, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded message does not encode: %v", err)
		}
		var again Message
		if err := again.UnmarshalBinary(out); err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if !reflect.DeepEqual(m, again) {
			t.Fatalf("unstable: %+v vs %+v", m, again)
		}
	})
}
