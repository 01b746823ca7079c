package rpc

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"
)

// Wire constants; doc.go describes the format.
const (
	wireVersion = 1

	kindRequest  = 1
	kindResponse = 2
	kindError    = 3

	lenSize       = 4                  // the u32 length prefix
	baseHeader    = 1 + 1 + 8          // version, kind, id
	requestHeader = baseHeader + 2 + 4 // + method, timeout
	errorHeader   = baseHeader + 2 + 2 // + code, message length (message follows)
	maxErrorMsg   = math.MaxUint16

	// DefaultMaxFrame is the default limit on a frame's length field.
	DefaultMaxFrame = 64 << 20

	// firstChunk is the most a reader allocates for a frame before any of
	// its bytes have arrived; the buffer then doubles as data comes in.
	firstChunk = 64 << 10
)

// frame is one decoded frame. Fields that do not apply to its kind are zero.
type frame struct {
	kind    uint8
	id      uint64
	method  uint16 // request
	timeout uint32 // request, milliseconds
	code    uint16 // error
	msg     string // error
	body    []byte
}

// headerLen is the size of f's header after the length prefix.
func (f *frame) headerLen() int {
	switch f.kind {
	case kindRequest:
		return requestHeader
	case kindError:
		return errorHeader + len(f.msg)
	}
	return baseHeader
}

// appendHeader appends f's length prefix and header, for a body of bodyLen
// bytes that the caller sends right after. It fails with ErrFrameTooLarge if
// the frame's length would exceed max.
func appendHeader(dst []byte, f *frame, bodyLen, max int) ([]byte, error) {
	if f.kind == kindError && len(f.msg) > maxErrorMsg {
		return dst, fmt.Errorf("%w: error message of %d bytes", ErrFrameTooLarge, len(f.msg))
	}
	n := f.headerLen() + bodyLen
	if n > max || n > math.MaxUint32 {
		return dst, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, max)
	}
	dst = slices.Grow(dst, lenSize+f.headerLen())
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	dst = append(dst, wireVersion, f.kind)
	dst = binary.BigEndian.AppendUint64(dst, f.id)
	switch f.kind {
	case kindRequest:
		dst = binary.BigEndian.AppendUint16(dst, f.method)
		dst = binary.BigEndian.AppendUint32(dst, f.timeout)
	case kindError:
		dst = binary.BigEndian.AppendUint16(dst, f.code)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(f.msg)))
		dst = append(dst, f.msg...)
	}
	return dst, nil
}

// appendFrame appends the whole of f, body included.
func appendFrame(dst []byte, f *frame, max int) ([]byte, error) {
	dst, err := appendHeader(dst, f, len(f.body), max)
	if err != nil {
		return dst, err
	}
	return append(dst, f.body...), nil
}

// parseFrame decodes b, everything after the length prefix. The frame's body
// aliases b.
func parseFrame(b []byte) (frame, error) {
	var f frame
	if len(b) < baseHeader {
		return f, fmt.Errorf("%w: frame of %d bytes is shorter than its header", ErrProtocol, len(b))
	}
	if b[0] != wireVersion {
		return f, fmt.Errorf("%w: unknown version %d", ErrProtocol, b[0])
	}
	f.kind = b[1]
	f.id = binary.BigEndian.Uint64(b[2:])
	rest := b[baseHeader:]
	switch f.kind {
	case kindRequest:
		if len(rest) < requestHeader-baseHeader {
			return f, fmt.Errorf("%w: request frame of %d bytes is shorter than its header", ErrProtocol, len(b))
		}
		f.method = binary.BigEndian.Uint16(rest)
		f.timeout = binary.BigEndian.Uint32(rest[2:])
		rest = rest[6:]
	case kindResponse:
	case kindError:
		if len(rest) < errorHeader-baseHeader {
			return f, fmt.Errorf("%w: error frame of %d bytes is shorter than its header", ErrProtocol, len(b))
		}
		f.code = binary.BigEndian.Uint16(rest)
		n := int(binary.BigEndian.Uint16(rest[2:]))
		rest = rest[4:]
		if n > len(rest) {
			return f, fmt.Errorf("%w: error message of %d bytes overruns a frame of %d", ErrProtocol, n, len(b))
		}
		f.msg = string(rest[:n])
		rest = rest[n:]
	default:
		return f, fmt.Errorf("%w: unknown frame kind %d", ErrProtocol, f.kind)
	}
	if len(rest) > 0 {
		f.body = rest
	}
	return f, nil
}

// frameReader reads frames from a buffered stream.
type frameReader struct {
	r   *bufio.Reader
	max int
	// allocated is the number of bytes allocated for the last frame read,
	// reported for tests: at most max per buffer, and at most about twice
	// what actually arrived plus firstChunk overall.
	allocated int
}

// read reads one frame and returns it with its size on the wire. Any error
// leaves the stream unusable: the caller closes the connection.
func (fr *frameReader) read() (frame, int, error) {
	fr.allocated = 0
	var hdr [lenSize]byte
	if _, err := io.ReadFull(fr.r, hdr[:]); err != nil {
		return frame{}, 0, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(fr.max) {
		return frame{}, 0, fmt.Errorf("%w: peer announced %d bytes, limit %d", ErrFrameTooLarge, n, fr.max)
	}
	if n < baseHeader {
		return frame{}, 0, fmt.Errorf("%w: frame of %d bytes is shorter than its header", ErrProtocol, n)
	}
	b, err := fr.readN(int(n))
	if err != nil {
		return frame{}, 0, err
	}
	f, err := parseFrame(b)
	return f, lenSize + int(n), err
}

// readN reads exactly n bytes, growing its buffer only as data arrives.
func (fr *frameReader) readN(n int) ([]byte, error) {
	size := min(n, firstChunk)
	buf := make([]byte, size)
	fr.allocated += size
	got := 0
	for {
		m, err := io.ReadFull(fr.r, buf[got:])
		got += m
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("truncated frame (%d of %d bytes): %w", got, n, err)
		}
		if got == n {
			return buf, nil
		}
		size = min(n, 2*size)
		nb := make([]byte, size)
		fr.allocated += size
		copy(nb, buf[:got])
		buf = nb
	}
}
