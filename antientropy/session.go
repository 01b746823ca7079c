package antientropy

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Config tunes a session. The zero value means defaults.
type Config struct {
	// FirstBatch is the least number of symbols in the responder's first
	// batch. Default 16.
	FirstBatch int
	// Growth is the factor by which the symbol stream grows while the
	// initiator cannot decode. Default 1.25 (at most 25% overshoot).
	Growth float64
	// MaxSymbols bounds the symbol stream; past it the initiator asks for
	// the item list. Default 1<<22.
	MaxSymbols int
}

func (c Config) firstBatch() int {
	if c.FirstBatch <= 0 {
		return 16
	}
	return c.FirstBatch
}

func (c Config) growth() float64 {
	if c.Growth <= 1 {
		return 1.25
	}
	return c.Growth
}

func (c Config) maxSymbols() int {
	if c.MaxSymbols <= 0 {
		return 1 << 22
	}
	return c.MaxSymbols
}

// Wire costs used to choose between symbols and a plain list.
const (
	symbolBytes   = 17 // two 64-bit words and a one-byte count
	listItemBytes = 7  // a delta of sorted random 64-bit items, about
)

// Result is what a finished session found, on the initiator's side.
type Result struct {
	// InSync: the shared set's hashes were equal; nothing to do.
	InSync bool
	// PullAll: the initiator holds nothing; pull every state in the set.
	PullAll bool
	// LocalOnly items are held only by the initiator: push their states.
	// RemoteOnly items are held only by the responder: pull their states.
	LocalOnly, RemoteOnly []uint64
	// Symbols received and protocol round trips taken.
	Symbols, Rounds int
	// List: the responder's full item list was used instead of symbols.
	List bool
}

// ErrRingMismatch ends a session whose two sides compute different rings.
var ErrRingMismatch = errors.New("antientropy: peers disagree on the ring")

// ErrProtocol is returned for a message that does not fit the session.
var ErrProtocol = errors.New("antientropy: protocol violation")

// Initiator is the side of a session that asks. Drive it with Summary, then
// Step on every reply until Step returns nil; SetItems must be called
// before the first reply that is not InSync, RingMismatch or PullAll
// (NeedItems tells when).
type Initiator struct {
	cfg      Config
	ring     uint64
	hash     Digest
	count    uint64
	items    []uint64
	loaded   bool
	dec      *decoder
	remoteN  uint64
	received int
	res      Result
	done     bool
}

// NewInitiator starts a session over a set whose hash is hash and which
// holds count items, on a ring with fingerprint ringHash.
func NewInitiator(cfg Config, ringHash uint64, hash Digest, count uint64) *Initiator {
	return &Initiator{cfg: cfg, ring: ringHash, hash: hash, count: count}
}

// Summary is the first message.
func (s *Initiator) Summary() *Message {
	return &Message{Type: MsgSummary, Ring: s.ring, Hash: s.hash, Count: s.count}
}

// NeedItems reports whether reply requires the initiator's items.
func (s *Initiator) NeedItems(reply *Message) bool {
	return !s.loaded && (reply.Type == MsgSymbols || reply.Type == MsgList)
}

// SetItems gives the initiator its items (their Digest.Item values) in the
// shared set. The slice is kept and reordered.
func (s *Initiator) SetItems(items []uint64) {
	s.items = items
	s.loaded = true
}

// Done reports whether the session has ended.
func (s *Initiator) Done() bool { return s.done }

// Result is the outcome once Done.
func (s *Initiator) Result() Result { return s.res }

// Step takes the responder's reply and returns the next message to send, or
// nil when the session is over.
func (s *Initiator) Step(m *Message) (*Message, error) {
	if s.done {
		return nil, fmt.Errorf("%w: %s after the end", ErrProtocol, m.Type)
	}
	s.res.Rounds++
	switch m.Type {
	case MsgInSync:
		s.res.InSync = true
		return s.finish(), nil
	case MsgRingMismatch:
		s.done = true
		return nil, fmt.Errorf("%w: ours %016x, theirs %016x", ErrRingMismatch, s.ring, m.Ring)
	case MsgPullAll:
		s.res.PullAll = true
		return s.finish(), nil
	case MsgSymbols:
		return s.symbols(m)
	case MsgList:
		return s.list(m)
	}
	return nil, fmt.Errorf("%w: unexpected %s", ErrProtocol, m.Type)
}

func (s *Initiator) finish() *Message {
	s.done = true
	return nil
}

func (s *Initiator) symbols(m *Message) (*Message, error) {
	if !s.loaded {
		return nil, fmt.Errorf("%w: items not set", ErrProtocol)
	}
	if s.dec == nil {
		s.remoteN = m.Count
		if m.Count == 0 {
			// The responder holds nothing: everything here is ours only.
			s.res.LocalOnly = s.items
			return s.finish(), nil
		}
		s.dec = newDecoder(s.items)
	}
	if m.Start != uint64(s.received) {
		return nil, fmt.Errorf("%w: symbols from %d, expected %d", ErrProtocol, m.Start, s.received)
	}
	if len(m.Symbols) == 0 {
		return nil, fmt.Errorf("%w: empty symbol batch", ErrProtocol)
	}
	s.received += len(m.Symbols)
	s.res.Symbols = s.received
	s.dec.add(m.Symbols)
	if s.dec.done() {
		s.res.RemoteOnly = s.dec.remote.items
		s.res.LocalOnly = s.dec.mine.items
		return s.finish(), nil
	}
	next := int(math.Ceil(float64(s.received) * s.cfg.growth()))
	if next <= s.received {
		next = s.received + 1
	}
	// Past the point where symbols cost more than the responder's plain
	// list, ask for the list.
	if next*symbolBytes > int(s.remoteN)*listItemBytes || next > s.cfg.maxSymbols() {
		return &Message{Type: MsgListReq}, nil
	}
	return &Message{Type: MsgMore, Upto: uint64(next)}, nil
}

func (s *Initiator) list(m *Message) (*Message, error) {
	if !s.loaded {
		return nil, fmt.Errorf("%w: items not set", ErrProtocol)
	}
	s.res.List = true
	slices.Sort(s.items)
	theirs := m.Items
	i, j := 0, 0
	for i < len(s.items) || j < len(theirs) {
		switch {
		case j == len(theirs) || (i < len(s.items) && s.items[i] < theirs[j]):
			s.res.LocalOnly = append(s.res.LocalOnly, s.items[i])
			i++
		case i == len(s.items) || theirs[j] < s.items[i]:
			s.res.RemoteOnly = append(s.res.RemoteOnly, theirs[j])
			j++
		default:
			i++
			j++
		}
	}
	return s.finish(), nil
}

// Respond answers a Summary from what the responder knows without its
// items: its ring fingerprint, the hash of the set and its item count. When
// it returns needItems, the caller loads its items and continues with
// NewResponder(...).First().
func Respond(sum *Message, ringHash uint64, hash Digest, count uint64) (reply *Message, needItems bool, err error) {
	if sum.Type != MsgSummary {
		return nil, false, fmt.Errorf("%w: session starts with %s", ErrProtocol, sum.Type)
	}
	switch {
	case sum.Ring != ringHash:
		return &Message{Type: MsgRingMismatch, Ring: ringHash}, false, nil
	case sum.Hash == hash:
		return &Message{Type: MsgInSync}, false, nil
	case sum.Count == 0 && count > 0:
		return &Message{Type: MsgPullAll, Count: count}, false, nil
	case count == 0:
		return &Message{Type: MsgSymbols, Count: 0}, false, nil
	}
	return nil, true, nil
}

// Responder is the side of a session that streams symbols of its items.
type Responder struct {
	cfg            Config
	items          []uint64
	initiatorCount uint64
	enc            *encoder
}

// NewResponder prepares to stream symbols over items (kept, not copied);
// initiatorCount is the Summary's Count.
func NewResponder(cfg Config, items []uint64, initiatorCount uint64) *Responder {
	return &Responder{cfg: cfg, items: items, initiatorCount: initiatorCount, enc: newEncoder(items)}
}

// First is the first batch: at least FirstBatch symbols, and enough for the
// difference the two counts alone prove (|count difference| items at least).
func (r *Responder) First() *Message {
	diff := int64(len(r.items)) - int64(r.initiatorCount)
	if diff < 0 {
		diff = -diff
	}
	n := max(r.cfg.firstBatch(), int(float64(diff)*1.4))
	n = min(n, r.cfg.maxSymbols())
	return &Message{Type: MsgSymbols, Count: uint64(len(r.items)), Start: 0, Symbols: r.enc.produce(n)}
}

// Step answers More and ListReq.
func (r *Responder) Step(m *Message) (*Message, error) {
	switch m.Type {
	case MsgMore:
		if m.Upto <= r.enc.next || m.Upto > uint64(r.cfg.maxSymbols()) {
			return nil, fmt.Errorf("%w: more up to %d after %d", ErrProtocol, m.Upto, r.enc.next)
		}
		start := r.enc.next
		syms := r.enc.produce(int(m.Upto - r.enc.next))
		return &Message{Type: MsgSymbols, Count: uint64(len(r.items)), Start: start, Symbols: syms}, nil
	case MsgListReq:
		items := slices.Clone(r.items)
		slices.Sort(items)
		items = slices.Compact(items)
		return &Message{Type: MsgList, Items: items}, nil
	}
	return nil, fmt.Errorf("%w: responder got %s", ErrProtocol, m.Type)
}
