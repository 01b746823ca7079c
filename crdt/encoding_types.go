package crdt

import (
	"bytes"
	"fmt"
	"math"
	"slices"

	"github.com/vmihailenco/msgpack/v5"
)

// MarshalBinary encodes c: the tag KindCounter, then a msgpack flat array
// of actor, inc, dec triples in increasing actor order, zero entries left
// out. Equal counters encode to identical bytes. It fails with ErrInvalid
// for an entry of actor 0.
func (c Counter) MarshalBinary() ([]byte, error) {
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	actors := c.actors()
	buf := bytes.NewBuffer(make([]byte, 0, 1+5+27*len(actors)))
	buf.WriteByte(byte(KindCounter))
	withEncoder(buf, func(e *msgpack.Encoder) error {
		if err := e.EncodeArrayLen(3 * len(actors)); err != nil {
			return err
		}
		for _, a := range actors {
			for _, n := range []uint64{uint64(a), c[a].Inc, c[a].Dec} {
				if err := e.EncodeUint(n); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return buf.Bytes(), nil
}

func (c Counter) check() error {
	if e, ok := c[0]; ok && e != (PN{}) {
		return fmt.Errorf("counter entry for actor 0")
	}
	return nil
}

// MarshalBinary encodes s: the tag KindSet, then a msgpack array
// [actors, members, context]. actors is the array of every actor that
// appears in s, increasing; dots refer to actors by index into it, so a dot
// costs its counter and a byte or so. members is an array of
// [member, dots] pairs in increasing byte order of the member (a bin
// string), dots a flat array of index, counter pairs in increasing order.
// The context is [vector, cloud]: the vector a flat array of index, counter
// pairs, the cloud a flat array of index, counter pairs in increasing
// order, leaving out the members' dots (the context holds them anyway).
// Equal sets encode to identical bytes. It fails with ErrInvalid when s is
// not canonical.
func (s ORSet) MarshalBinary() ([]byte, error) {
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return appendSet(nil, s), nil
}

func appendSet(dst []byte, s ORSet) []byte {
	members := s.sortedMembers()
	// The cloud without the members' dots.
	cloud := s.ctx.Cloud()
	if len(cloud) > 0 {
		inStore := map[Dot]bool{}
		for _, ds := range s.entries {
			for _, d := range ds {
				if _, ok := s.ctx.cloud[d]; ok {
					inStore[d] = true
				}
			}
		}
		cloud = slices.DeleteFunc(cloud, func(d Dot) bool { return inStore[d] })
	}
	// The actor table.
	seen := s.ctx.vv.Clone()
	for d := range s.ctx.cloud {
		seen[d.Actor] = 1
	}
	actors := seen.actors() // store dots are in the context
	index := make(map[ActorID]uint64, len(actors))
	for i, a := range actors {
		index[a] = uint64(i)
	}
	size := 1 + 1 + 5 + 9*len(actors) + 5 + 1 + 5 + 12*len(s.ctx.vv) + 5 + 12*len(cloud)
	for _, m := range members {
		size += 1 + 5 + len(m) + 5 + 12*len(s.entries[m])
	}
	buf := bytes.NewBuffer(dst)
	buf.Grow(size)
	buf.WriteByte(byte(KindSet))
	withEncoder(buf, func(e *msgpack.Encoder) error {
		if err := e.EncodeArrayLen(3); err != nil {
			return err
		}
		if err := e.EncodeArrayLen(len(actors)); err != nil {
			return err
		}
		for _, a := range actors {
			if err := e.EncodeUint(uint64(a)); err != nil {
				return err
			}
		}
		if err := e.EncodeArrayLen(len(members)); err != nil {
			return err
		}
		for _, m := range members {
			if err := e.EncodeArrayLen(2); err != nil {
				return err
			}
			if err := e.EncodeBytes([]byte(m)); err != nil {
				return err
			}
			if err := encodeDots(e, s.entries[m], index); err != nil {
				return err
			}
		}
		if err := e.EncodeArrayLen(2); err != nil {
			return err
		}
		vv := make([]Dot, 0, len(s.ctx.vv))
		for _, a := range s.ctx.vv.actors() {
			vv = append(vv, Dot{a, s.ctx.vv[a]})
		}
		if err := encodeDots(e, vv, index); err != nil {
			return err
		}
		return encodeDots(e, cloud, index)
	})
	return buf.Bytes()
}

func (s ORSet) sortedMembers() []string {
	ms := make([]string, 0, len(s.entries))
	for m := range s.entries {
		ms = append(ms, m)
	}
	slices.Sort(ms)
	return ms
}

// encodeDots writes sorted dots as a flat array of actor index, counter
// pairs.
func encodeDots(e *msgpack.Encoder, ds []Dot, index map[ActorID]uint64) error {
	if err := e.EncodeArrayLen(2 * len(ds)); err != nil {
		return err
	}
	for _, d := range ds {
		if err := e.EncodeUint(index[d.Actor]); err != nil {
			return err
		}
		if err := e.EncodeUint(d.Counter); err != nil {
			return err
		}
	}
	return nil
}

// MarshalBinary encodes m: the tag KindMap, then a msgpack array of
// [name, value] pairs sorted by name (bytes), then kind, name a bin string
// and value a bin string holding the field value's own encoding (tag
// first). Equal maps encode to identical bytes. It fails with ErrInvalid
// when m or a field is not canonical.
func (m Map) MarshalBinary() ([]byte, error) {
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	fields := m.Fields()
	encs := make([][]byte, len(fields))
	size := 1 + 5
	for i, f := range fields {
		b, err := f.Value.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("field %q: %w", f.Name, err)
		}
		encs[i] = b
		size += 1 + 5 + len(f.Name) + 5 + len(b)
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	buf.WriteByte(byte(KindMap))
	withEncoder(buf, func(e *msgpack.Encoder) error {
		if err := e.EncodeArrayLen(len(fields)); err != nil {
			return err
		}
		for i, f := range fields {
			for _, err := range []error{
				e.EncodeArrayLen(2),
				e.EncodeBytes([]byte(f.Name)),
				e.EncodeBytes(encs[i]),
			} {
				if err != nil {
					return err
				}
			}
		}
		return nil
	})
	return buf.Bytes(), nil
}

// checkValue reports the first way v breaks its kind's canonical form.
func checkValue(v Value) error {
	switch x := v.(type) {
	case Register:
		return x.check()
	case Counter:
		return x.check()
	case ORSet:
		return x.check()
	case Map:
		return x.check()
	}
	return fmt.Errorf("not a value: %T", v)
}

// KindOf returns the kind of an encoded value (its first byte) without
// decoding the rest. It fails with ErrCorrupt for empty input or an
// unknown tag.
func KindOf(b []byte) (Kind, error) {
	if len(b) == 0 {
		return 0, fmt.Errorf("%w: empty input", ErrCorrupt)
	}
	if k := Kind(b[0]); k.Valid() {
		return k, nil
	}
	return 0, fmt.Errorf("%w: unknown kind %d", ErrCorrupt, b[0])
}

// DecodeValue decodes any value MarshalBinary made, dispatching on the
// tag. Like [DecodeRegister] it checks every length against lim and the
// input before allocating and accepts only canonical encodings. Errors wrap
// ErrCorrupt or ErrTooLarge.
func DecodeValue(b []byte, lim Limits) (Value, error) {
	k, err := KindOf(b)
	if err != nil {
		return nil, err
	}
	switch k {
	case KindRegister:
		return DecodeRegister(b, lim)
	case KindCounter:
		return DecodeCounter(b, lim)
	case KindSet:
		return DecodeSet(b, lim)
	default:
		return DecodeMap(b, lim)
	}
}

// checkTag fails unless b starts with k's tag.
func checkTag(b []byte, k Kind) error {
	switch {
	case len(b) == 0:
		return fmt.Errorf("%w: empty input", ErrCorrupt)
	case b[0] != byte(k):
		return fmt.Errorf("%w: tag %d, want %d (%v)", ErrCorrupt, b[0], k, k)
	}
	return nil
}

// DecodeCounter decodes a counter made by [Counter.MarshalBinary]. At most
// lim.MaxVVEntries actors are accepted. Errors wrap ErrCorrupt or
// ErrTooLarge.
func DecodeCounter(b []byte, lim Limits) (Counter, error) {
	if err := checkTag(b, KindCounter); err != nil {
		return nil, err
	}
	d := newDecoder(b[1:], ErrCorrupt, ErrTooLarge)
	defer d.release()
	n, err := d.arrayLen(math.MaxInt, 1, "counter integers")
	if err != nil {
		return nil, err
	}
	if n%3 != 0 {
		return nil, d.errorf("counter: %d integers, not triples", n)
	}
	if limit := bound(lim.MaxVVEntries); n/3 > limit {
		return nil, fmt.Errorf("%w: %d counter entries, limit %d", ErrTooLarge, n/3, limit)
	}
	c := make(Counter, n/3)
	var prev uint64
	for range n / 3 {
		var x [3]uint64
		for i := range x {
			if x[i], err = d.uint(); err != nil {
				return nil, err
			}
		}
		switch {
		case x[0] == 0:
			return nil, d.errorf("counter entry for actor 0")
		case x[0] <= prev:
			return nil, d.errorf("counter actor %016x after %016x", x[0], prev)
		case x[1] == 0 && x[2] == 0:
			return nil, d.errorf("zero counter entry for %016x", x[0])
		}
		c[ActorID(x[0])] = PN{Inc: x[1], Dec: x[2]}
		prev = x[0]
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return c, nil
}

// DecodeSet decodes a set made by [ORSet.MarshalBinary]. lim.MaxMembers
// bounds the members, lim.MaxMemberBytes each member, lim.MaxDots each
// member's dots and the context's cloud, lim.MaxVVEntries the actors.
// Errors wrap ErrCorrupt or ErrTooLarge.
func DecodeSet(b []byte, lim Limits) (ORSet, error) {
	if err := checkTag(b, KindSet); err != nil {
		return ORSet{}, err
	}
	d := newDecoder(b[1:], ErrCorrupt, ErrTooLarge)
	defer d.release()
	s, err := d.set(lim)
	if err != nil {
		return ORSet{}, err
	}
	if err := d.end(); err != nil {
		return ORSet{}, err
	}
	if err := s.check(); err != nil {
		return ORSet{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return s, nil
}

// minMemberSize is the smallest encoding of one member or field: a
// 2-element array header, an empty bin8 and an empty array.
const minMemberSize = 4

func (d *decoder) fixedArray(n int, what string) error {
	got, err := d.arrayLen(math.MaxInt, 1, what)
	if err != nil {
		return err
	}
	if got != n {
		return d.errorf("%s: %d elements, want %d", what, got, n)
	}
	return nil
}

func (d *decoder) set(lim Limits) (ORSet, error) {
	var s ORSet
	if err := d.fixedArray(3, "set"); err != nil {
		return s, err
	}
	na, err := d.arrayLen(bound(lim.MaxVVEntries), 1, "actors")
	if err != nil {
		return s, err
	}
	actors := make([]ActorID, na)
	for i := range actors {
		a, err := d.uint()
		if err != nil {
			return s, err
		}
		if a == 0 || (i > 0 && ActorID(a) <= actors[i-1]) {
			return s, d.errorf("actor %016x at %d", a, i)
		}
		actors[i] = ActorID(a)
	}
	used := make([]bool, na)
	n, err := d.arrayLen(bound(lim.MaxMembers), minMemberSize, "members")
	if err != nil {
		return s, err
	}
	if n > 0 {
		s.entries = make(map[string][]Dot, n)
	}
	var prev []byte
	for i := range n {
		if err := d.fixedArray(2, "member"); err != nil {
			return s, err
		}
		m, err := d.bytes(bound(lim.MaxMemberBytes))
		if err != nil {
			return s, fmt.Errorf("member %d: %w", i, err)
		}
		if i > 0 && bytes.Compare(prev, m) >= 0 {
			return s, d.errorf("member %q not after %q", m, prev)
		}
		prev = m
		ds, err := d.dots(bound(lim.MaxDots), actors, used)
		if err != nil {
			return s, fmt.Errorf("member %q: %w", m, err)
		}
		if len(ds) == 0 {
			return s, d.errorf("member %q without dots", m)
		}
		s.entries[string(m)] = ds
	}
	if err := d.fixedArray(2, "context"); err != nil {
		return s, err
	}
	vv, err := d.dots(math.MaxInt, actors, used) // duplicates are caught below
	if err != nil {
		return s, fmt.Errorf("vector: %w", err)
	}
	s.ctx.vv = make(VV, len(vv))
	for i, dt := range vv {
		if i > 0 && vv[i-1].Actor == dt.Actor {
			return s, d.errorf("vector: actor %016x twice", dt.Actor)
		}
		s.ctx.vv[dt.Actor] = dt.Counter
	}
	cloud, err := d.dots(bound(lim.MaxDots), actors, used)
	if err != nil {
		return s, fmt.Errorf("cloud: %w", err)
	}
	if i := slices.Index(used, false); i >= 0 {
		return s, d.errorf("actor %016x unused", actors[i])
	}
	for _, dt := range cloud {
		if dt.Counter <= s.ctx.vv[dt.Actor]+1 {
			return s, d.errorf("cloud dot %v not beyond prefix %d+1", dt, s.ctx.vv[dt.Actor])
		}
		s.ctx.insert(dt)
	}
	// The members' dots are in the context without being listed.
	explicit := len(s.ctx.cloud)
	for m, ds := range s.entries {
		for _, dt := range ds {
			if dt.Counter <= s.ctx.vv[dt.Actor] {
				continue
			}
			if dt.Counter == s.ctx.vv[dt.Actor]+1 {
				return s, d.errorf("member %q: dot %v extends the vector", m, dt)
			}
			if explicit > 0 {
				if _, dup := s.ctx.cloud[dt]; dup {
					return s, d.errorf("member %q: dot %v listed in the cloud", m, dt)
				}
			}
			s.ctx.insert(dt)
		}
	}
	if len(s.ctx.cloud) > bound(lim.MaxDots) {
		return s, fmt.Errorf("%w: %d cloud dots, limit %d", d.tooLarge, len(s.ctx.cloud), bound(lim.MaxDots))
	}
	return s, nil
}

// dots reads a flat array of at most limit valid dots in strictly
// increasing order, actors given by index into actors; it marks the
// actors used.
func (d *decoder) dots(limit int, actors []ActorID, used []bool) ([]Dot, error) {
	n, err := d.arrayLen(math.MaxInt, 1, "dot integers")
	if err != nil {
		return nil, err
	}
	if n%2 != 0 {
		return nil, d.errorf("dots: odd length %d", n)
	}
	if n/2 > limit {
		return nil, fmt.Errorf("%w: %d dots, limit %d", d.tooLarge, n/2, limit)
	}
	ds := make([]Dot, 0, n/2)
	for range n / 2 {
		i, err := d.uint()
		if err != nil {
			return nil, err
		}
		c, err := d.uint()
		if err != nil {
			return nil, err
		}
		if i >= uint64(len(actors)) {
			return nil, d.errorf("actor index %d of %d", i, len(actors))
		}
		used[i] = true
		dt := Dot{actors[i], c}
		switch {
		case c == 0:
			return nil, d.errorf("invalid dot %v", dt)
		case len(ds) > 0 && compareDots(ds[len(ds)-1], dt) >= 0:
			return nil, d.errorf("dot %v not after %v", dt, ds[len(ds)-1])
		}
		ds = append(ds, dt)
	}
	return ds, nil
}

// DecodeMap decodes a map made by [Map.MarshalBinary]. lim.MaxFields
// bounds the fields, lim.MaxMemberBytes each name, and each field's value
// is decoded with lim. Errors wrap ErrCorrupt or ErrTooLarge.
func DecodeMap(b []byte, lim Limits) (Map, error) {
	if err := checkTag(b, KindMap); err != nil {
		return Map{}, err
	}
	d := newDecoder(b[1:], ErrCorrupt, ErrTooLarge)
	defer d.release()
	n, err := d.arrayLen(bound(lim.MaxFields), minMemberSize, "fields")
	if err != nil {
		return Map{}, err
	}
	var m Map
	if n > 0 {
		m.fields = make(map[FieldKey]Value, n)
	}
	var prev FieldKey
	for i := range n {
		if err := d.fixedArray(2, "field"); err != nil {
			return Map{}, err
		}
		name, err := d.bytes(bound(lim.MaxMemberBytes))
		if err != nil {
			return Map{}, fmt.Errorf("field %d: %w", i, err)
		}
		enc, err := d.bytes(math.MaxInt)
		if err != nil {
			return Map{}, fmt.Errorf("field %q: %w", name, err)
		}
		k, err := KindOf(enc)
		if err != nil {
			return Map{}, fmt.Errorf("field %q: %w", name, err)
		}
		if k == KindMap {
			return Map{}, d.errorf("field %q: nested map", name)
		}
		key := FieldKey{Name: string(name), Kind: k}
		if i > 0 && compareFieldKeys(prev, key) >= 0 {
			return Map{}, d.errorf("field %v not after %v", key, prev)
		}
		prev = key
		v, err := DecodeValue(enc, lim)
		if err != nil {
			return Map{}, fmt.Errorf("field %q: %w", name, err)
		}
		if isZeroValue(v) {
			return Map{}, d.errorf("field %q: empty %v", name, k)
		}
		m.fields[key] = v
	}
	if err := d.end(); err != nil {
		return Map{}, err
	}
	return m, nil
}
