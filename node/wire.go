package node

import (
	"bytes"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Peer RPC methods. Bodies are msgpack; register states inside them use the
// crdt package's versioned binary encoding. Every decoded message is
// validated before use (see checkKey); a bad message fails that request only.
const (
	// methodReplicate merges a register state into the receiver's copy
	// (replication, read repair, hint handoff). Empty reply once durable.
	methodReplicate uint16 = 1
	// methodRead returns the receiver's own copy of a key.
	methodRead uint16 = 2
	// methodHint stores a state for an unreachable replica (sloppy quorum).
	methodHint uint16 = 3
	// methodCoordinate asks a primary replica to coordinate a client write.
	methodCoordinate uint16 = 4
)

// maxWireKey bounds keys on the peer path. Client limits (MaxKeySize) are
// lower and apply only at the client API; this only rejects garbage.
const maxWireKey = 64 << 10

type replicateReq struct {
	Key []byte `msgpack:"k"`
	Reg []byte `msgpack:"r"`
}

type readReq struct {
	Key []byte `msgpack:"k"`
}

type readResp struct {
	Found bool   `msgpack:"f"`
	Reg   []byte `msgpack:"r"`
}

type hintReq struct {
	Target uint64 `msgpack:"t"`
	Key    []byte `msgpack:"k"`
	Reg    []byte `msgpack:"r"`
}

type coordinateReq struct {
	Key     []byte `msgpack:"k"`
	Value   []byte `msgpack:"v"`
	Context string `msgpack:"c"`
	Deleted bool   `msgpack:"d"`
	W       int    `msgpack:"w"`
}

type coordinateResp struct {
	Context string `msgpack:"c"`
}

// encode encodes a peer message. Structs go out as msgpack arrays of their
// fields in order (no field names on the wire). msgpack v5 refuses an array
// whose length differs from the struct's field count, so adding, removing
// or reordering a field is an incompatible change of that message (see
// docs/formats.md); a new message needs a new method number.
func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(&buf)
	enc.UseArrayEncodedStructs(true)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// decode decodes a peer message, after checking that no declared length in
// it exceeds the bytes present.
func decode(b []byte, v any) error {
	if err := checkMsgpack(b); err != nil {
		return fmt.Errorf("node: decode %T: %w", v, err)
	}
	if err := msgpack.Unmarshal(b, v); err != nil {
		return fmt.Errorf("node: decode %T: %w", v, err)
	}
	return nil
}

func checkKey(k []byte) error {
	if len(k) == 0 || len(k) > maxWireKey {
		return fmt.Errorf("node: key length %d out of range", len(k))
	}
	return nil
}
