package node

import (
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestCheckMsgpack(t *testing.T) {
	good := []any{
		nil, true, 1, -1, 300, -300, 1 << 40, 3.5, float32(2), "s", []byte("bin"),
		[]uint64{1, 2, 3}, map[string]any{"a": []any{1, "x", nil}},
		&coordinateReq{Key: []byte("k"), Value: make([]byte, 70000), Context: "c"},
	}
	for _, v := range good {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkMsgpack(b); err != nil {
			t.Errorf("%T: %v", v, err)
		}
		if err := checkMsgpack(b[:len(b)-1]); err == nil && len(b) > 1 {
			t.Errorf("%T: truncated input accepted", v)
		}
	}
	for name, b := range map[string][]byte{
		"array32 of 4G":   {0xdd, 0xff, 0xff, 0xff, 0xff, 1},
		"map32 of 4G":     {0xdf, 0xff, 0xff, 0xff, 0xff},
		"bin32 of 4G":     {0xc6, 0xff, 0xff, 0xff, 0xff, 1, 2},
		"never used byte": {0xc1},
		"trailing":        {0x01, 0x02},
		"empty":           {},
	} {
		if err := checkMsgpack(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	deep := make([]byte, 0, 100)
	for range 100 {
		deep = append(deep, 0x91) // fixarray of one
	}
	deep = append(deep, 0x00)
	if err := checkMsgpack(deep); err == nil {
		t.Error("deep nesting accepted")
	}
}

func FuzzCheckMsgpack(f *testing.F) {
	b, _ := msgpack.Marshal(&replicateReq{Key: []byte("k"), Reg: []byte{1, 2, 3}})
	f.Add(b)
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		if checkMsgpack(b) != nil {
			return
		}
		// Whatever passes the check decodes without allocating beyond the
		// input's own size (and without panicking).
		var v any
		_ = msgpack.Unmarshal(b, &v)
		var r replicateReq
		_ = msgpack.Unmarshal(b, &r)
	})
}
