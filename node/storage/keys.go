package storage

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/cespare/xxhash/v2"
)

// Key space prefixes. Every pebble key starts with one of these bytes.
const (
	prefixData = 'd' // 'd' | be64(hash) | key
	prefixHint = 'h' // 'h' | be64(target) | be64(hash) | key
	prefixMeta = 'm' // 'm' | name
)

// MaxKeySize is the largest key (and metadata name) the store accepts.
const MaxKeySize = 1 << 20

// Hash is the position of key in the hash space: xxhash64, the same hash
// the ring uses, so a slice of the ring is one contiguous range of data keys.
func Hash(key []byte) uint64 { return xxhash.Sum64(key) }

func checkKey(key []byte) error {
	switch {
	case len(key) == 0:
		return fmt.Errorf("%w: empty key", ErrInvalid)
	case len(key) > MaxKeySize:
		return fmt.Errorf("%w: key of %d bytes exceeds %d", ErrInvalid, len(key), MaxKeySize)
	}
	return nil
}

func dataKey(hash uint64, key []byte) []byte {
	k := make([]byte, 0, 9+len(key))
	k = append(k, prefixData)
	k = binary.BigEndian.AppendUint64(k, hash)
	return append(k, key...)
}

// dataBound is the first data key at or after hash position h.
func dataBound(h uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixData}, h)
}

// decodeDataKey splits a stored data key and checks that its hash prefix
// is the hash of its key.
func decodeDataKey(k []byte) (hash uint64, key []byte, err error) {
	if len(k) < 10 || k[0] != prefixData {
		return 0, nil, fmt.Errorf("%w: malformed data key %x", ErrCorrupt, trunc(k))
	}
	hash, key = binary.BigEndian.Uint64(k[1:9]), k[9:]
	if Hash(key) != hash {
		return 0, nil, fmt.Errorf("%w: data key %q stored under hash %016x, want %016x", ErrCorrupt, trunc(key), hash, Hash(key))
	}
	return hash, key, nil
}

func hintPrefix(target uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixHint}, target)
}

func hintKey(target, hash uint64, key []byte) []byte {
	k := make([]byte, 0, 17+len(key))
	k = append(k, prefixHint)
	k = binary.BigEndian.AppendUint64(k, target)
	k = binary.BigEndian.AppendUint64(k, hash)
	return append(k, key...)
}

// decodeHintKey splits a stored hint key and checks its hash.
func decodeHintKey(k []byte) (target uint64, key []byte, err error) {
	if len(k) < 18 || k[0] != prefixHint {
		return 0, nil, fmt.Errorf("%w: malformed hint key %x", ErrCorrupt, trunc(k))
	}
	target, hash, key := binary.BigEndian.Uint64(k[1:9]), binary.BigEndian.Uint64(k[9:17]), k[17:]
	if Hash(key) != hash {
		return 0, nil, fmt.Errorf("%w: hint key %q stored under hash %016x, want %016x", ErrCorrupt, trunc(key), hash, Hash(key))
	}
	return target, key, nil
}

func metaKey(name string) []byte {
	return append([]byte{prefixMeta}, name...)
}

// The store's own records (identity, counter high-water mark) are
//
//	format byte (recordV1) | be64 value | be32 CRC-32C of the preceding 9 bytes
//
// The checksum catches a record damaged in place; pebble's own block
// checksums catch damage on disk.
const (
	recordV1   = 1
	recordSize = 1 + 8 + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func encodeRecord(v uint64) []byte {
	b := make([]byte, 0, recordSize)
	b = append(b, recordV1)
	b = binary.BigEndian.AppendUint64(b, v)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeRecord(b []byte) (uint64, error) {
	if len(b) != recordSize {
		return 0, fmt.Errorf("%w: record of %d bytes, want %d", ErrCorrupt, len(b), recordSize)
	}
	if b[0] != recordV1 {
		return 0, fmt.Errorf("%w: unknown record format %d", ErrCorrupt, b[0])
	}
	if got, want := binary.BigEndian.Uint32(b[9:]), crc32.Checksum(b[:9], castagnoli); got != want {
		return 0, fmt.Errorf("%w: record checksum %08x, want %08x", ErrCorrupt, got, want)
	}
	return binary.BigEndian.Uint64(b[1:9]), nil
}

// trunc shortens a key for error messages: keys may be up to 1 MiB.
func trunc(b []byte) []byte {
	const max = 64
	if len(b) > max {
		return b[:max]
	}
	return b
}
