package antientropy

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// MsgType names a protocol message.
type MsgType byte

// Protocol messages. The initiator sends Summary, More and ListReq; the
// responder answers with InSync, RingMismatch, PullAll, Symbols or List.
const (
	MsgSummary      MsgType = 1 // Ring, Hash, Count (initiator's items)
	MsgInSync       MsgType = 2 // nothing differs
	MsgRingMismatch MsgType = 3 // Ring (responder's): the two compute different shared sets
	MsgSymbols      MsgType = 4 // Count (responder's items), Start, Symbols
	MsgMore         MsgType = 5 // Upto: send symbols up to this index
	MsgListReq      MsgType = 6 // send the whole item list instead
	MsgList         MsgType = 7 // Items, sorted
	MsgPullAll      MsgType = 8 // Count: the initiator holds nothing; pull everything
)

func (t MsgType) String() string {
	switch t {
	case MsgSummary:
		return "summary"
	case MsgInSync:
		return "in-sync"
	case MsgRingMismatch:
		return "ring-mismatch"
	case MsgSymbols:
		return "symbols"
	case MsgMore:
		return "more"
	case MsgListReq:
		return "list-req"
	case MsgList:
		return "list"
	case MsgPullAll:
		return "pull-all"
	}
	return fmt.Sprintf("msg(%d)", byte(t))
}

// Message is one protocol message; which fields are used depends on Type.
type Message struct {
	Type    MsgType
	Ring    uint64
	Hash    Digest
	Count   uint64
	Start   uint64
	Upto    uint64
	Symbols []CodedSymbol
	Items   []uint64
}

// Limits bound what UnmarshalBinary accepts.
type Limits struct {
	MaxSymbols int // default 1<<22
	MaxItems   int // default 1<<24
}

func (l Limits) symbols() int {
	if l.MaxSymbols <= 0 {
		return 1 << 22
	}
	return l.MaxSymbols
}

func (l Limits) items() int {
	if l.MaxItems <= 0 {
		return 1 << 24
	}
	return l.MaxItems
}

const wireVersion = 1

// ErrMessage is returned for a message that cannot be decoded.
var ErrMessage = errors.New("antientropy: bad message")

// MarshalBinary encodes m: a version byte, the type, then its fields as
// varints; symbols as two fixed 64-bit words and a zig-zag count; items
// sorted and delta-encoded.
func (m *Message) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 32+len(m.Symbols)*18+len(m.Items)*8)
	b = append(b, wireVersion, byte(m.Type))
	switch m.Type {
	case MsgSummary:
		b = binary.LittleEndian.AppendUint64(b, m.Ring)
		b = binary.LittleEndian.AppendUint64(b, m.Hash.Hi)
		b = binary.LittleEndian.AppendUint64(b, m.Hash.Lo)
		b = binary.AppendUvarint(b, m.Count)
	case MsgInSync, MsgListReq:
	case MsgRingMismatch:
		b = binary.LittleEndian.AppendUint64(b, m.Ring)
	case MsgPullAll:
		b = binary.AppendUvarint(b, m.Count)
	case MsgSymbols:
		b = binary.AppendUvarint(b, m.Count)
		b = binary.AppendUvarint(b, m.Start)
		b = binary.AppendUvarint(b, uint64(len(m.Symbols)))
		for _, s := range m.Symbols {
			b = binary.LittleEndian.AppendUint64(b, s.Sum)
			b = binary.LittleEndian.AppendUint64(b, s.Check)
			b = binary.AppendVarint(b, s.Count)
		}
	case MsgMore:
		b = binary.AppendUvarint(b, m.Upto)
	case MsgList:
		for i := 1; i < len(m.Items); i++ {
			if m.Items[i] <= m.Items[i-1] {
				return nil, fmt.Errorf("%w: list not strictly sorted", ErrMessage)
			}
		}
		b = binary.AppendUvarint(b, uint64(len(m.Items)))
		prev := uint64(0)
		for _, it := range m.Items {
			b = binary.AppendUvarint(b, it-prev)
			prev = it
		}
	default:
		return nil, fmt.Errorf("%w: type %d", ErrMessage, m.Type)
	}
	return b, nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: truncated or malformed %s", ErrMessage, what)
	}
}

func (r *reader) u64(what string) uint64 {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 8 {
		r.fail(what)
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint(what string) int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

// UnmarshalBinary decodes a message, checking every length against lim
// and against the bytes actually present before allocating.
func (m *Message) UnmarshalBinary(b []byte) error { return m.Decode(b, Limits{}) }

// Decode is UnmarshalBinary with explicit limits.
func (m *Message) Decode(b []byte, lim Limits) error {
	*m = Message{}
	if len(b) < 2 {
		return fmt.Errorf("%w: %d bytes", ErrMessage, len(b))
	}
	if b[0] != wireVersion {
		return fmt.Errorf("%w: version %d", ErrMessage, b[0])
	}
	m.Type = MsgType(b[1])
	r := &reader{b: b[2:]}
	switch m.Type {
	case MsgSummary:
		m.Ring = r.u64("ring")
		m.Hash.Hi = r.u64("hash")
		m.Hash.Lo = r.u64("hash")
		m.Count = r.uvarint("count")
	case MsgInSync, MsgListReq:
	case MsgRingMismatch:
		m.Ring = r.u64("ring")
	case MsgPullAll:
		m.Count = r.uvarint("count")
	case MsgSymbols:
		m.Count = r.uvarint("count")
		m.Start = r.uvarint("start")
		n := r.uvarint("symbol count")
		// A symbol takes at least 17 bytes.
		if r.err == nil && (n > uint64(lim.symbols()) || n > uint64(len(r.b))/17) {
			return fmt.Errorf("%w: %d symbols in %d bytes", ErrMessage, n, len(r.b))
		}
		if r.err == nil && m.Start > maxIndex {
			return fmt.Errorf("%w: start %d", ErrMessage, m.Start)
		}
		if n > 0 {
			m.Symbols = make([]CodedSymbol, n)
		}
		for i := range m.Symbols {
			m.Symbols[i].Sum = r.u64("symbol")
			m.Symbols[i].Check = r.u64("symbol")
			m.Symbols[i].Count = r.varint("symbol")
		}
	case MsgMore:
		m.Upto = r.uvarint("upto")
		if r.err == nil && m.Upto > maxIndex {
			return fmt.Errorf("%w: upto %d", ErrMessage, m.Upto)
		}
	case MsgList:
		n := r.uvarint("item count")
		if r.err == nil && (n > uint64(lim.items()) || n > uint64(len(r.b))) {
			return fmt.Errorf("%w: %d items in %d bytes", ErrMessage, n, len(r.b))
		}
		if n > 0 {
			m.Items = make([]uint64, n)
		}
		prev := uint64(0)
		for i := range m.Items {
			d := r.uvarint("item")
			if i > 0 && d == 0 {
				r.fail("list (duplicate item)")
			}
			if prev+d < prev {
				r.fail("list (overflow)")
			}
			prev += d
			m.Items[i] = prev
		}
	default:
		return fmt.Errorf("%w: type %d", ErrMessage, m.Type)
	}
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrMessage, len(r.b))
	}
	return nil
}
