package crdt

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"math"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Errors. Decoders wrap them with details; test with errors.Is.
var (
	// ErrCorrupt reports an encoded value (register, counter, set or map)
	// that is malformed, truncated, not in canonical form, or of an unknown
	// format.
	ErrCorrupt = errors.New("crdt: corrupt value")
	// ErrTooLarge reports an encoded value beyond the decoder's Limits.
	ErrTooLarge = errors.New("crdt: value exceeds decode limits")
	// ErrContext reports a causal context token that cannot be decoded or
	// has too many entries.
	ErrContext = errors.New("crdt: invalid context")
	// ErrInvalid reports a value that breaks the canonical form when
	// encoding it: a bug in whoever built it.
	ErrInvalid = errors.New("crdt: invalid value")
)

// Format bytes: the first byte of every encoding, so formats can evolve.
const (
	registerFormat1 = 1
	contextFormat1  = 1
)

// flagDeleted marks a tombstone in a version's flags field; the other bits
// must be zero.
const flagDeleted = 1

// minVersionSize is the smallest encoding of one version: a 6-element array
// header, four one-byte integers, an empty bin8 and an empty array.
const minVersionSize = 8

// Limits are sanity bounds checked while decoding a value, before
// anything is allocated. A zero field means no bound beyond the length of
// the input itself (which always bounds allocation).
type Limits struct {
	// MaxVersions bounds the number of versions (siblings and tombstones).
	MaxVersions int
	// MaxVVEntries bounds the entries of each version's context, of a
	// set context's vector and of a counter.
	MaxVVEntries int
	// MaxValueBytes bounds each value.
	MaxValueBytes int
	// MaxMembers bounds the members of a set.
	MaxMembers int
	// MaxMemberBytes bounds each set member and each map field name.
	MaxMemberBytes int
	// MaxDots bounds the dots of each set member and of a set context's
	// cloud.
	MaxDots int
	// MaxFields bounds the fields of a map.
	MaxFields int
}

// MarshalBinary encodes r: a format byte, then a msgpack array of versions,
// each a fixed array [actor, counter, hlc, flags, value, ctx] with ctx a
// flat array of actor, counter pairs in increasing actor order. Equal
// registers encode to identical bytes. It fails with ErrInvalid when r is
// not canonical.
func (r Register) MarshalBinary() ([]byte, error) {
	if err := r.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return appendRegister(nil, r), nil
}

func appendRegister(dst []byte, r Register) []byte {
	size := 1 + 5
	for _, v := range r.Versions {
		size += 1 + 3*9 + 1 + 5 + len(v.Value) + 5 + 18*len(v.Ctx)
	}
	buf := bytes.NewBuffer(dst)
	buf.Grow(size)
	buf.WriteByte(registerFormat1)
	withEncoder(buf, func(e *msgpack.Encoder) error {
		if err := e.EncodeArrayLen(len(r.Versions)); err != nil {
			return err
		}
		for _, v := range r.Versions {
			if err := encodeVersion(e, v); err != nil {
				return err
			}
		}
		return nil
	})
	return buf.Bytes()
}

// appendVersion appends the encoding of one version (no format byte).
func appendVersion(dst []byte, v Version) []byte {
	buf := bytes.NewBuffer(dst)
	withEncoder(buf, func(e *msgpack.Encoder) error { return encodeVersion(e, v) })
	return buf.Bytes()
}

// withEncoder runs fn with a pooled encoder writing to buf. Writes to a
// bytes.Buffer cannot fail, so neither can fn.
func withEncoder(buf *bytes.Buffer, fn func(*msgpack.Encoder) error) {
	e := msgpack.GetEncoder()
	defer msgpack.PutEncoder(e)
	e.Reset(buf)
	if err := fn(e); err != nil {
		panic(fmt.Sprintf("crdt: msgpack encoding into memory failed: %v", err))
	}
}

func encodeVersion(e *msgpack.Encoder, v Version) error {
	var flags uint64
	value := v.Value
	if v.Deleted {
		flags |= flagDeleted
		value = nil
	}
	if value == nil {
		value = []byte{} // EncodeBytes(nil) would write msgpack nil
	}
	for _, err := range []error{
		e.EncodeArrayLen(6),
		e.EncodeUint(uint64(v.Dot.Actor)),
		e.EncodeUint(v.Dot.Counter),
		e.EncodeUint(uint64(v.HLC)),
		e.EncodeUint(flags),
		e.EncodeBytes(value),
	} {
		if err != nil {
			return err
		}
	}
	return encodeVV(e, v.Ctx)
}

func encodeVV(e *msgpack.Encoder, vv VV) error {
	actors := vv.actors()
	if err := e.EncodeArrayLen(2 * len(actors)); err != nil {
		return err
	}
	for _, a := range actors {
		if err := e.EncodeUint(uint64(a)); err != nil {
			return err
		}
		if err := e.EncodeUint(vv[a]); err != nil {
			return err
		}
	}
	return nil
}

// check reports the first way r breaks the canonical form.
func (r Register) check() error {
	seen := make(VV)
	for i, v := range r.Versions {
		if !v.Dot.Valid() {
			return fmt.Errorf("version %d: invalid dot %v", i, v.Dot)
		}
		if i > 0 && compareDots(r.Versions[i-1].Dot, v.Dot) >= 0 {
			return fmt.Errorf("version %d: dot %v not after %v", i, v.Dot, r.Versions[i-1].Dot)
		}
		if v.Deleted && len(v.Value) != 0 {
			return fmt.Errorf("version %v: tombstone with a value", v.Dot)
		}
		for a, c := range v.Ctx {
			if a == 0 && c != 0 {
				return fmt.Errorf("version %v: context entry %d:%d", v.Dot, a, c)
			}
		}
		if v.Ctx.Covers(v.Dot) {
			return fmt.Errorf("version %v: context %v covers its own dot", v.Dot, v.Ctx)
		}
		seen.joinInPlace(v.Ctx)
	}
	for _, v := range r.Versions {
		if seen.Covers(v.Dot) {
			return fmt.Errorf("version %v: superseded by another version's context", v.Dot)
		}
	}
	return nil
}

// DecodeRegister decodes and validates an encoding made by MarshalBinary.
// Every length is checked against lim and against the remaining input
// before anything is allocated. It accepts only the canonical encoding of a
// canonical register, so whatever it accepts re-encodes to identical
// bytes. Errors wrap ErrCorrupt or ErrTooLarge.
func DecodeRegister(b []byte, lim Limits) (Register, error) {
	if len(b) == 0 {
		return Register{}, fmt.Errorf("%w: empty input", ErrCorrupt)
	}
	if b[0] != registerFormat1 {
		return Register{}, fmt.Errorf("%w: unknown format %d", ErrCorrupt, b[0])
	}
	d := newDecoder(b[1:], ErrCorrupt, ErrTooLarge)
	defer d.release()
	n, err := d.arrayLen(bound(lim.MaxVersions), minVersionSize, "versions")
	if err != nil {
		return Register{}, err
	}
	var r Register
	if n > 0 {
		r.Versions = make([]Version, 0, n)
	}
	for i := range n {
		v, err := d.version(lim)
		if err != nil {
			return Register{}, fmt.Errorf("version %d: %w", i, err)
		}
		r.Versions = append(r.Versions, v)
	}
	if err := d.end(); err != nil {
		return Register{}, err
	}
	if err := r.check(); err != nil {
		return Register{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return r, nil
}

// EncodeContext encodes v as an opaque token for clients: "" for an empty
// v, else base64 (URL alphabet, no padding) of a format byte and the
// msgpack flat array of actor, counter pairs in increasing actor order.
func EncodeContext(v VV) string {
	if len(v.actors()) == 0 {
		return ""
	}
	buf := bytes.NewBuffer(make([]byte, 0, 1+5+18*len(v)))
	buf.WriteByte(contextFormat1)
	withEncoder(buf, func(e *msgpack.Encoder) error { return encodeVV(e, v) })
	return base64.RawURLEncoding.EncodeToString(buf.Bytes())
}

// DecodeContext decodes a token made by EncodeContext; "" is the empty
// context. It rejects anything but the canonical token of a valid version
// vector with at most maxEntries entries. Errors wrap ErrContext.
func DecodeContext(s string, maxEntries int) (VV, error) {
	if s == "" {
		return VV{}, nil
	}
	maxEntries = max(maxEntries, 0)
	// 18 bytes per entry at most (two uint64s); the bound avoids overflow.
	if maxRaw := 1 + 5 + 18*min(maxEntries, 1<<32); len(s) > base64.RawURLEncoding.EncodedLen(maxRaw) {
		return nil, fmt.Errorf("%w: %d bytes, more than %d entries can take", ErrContext, len(s), maxEntries)
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrContext, err)
	}
	if base64.RawURLEncoding.EncodeToString(raw) != s {
		return nil, fmt.Errorf("%w: non-canonical base64", ErrContext)
	}
	if raw[0] != contextFormat1 {
		return nil, fmt.Errorf("%w: unknown format %d", ErrContext, raw[0])
	}
	d := newDecoder(raw[1:], ErrContext, ErrContext)
	defer d.release()
	vv, err := d.vv(maxEntries)
	if err != nil {
		return nil, err
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	if len(vv) == 0 {
		return nil, fmt.Errorf("%w: empty context must be the empty token", ErrContext)
	}
	return vv, nil
}

// decoder reads canonical msgpack from memory, checking every length
// against the remaining input.
type decoder struct {
	r        *bytes.Reader
	d        *msgpack.Decoder
	corrupt  error // wrapped by malformed-input errors
	tooLarge error // wrapped by limit errors
}

func newDecoder(b []byte, corrupt, tooLarge error) *decoder {
	d := &decoder{r: bytes.NewReader(b), d: msgpack.GetDecoder(), corrupt: corrupt, tooLarge: tooLarge}
	d.d.Reset(d.r) // a bytes.Reader is read directly, without buffering
	return d
}

func (d *decoder) release() { msgpack.PutDecoder(d.d) }

func (d *decoder) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{d.corrupt}, args...)...)
}

// peek returns the next msgpack code.
func (d *decoder) peek() (byte, error) {
	c, err := d.d.PeekCode()
	if err != nil {
		return 0, d.errorf("truncated")
	}
	return c, nil
}

// uint reads an unsigned integer in its shortest encoding.
func (d *decoder) uint() (uint64, error) {
	c, err := d.peek()
	if err != nil {
		return 0, err
	}
	n, err := d.d.DecodeUint64()
	if err != nil {
		return 0, d.errorf("integer: %v", err)
	}
	if c != uintCode(n) {
		return 0, d.errorf("integer %d in non-canonical encoding 0x%02x", n, c)
	}
	return n, nil
}

// arrayLen reads an array header of at most limit elements, each taking at
// least minElem bytes of what is left.
func (d *decoder) arrayLen(limit, minElem int, what string) (int, error) {
	c, err := d.peek()
	if err != nil {
		return 0, err
	}
	n, err := d.d.DecodeArrayLen()
	switch {
	case err != nil:
		return 0, d.errorf("%s: %v", what, err)
	case n < 0 || c != arrayCode(n):
		return 0, d.errorf("%s: non-canonical array header 0x%02x", what, c)
	case n > limit:
		return 0, fmt.Errorf("%w: %d %s, limit %d", d.tooLarge, n, what, limit)
	case n > d.r.Len()/minElem:
		return 0, d.errorf("%d %s in %d bytes", n, what, d.r.Len())
	}
	return n, nil
}

// bytes reads a bin string of at most limit bytes.
func (d *decoder) bytes(limit int) ([]byte, error) {
	c, err := d.peek()
	if err != nil {
		return nil, err
	}
	if c != msgpcode.Bin8 && c != msgpcode.Bin16 && c != msgpcode.Bin32 {
		return nil, d.errorf("value: code 0x%02x is not bin", c)
	}
	n, err := d.d.DecodeBytesLen()
	switch {
	case err != nil:
		return nil, d.errorf("value: %v", err)
	case n < 0 || c != binCode(n):
		return nil, d.errorf("value: non-canonical bin header 0x%02x", c)
	case n > limit:
		return nil, fmt.Errorf("%w: %d value bytes, limit %d", d.tooLarge, n, limit)
	case n > d.r.Len():
		return nil, d.errorf("value: %d bytes, %d left", n, d.r.Len())
	}
	b := make([]byte, n)
	if err := d.d.ReadFull(b); err != nil {
		return nil, d.errorf("value: %v", err)
	}
	return b, nil
}

// vv reads a flat array of at most maxEntries actor, counter pairs,
// strictly increasing by actor, with nonzero actors and counters.
func (d *decoder) vv(maxEntries int) (VV, error) {
	n, err := d.arrayLen(math.MaxInt, 1, "context integers")
	if err != nil {
		return nil, err
	}
	if n%2 != 0 {
		return nil, d.errorf("context: odd length %d", n)
	}
	if n/2 > maxEntries {
		return nil, fmt.Errorf("%w: %d context entries, limit %d", d.tooLarge, n/2, maxEntries)
	}
	vv := make(VV, n/2)
	var prev uint64
	for range n / 2 {
		a, err := d.uint()
		if err != nil {
			return nil, err
		}
		c, err := d.uint()
		if err != nil {
			return nil, err
		}
		switch {
		case a == 0 || c == 0:
			return nil, d.errorf("context entry %d:%d", a, c)
		case a <= prev:
			return nil, d.errorf("context actor %016x after %016x", a, prev)
		}
		vv[ActorID(a)] = c
		prev = a
	}
	return vv, nil
}

func (d *decoder) version(lim Limits) (Version, error) {
	var v Version
	n, err := d.arrayLen(math.MaxInt, 1, "fields")
	if err != nil {
		return v, err
	}
	if n != 6 {
		return v, d.errorf("%d fields, want 6", n)
	}
	var ints [4]uint64
	for i := range ints {
		if ints[i], err = d.uint(); err != nil {
			return v, err
		}
	}
	v.Dot = Dot{Actor: ActorID(ints[0]), Counter: ints[1]}
	v.HLC = Timestamp(ints[2])
	if !v.Dot.Valid() {
		return v, d.errorf("invalid dot %v", v.Dot)
	}
	switch flags := ints[3]; flags {
	case 0:
	case flagDeleted:
		v.Deleted = true
	default:
		return v, d.errorf("unknown flags %#x", flags)
	}
	if v.Value, err = d.bytes(bound(lim.MaxValueBytes)); err != nil {
		return v, err
	}
	if v.Deleted {
		if len(v.Value) != 0 {
			return v, d.errorf("tombstone %v with a value", v.Dot)
		}
		v.Value = nil
	}
	if v.Ctx, err = d.vv(bound(lim.MaxVVEntries)); err != nil {
		return v, err
	}
	return v, nil
}

// bound turns a Limits field into a bound: zero or less means none.
func bound(limit int) int {
	if limit <= 0 {
		return math.MaxInt
	}
	return limit
}

// end fails unless all input was read.
func (d *decoder) end() error {
	if n := d.r.Len(); n != 0 {
		return d.errorf("%d trailing bytes", n)
	}
	return nil
}

// uintCode is the msgpack code EncodeUint uses for n.
func uintCode(n uint64) byte {
	switch {
	case n <= math.MaxInt8:
		return byte(n)
	case n <= math.MaxUint8:
		return msgpcode.Uint8
	case n <= math.MaxUint16:
		return msgpcode.Uint16
	case n <= math.MaxUint32:
		return msgpcode.Uint32
	}
	return msgpcode.Uint64
}

// arrayCode is the msgpack code EncodeArrayLen uses for n.
func arrayCode(n int) byte {
	switch {
	case n < 16:
		return msgpcode.FixedArrayLow | byte(n)
	case n <= math.MaxUint16:
		return msgpcode.Array16
	}
	return msgpcode.Array32
}

// binCode is the msgpack code EncodeBytesLen uses for n.
func binCode(n int) byte {
	switch {
	case n < 256:
		return msgpcode.Bin8
	case n <= math.MaxUint16:
		return msgpcode.Bin16
	}
	return msgpcode.Bin32
}
