package crdt

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// FieldKey names a map field: its name and the kind of its value.
type FieldKey struct {
	Name string
	Kind Kind
}

func compareFieldKeys(a, b FieldKey) int {
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	return cmp.Compare(a.Kind, b.Kind)
}

// Field is one field of a [Map].
type Field struct {
	Name  string
	Value Value
}

// Map is a map from field names to registers, counters and sets, each
// field merging with its own type's join.
//
// Fields are keyed by name and kind: if one replica makes field f a counter
// and another makes it a set, the join keeps both, as (f, counter) and
// (f, set), and [Map.Fields] lists both in kind order. Nothing is lost and
// every replica sees the same thing; the reader (or a later node policy)
// decides what a conflict means.
//
// Fields are never removed. A removed field would need the map's own
// causal context and every field's state to be a dot store sharing it
// (Almeida's ORMap), which neither the register (version vectors per
// version) nor the counter (no dots at all) is. To clear a field, clear its
// value: write a tombstone to a register, remove a set's members, add the
// negated value to a counter. An empty field costs a name and a few bytes.
// Maps do not nest: a field cannot hold a map.
//
// Canonical form, kept by every method: no field holds its kind's empty
// value (a join with it changes nothing), and every field's value is
// canonical. The zero Map is empty. Methods other than Merge never modify
// their receiver.
type Map struct {
	fields map[FieldKey]Value
	owned  map[FieldKey]bool // set fields Merge copied and may update in place
}

// MapDelta returns the map holding only field name with value v: the delta
// of a change to that field, v being the field's own delta. It fails when v
// is a map or nil (maps do not nest).
func MapDelta(name string, v Value) (Map, error) {
	if v == nil || v.Kind() == KindMap {
		return Map{}, fmt.Errorf("crdt: map field %q: %s values cannot be fields", name, kindOf(v))
	}
	if isZeroValue(v) {
		return Map{}, nil
	}
	return Map{fields: map[FieldKey]Value{{name, v.Kind()}: v}}, nil
}

func fieldDelta(name string, v Value) Map {
	m, err := MapDelta(name, v)
	if err != nil {
		panic(err) // v is never a map here
	}
	return m
}

// Counter returns field name's counter (empty when absent).
func (m Map) Counter(name string) Counter {
	c, _ := m.fields[FieldKey{name, KindCounter}].(Counter)
	return c
}

// Set returns field name's set (empty when absent).
func (m Map) Set(name string) ORSet {
	s, _ := m.fields[FieldKey{name, KindSet}].(ORSet)
	return s
}

// Register returns field name's register (empty when absent).
func (m Map) Register(name string) Register {
	r, _ := m.fields[FieldKey{name, KindRegister}].(Register)
	return r
}

// AddCounter returns the delta of adding n to counter field name on behalf
// of actor (see [Counter.Add]).
func (m Map) AddCounter(actor ActorID, name string, n int64) Map {
	return fieldDelta(name, m.Counter(name).Add(actor, n))
}

// AddMember returns the delta of adding member to set field name on behalf
// of actor (see [ORSet.Add]).
func (m Map) AddMember(actor ActorID, name string, member []byte) Map {
	return fieldDelta(name, m.Set(name).Add(actor, member))
}

// RemoveMember returns the delta of removing member from set field name
// (see [ORSet.Remove]).
func (m Map) RemoveMember(name string, member []byte) Map {
	return fieldDelta(name, m.Set(name).Remove(member))
}

// WriteRegister returns the delta of a write to register field name (see
// [Register.Write]). A register's delta is its whole new state: registers
// are small, and their version-vector contexts are exact only when states
// travel whole (see the package documentation).
func (m Map) WriteRegister(name string, dot Dot, ctx VV, hlc Timestamp, value []byte, deleted bool) Map {
	return fieldDelta(name, m.Register(name).Write(dot, ctx, hlc, value, deleted))
}

// Join returns the field-wise join of m and o. It is commutative,
// associative and idempotent whenever its fields' joins are.
func (m Map) Join(o Map) Map {
	out := Map{fields: maps.Clone(m.fields)}
	if out.fields == nil {
		out.fields = make(map[FieldKey]Value, len(o.fields))
	}
	for k, v := range o.fields {
		cur, ok := out.fields[k]
		if !ok {
			out.fields[k] = v
			continue
		}
		j, err := JoinValues(cur, v)
		if err != nil {
			panic(fmt.Sprintf("crdt: map field %v: %v", k, err)) // the key holds the kind
		}
		out.fields[k] = j
	}
	if len(out.fields) == 0 {
		out.fields = nil
	}
	return out
}

// Merge joins o into m in place; afterwards m equals the old m.Join(o).
// Set fields are merged with [ORSet.Merge] (each is copied once, on its
// first Merge), so a delta to a large set field costs O(delta), not
// O(set). m must not share memory with another Map (one returned by Join,
// a mutator or DecodeMap does not, except with its inputs, which Merge
// does not modify); o is not modified. Fields read from m before the Merge
// may change with it.
func (m *Map) Merge(o Map) {
	if len(o.fields) == 0 {
		return
	}
	if m.fields == nil {
		m.fields = make(map[FieldKey]Value, len(o.fields))
	}
	if m.owned == nil {
		m.owned = map[FieldKey]bool{}
	}
	for k, v := range o.fields {
		cur, ok := m.fields[k]
		switch {
		case !ok:
			m.fields[k] = v
		case k.Kind == KindSet:
			s := cur.(ORSet)
			if !m.owned[k] {
				s = s.Join(ORSet{}) // a private copy
				m.owned[k] = true
			}
			s.Merge(v.(ORSet))
			m.fields[k] = s
		default:
			j, err := JoinValues(cur, v)
			if err != nil {
				panic(fmt.Sprintf("crdt: map field %v: %v", k, err)) // the key holds the kind
			}
			m.fields[k] = j
		}
	}
}

// Get returns the value of field (name, kind).
func (m Map) Get(name string, kind Kind) (Value, bool) {
	v, ok := m.fields[FieldKey{name, kind}]
	return v, ok
}

// Fields returns the fields sorted by name, then kind. A name appears more
// than once only after a type conflict.
func (m Map) Fields() []Field {
	keys := slices.SortedFunc(maps.Keys(m.fields), compareFieldKeys)
	out := make([]Field, len(keys))
	for i, k := range keys {
		out[i] = Field{Name: k.Name, Value: m.fields[k]}
	}
	return out
}

// Len returns the number of fields.
func (m Map) Len() int { return len(m.fields) }

// Equal reports whether m and o hold equal fields. Both must be canonical.
func (m Map) Equal(o Map) bool { return maps.EqualFunc(m.fields, o.fields, EqualValues) }

// check reports the first way m breaks the canonical form.
func (m Map) check() error {
	for k, v := range m.fields {
		switch {
		case v == nil || k.Kind != v.Kind():
			return fmt.Errorf("field %q: key kind %v, value %s", k.Name, k.Kind, kindOf(v))
		case k.Kind == KindMap:
			return fmt.Errorf("field %q: nested map", k.Name)
		case isZeroValue(v):
			return fmt.Errorf("field %q: empty %v", k.Name, k.Kind)
		}
		if err := checkValue(v); err != nil {
			return fmt.Errorf("field %q: %v", k.Name, err)
		}
	}
	return nil
}

// String formats m for test output: fields in order as name/kind=value.
func (m Map) String() string {
	parts := []string{}
	for _, f := range m.Fields() {
		parts = append(parts, fmt.Sprintf("%q/%v=%v", f.Name, f.Value.Kind(), f.Value))
	}
	return "{" + strings.Join(parts, " ") + "}"
}
