package rpc

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

func readAll(b []byte, max int) ([]frame, error) {
	fr := frameReader{r: bufio.NewReader(bytes.NewReader(b)), max: max}
	var out []frame
	for {
		f, _, err := fr.read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, f)
	}
}

func TestFrameRoundTrip(t *testing.T) {
	cases := []frame{
		{kind: kindRequest, id: 1, method: 7, timeout: 1500, body: []byte("hello")},
		{kind: kindRequest, id: 1<<64 - 1, method: 0xFFFF, timeout: 1<<32 - 1},
		{kind: kindResponse, id: 2},
		{kind: kindResponse, id: 3, body: bytes.Repeat([]byte{0xAB}, 3*firstChunk+17)},
		{kind: kindError, id: 4, code: 503, msg: "unavailable"},
		{kind: kindError, id: 5, code: 0, msg: "", body: []byte{1}},
		{kind: kindError, id: 6, code: 500, msg: strings.Repeat("x", maxErrorMsg)},
	}
	var stream []byte
	for _, f := range cases {
		stream = mustFrame(t, f)
		got, err := readAll(stream, DefaultMaxFrame)
		if err != nil || len(got) != 1 || !equalFrames(got[0], f) {
			t.Fatalf("frame %+v: got %+v, %v", f.id, got, err)
		}
	}

	// Property: any sequence of random frames, written back to back, reads
	// back as the same sequence.
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 200; iter++ {
		var want []frame
		stream = stream[:0]
		for range rng.IntN(8) {
			f := frame{kind: uint8(1 + rng.IntN(3)), id: rng.Uint64()}
			switch f.kind {
			case kindRequest:
				f.method, f.timeout = uint16(rng.Uint32()), rng.Uint32()
			case kindError:
				f.code, f.msg = uint16(rng.Uint32()), strings.Repeat("e", rng.IntN(100))
			}
			if n := rng.IntN(200); n > 0 {
				f.body = make([]byte, n)
				for i := range f.body {
					f.body[i] = byte(rng.Uint32())
				}
			}
			want = append(want, f)
			var err error
			if stream, err = appendFrame(stream, &f, DefaultMaxFrame); err != nil {
				t.Fatal(err)
			}
		}
		got, err := readAll(stream, DefaultMaxFrame)
		if err != nil || len(got) != len(want) {
			t.Fatalf("iteration %d: %d frames, %v; want %d", iter, len(got), err, len(want))
		}
		for i := range got {
			if !equalFrames(got[i], want[i]) {
				t.Fatalf("iteration %d frame %d: %+v, want %+v", iter, i, got[i], want[i])
			}
		}
	}
}

func TestFrameErrors(t *testing.T) {
	hdr := func(n uint32, rest ...byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, n), rest...)
	}
	id := make([]byte, 8)
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"huge length", hdr(0xFFFFFFFF), ErrFrameTooLarge},
		{"over max", hdr(1025), ErrFrameTooLarge},
		{"zero length", hdr(0), ErrProtocol},
		{"shorter than header", hdr(9, make([]byte, 9)...), ErrProtocol},
		{"bad version", hdr(10, append([]byte{2, kindResponse}, id...)...), ErrProtocol},
		{"version 0", hdr(10, append([]byte{0, kindResponse}, id...)...), ErrProtocol},
		{"unknown kind", hdr(10, append([]byte{1, 4}, id...)...), ErrProtocol},
		{"kind 0", hdr(10, append([]byte{1, 0}, id...)...), ErrProtocol},
		{"short request", hdr(15, append(append([]byte{1, kindRequest}, id...), 0, 1, 0, 0, 0)...), ErrProtocol},
		{"short error", hdr(13, append(append([]byte{1, kindError}, id...), 0, 1, 0)...), ErrProtocol},
		{"error message overrun", hdr(16, append(append([]byte{1, kindError}, id...), 1, 244, 0, 3, 'a', 'b')...), ErrProtocol},
		{"truncated length", []byte{0, 0}, io.ErrUnexpectedEOF},
		{"truncated header", hdr(10, 1, kindResponse, 0), io.ErrUnexpectedEOF},
		{"truncated body", hdr(100, append([]byte{1, kindResponse}, id...)...), io.ErrUnexpectedEOF},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := readAll(c.in, 1024)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
	if _, err := appendFrame(nil, &frame{kind: kindResponse, body: make([]byte, 100)}, 50); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("encoding over max: %v", err)
	}
	if _, err := appendFrame(nil, &frame{kind: kindError, msg: strings.Repeat("x", maxErrorMsg+1)}, DefaultMaxFrame); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("encoding a long message: %v", err)
	}
}

// A peer that announces a large frame and sends little makes the reader
// allocate in proportion to what arrived, never the announced size.
func TestFrameReaderAllocatesAsDataArrives(t *testing.T) {
	in := binary.BigEndian.AppendUint32(nil, DefaultMaxFrame)
	in = append(in, 1, kindResponse)
	in = append(in, make([]byte, 200<<10)...)
	fr := frameReader{r: bufio.NewReader(bytes.NewReader(in)), max: DefaultMaxFrame}
	if _, _, err := fr.read(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v", err)
	}
	if fr.allocated > 2*len(in)+firstChunk {
		t.Fatalf("allocated %d bytes for %d received", fr.allocated, len(in))
	}
}

func FuzzReadFrame(f *testing.F) {
	const max = 1 << 20
	f.Add(mustFrame(f, frame{kind: kindRequest, id: 1, method: 2, timeout: 3, body: []byte("body")}))
	f.Add(mustFrame(f, frame{kind: kindResponse, id: 9}))
	f.Add(mustFrame(f, frame{kind: kindError, id: 5, code: 404, msg: "not found"}))
	f.Add(append(mustFrame(f, frame{kind: kindResponse, id: 1, body: []byte{1, 2}}), mustFrame(f, frame{kind: kindError, id: 2})...))
	f.Add([]byte{0xFF, 0xFF, 0xFF, 0xFF, 1, 1})
	f.Add([]byte{0, 0, 0, 10, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 0x0F, 0, 0, 1, 2, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		fr := frameReader{r: bufio.NewReader(bytes.NewReader(in)), max: max}
		consumed := 0
		for {
			fm, n, err := fr.read()
			if fr.allocated > 2*max || fr.allocated > 2*len(in)+firstChunk {
				t.Fatalf("allocated %d bytes for %d of input", fr.allocated, len(in))
			}
			if err != nil {
				return
			}
			// A valid frame re-encodes to exactly the bytes it came from.
			re, err := appendFrame(nil, &fm, max)
			if err != nil {
				t.Fatalf("re-encoding a decoded frame: %v", err)
			}
			if n != len(re) || !bytes.Equal(re, in[consumed:consumed+n]) {
				t.Fatalf("frame at %d does not round-trip:\n in  %x\n out %x", consumed, in[consumed:consumed+n], re)
			}
			consumed += n
		}
	})
}
