package storage

import (
	"bytes"
	"testing"
)

// FuzzDecodeRecord: decoding never panics, and what decodes re-encodes to
// the same bytes (one encoding per value).
func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(0))
	f.Add(encodeRecord(42))
	f.Add(encodeRecord(^uint64(0)))
	f.Add([]byte{})
	f.Add([]byte{recordV1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeRecord(b)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeRecord(v), b) {
			t.Fatalf("decoded %d from %x, which encodes as %x", v, b, encodeRecord(v))
		}
	})
}

// FuzzDecodeKey: the data and hint key decoders never panic, accept only
// keys whose hash prefix matches, and invert the encoders.
func FuzzDecodeKey(f *testing.F) {
	f.Add(dataKey(Hash([]byte("k")), []byte("k")))
	f.Add(hintKey(7, Hash([]byte("k")), []byte("k")))
	f.Add(dataKey(1, []byte("wrong hash")))
	f.Add([]byte{prefixData})
	f.Add([]byte{prefixHint, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, k, err := decodeDataKey(b); err == nil {
			if h != Hash(k) || !bytes.Equal(dataKey(h, k), b) {
				t.Fatalf("data key %x decoded to (%016x, %q)", b, h, k)
			}
		}
		if tg, k, err := decodeHintKey(b); err == nil {
			if !bytes.Equal(hintKey(tg, Hash(k), k), b) {
				t.Fatalf("hint key %x decoded to (%016x, %q)", b, tg, k)
			}
		}
	})
}
