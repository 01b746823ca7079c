package node

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// errMsgpack is returned for peer input that is not well-formed msgpack.
var errMsgpack = errors.New("node: malformed msgpack")

// maxMsgpackDepth bounds nesting in peer messages.
const maxMsgpackDepth = 32

// checkMsgpack walks one msgpack value covering all of b and verifies that
// every declared length fits in the bytes actually present (an element takes
// at least one byte), so decoding cannot be made to allocate more than the
// frame's own size. The msgpack library's generic slice decoder allocates a
// declared length up front; this check runs before every decode of peer
// input.
func checkMsgpack(b []byte) error {
	end, err := skipMsgpack(b, 0, 0)
	if err != nil {
		return err
	}
	if end != len(b) {
		return fmt.Errorf("%w: %d trailing bytes", errMsgpack, len(b)-end)
	}
	return nil
}

func skipMsgpack(b []byte, pos, depth int) (int, error) {
	if depth > maxMsgpackDepth {
		return 0, fmt.Errorf("%w: nested deeper than %d", errMsgpack, maxMsgpackDepth)
	}
	if pos >= len(b) {
		return 0, fmt.Errorf("%w: truncated", errMsgpack)
	}
	c := b[pos]
	pos++
	// need returns the position after n more bytes, if present.
	need := func(n uint64) (int, error) {
		if n > uint64(len(b)-pos) {
			return 0, fmt.Errorf("%w: %d bytes declared, %d left", errMsgpack, n, len(b)-pos)
		}
		return pos + int(n), nil
	}
	// length reads a big-endian length of size bytes.
	length := func(size int) (uint64, error) {
		if size > len(b)-pos {
			return 0, fmt.Errorf("%w: truncated length", errMsgpack)
		}
		var n uint64
		switch size {
		case 1:
			n = uint64(b[pos])
		case 2:
			n = uint64(binary.BigEndian.Uint16(b[pos:]))
		case 4:
			n = uint64(binary.BigEndian.Uint32(b[pos:]))
		}
		pos += size
		return n, nil
	}
	elems := func(n uint64) (int, error) {
		if n > uint64(len(b)-pos) {
			return 0, fmt.Errorf("%w: %d elements declared, %d bytes left", errMsgpack, n, len(b)-pos)
		}
		var err error
		for i := uint64(0); i < n; i++ {
			if pos, err = skipMsgpack(b, pos, depth+1); err != nil {
				return 0, err
			}
		}
		return pos, nil
	}
	// lenThen reads a length of size bytes and continues with then(length+extra).
	lenThen := func(size int, extra uint64, then func(uint64) (int, error)) (int, error) {
		n, err := length(size)
		if err != nil {
			return 0, err
		}
		return then(n + extra)
	}
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		return pos, nil
	case c >= 0x80 && c <= 0x8f:
		return elems(2 * uint64(c&0x0f))
	case c >= 0x90 && c <= 0x9f:
		return elems(uint64(c & 0x0f))
	case c >= 0xa0 && c <= 0xbf:
		return need(uint64(c & 0x1f))
	}
	switch c {
	case 0xcc, 0xd0: // uint8, int8
		return need(1)
	case 0xcd, 0xd1: // uint16, int16
		return need(2)
	case 0xca, 0xce, 0xd2: // float32, uint32, int32
		return need(4)
	case 0xcb, 0xcf, 0xd3: // float64, uint64, int64
		return need(8)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16: type byte and data
		return need(1 + 1<<(c-0xd4))
	case 0xc4, 0xd9: // bin8, str8
		return lenThen(1, 0, need)
	case 0xc5, 0xda: // bin16, str16
		return lenThen(2, 0, need)
	case 0xc6, 0xdb: // bin32, str32
		return lenThen(4, 0, need)
	case 0xc7: // ext8: length, type byte, data
		return lenThen(1, 1, need)
	case 0xc8:
		return lenThen(2, 1, need)
	case 0xc9:
		return lenThen(4, 1, need)
	case 0xdc: // array16
		return lenThen(2, 0, elems)
	case 0xdd:
		return lenThen(4, 0, elems)
	case 0xde: // map16: key and value per entry
		return lenThen(2, 0, func(n uint64) (int, error) { return elems(2 * n) })
	case 0xdf:
		return lenThen(4, 0, func(n uint64) (int, error) { return elems(2 * n) })
	}
	return 0, fmt.Errorf("%w: byte 0x%02x", errMsgpack, c)
}
