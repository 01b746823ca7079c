package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/rumorkv/rumor/antientropy"
	"github.com/rumorkv/rumor/crdt"
)

// Anti-entropy peer RPC methods. A session between an initiator and a
// responder compares everything the two replicate in common (AESync), then
// each side receives exactly what it lacks: the responder fetches the
// initiator's newer states (AENeed, answered by AEFetch calls back to the
// initiator) and the initiator pulls the responder's (AEPull). AEPullRange
// copies everything to an initiator that holds nothing; AEDone ends the
// responder's side of a session.
const (
	methodAESync      uint16 = 5
	methodAEPull      uint16 = 6
	methodAEPullRange uint16 = 7
	methodAEDone      uint16 = 8
	methodReap        uint16 = 9
	methodAENeed      uint16 = 10
	methodAEFetch     uint16 = 11
)

// isAEMethod reports whether method is served by anti-entropy.
func isAEMethod(m uint16) bool { return m >= methodAESync && m <= methodAEFetch }

// Wire overhead of one peer call: the RPC frame headers of the request and
// of the response (see node/rpc). Counted in the anti-entropy byte figures
// so they are what the network carries, not just the bodies.
const (
	rpcRequestOverhead  = 20
	rpcResponseOverhead = 14
)

// Messages are encoded as msgpack arrays (see encode): no field names on
// the wire.

type aeSyncReq struct {
	Session uint64
	From    uint64
	Msg     []byte // an antientropy.Message
	// Spans, when set (flattened Lo, Hi leaf pairs), is the set the
	// session compares instead of everything the two share: a node hands
	// over ranges it no longer replicates.
	Spans []uint32
}

// flattenSpans and unflattenSpans carry a RangeSet on the wire.
func flattenSpans(s antientropy.RangeSet) []uint32 {
	out := make([]uint32, 0, 2*len(s))
	for _, sp := range s {
		out = append(out, sp.Lo, sp.Hi)
	}
	return out
}

func unflattenSpans(f []uint32) (antientropy.RangeSet, error) {
	if len(f)%2 != 0 {
		return nil, fmt.Errorf("node: %d span bounds", len(f))
	}
	s := make(antientropy.RangeSet, 0, len(f)/2)
	for i := 0; i < len(f); i += 2 {
		s = append(s, antientropy.Span{Lo: f[i], Hi: f[i+1]})
	}
	return s, s.Validate()
}

type aeSyncResp struct {
	Msg []byte
}

// aePullReq asks the responder of a session for the states behind items.
type aePullReq struct {
	Session uint64
	Items   []uint64
	// Have is the asker's causal context for the keys it holds in the
	// items' hash ranges (encodeHave): a state it already covers is not
	// sent.
	Have []byte
}

// aeNeedReq tells the responder of a session that the initiator holds
// states at these key hashes that the responder lacks; the responder
// fetches them (AEFetch) before answering.
type aeNeedReq struct {
	Session uint64
	From    uint64
	Hashes  []uint64
}

type aeNeedResp struct {
	Fetched int
}

// aeFetchReq asks for the states at hashes, minus those Have covers.
type aeFetchReq struct {
	Hashes []uint64
	Have   []byte
}

type aePair struct {
	Key   []byte
	State []byte
}

// aePairs answers AEPull and AEFetch. Done is how many of the requested
// items or hashes the answer covers; the rest must be asked for again.
type aePairs struct {
	Pairs []aePair
	Done  int
}

type aePullRangeReq struct {
	From      uint64
	AfterHash uint64
	AfterKey  []byte
}

type aePullRangeResp struct {
	Pairs []aePair
	More  bool
}

type aeDoneReq struct {
	Session uint64
	// Complete: every state that needed to move in this session moved
	// (false when the session ended on an error).
	Complete bool
}

type reapReq struct {
	Key    []byte
	Digest [2]uint64
	Do     bool
}

type reapResp struct {
	Same bool
}

const haveVersion = 1

var errHave = errors.New("node: malformed causal summary")

// encodeHave encodes per-key-hash causal contexts compactly: the actors
// once (8 bytes each), then per hash its entries as (actor index,
// counter) varints. A context of two actors costs about 8+1+2×4 bytes.
func encodeHave(have map[uint64]crdt.VV) []byte {
	if len(have) == 0 {
		return nil
	}
	idx := map[crdt.ActorID]int{}
	var actors []crdt.ActorID
	hashes := make([]uint64, 0, len(have))
	for h, vv := range have {
		hashes = append(hashes, h)
		for a := range vv {
			if _, ok := idx[a]; !ok {
				idx[a] = len(actors)
				actors = append(actors, a)
			}
		}
	}
	slices.Sort(hashes)
	b := []byte{haveVersion}
	b = binary.AppendUvarint(b, uint64(len(actors)))
	for _, a := range actors {
		b = binary.LittleEndian.AppendUint64(b, uint64(a))
	}
	b = binary.AppendUvarint(b, uint64(len(hashes)))
	for _, h := range hashes {
		vv := have[h]
		b = binary.LittleEndian.AppendUint64(b, h)
		b = binary.AppendUvarint(b, uint64(len(vv)))
		for a, c := range vv {
			b = binary.AppendUvarint(b, uint64(idx[a]))
			b = binary.AppendUvarint(b, c)
		}
	}
	return b
}

// decodeHave decodes encodeHave's output, checking every count against the
// bytes present.
func decodeHave(b []byte) (map[uint64]crdt.VV, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if b[0] != haveVersion {
		return nil, fmt.Errorf("%w: format %d", errHave, b[0])
	}
	p := b[1:]
	uv := func() (uint64, error) {
		v, n := binary.Uvarint(p)
		if n <= 0 {
			return 0, fmt.Errorf("%w: truncated", errHave)
		}
		p = p[n:]
		return v, nil
	}
	na, err := uv()
	if err != nil {
		return nil, err
	}
	if na > uint64(len(p)/8) {
		return nil, fmt.Errorf("%w: %d actors in %d bytes", errHave, na, len(p))
	}
	actors := make([]crdt.ActorID, na)
	for i := range actors {
		actors[i] = crdt.ActorID(binary.LittleEndian.Uint64(p))
		if actors[i] == 0 {
			return nil, fmt.Errorf("%w: actor 0", errHave)
		}
		p = p[8:]
	}
	nh, err := uv()
	if err != nil {
		return nil, err
	}
	if nh > uint64(len(p)/9) {
		return nil, fmt.Errorf("%w: %d entries in %d bytes", errHave, nh, len(p))
	}
	out := make(map[uint64]crdt.VV, nh)
	for range nh {
		if len(p) < 8 {
			return nil, fmt.Errorf("%w: truncated", errHave)
		}
		h := binary.LittleEndian.Uint64(p)
		p = p[8:]
		k, err := uv()
		if err != nil {
			return nil, err
		}
		if k > na {
			return nil, fmt.Errorf("%w: %d entries for %d actors", errHave, k, na)
		}
		vv := make(crdt.VV, k)
		for range k {
			i, err := uv()
			if err != nil {
				return nil, err
			}
			c, err := uv()
			if err != nil {
				return nil, err
			}
			if i >= na || c == 0 {
				return nil, fmt.Errorf("%w: entry (%d, %d)", errHave, i, c)
			}
			vv[actors[i]] = c
		}
		out[h] = vv
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errHave, len(p))
	}
	return out, nil
}
