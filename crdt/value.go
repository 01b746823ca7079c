package crdt

import (
	"errors"
	"fmt"
)

// Kind tags a typed value. It is also the first byte of the value's
// encoding, so storage can tell a register record from a counter, a set or
// a map without decoding it. The register's tag is its existing format
// byte: registers stored before the other types existed decode unchanged.
type Kind uint8

// The kinds. Zero is invalid.
const (
	KindRegister Kind = 1
	KindCounter  Kind = 2
	KindSet      Kind = 3
	KindMap      Kind = 4
)

// String returns the kind's name: "register", "counter", "set" or "map".
func (k Kind) String() string {
	switch k {
	case KindRegister:
		return "register"
	case KindCounter:
		return "counter"
	case KindSet:
		return "set"
	case KindMap:
		return "map"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Valid reports whether k is one of the kinds.
func (k Kind) Valid() bool { return k >= KindRegister && k <= KindMap }

// ErrKindMismatch reports a join of two values of different kinds. The
// package does not pick a winner: the caller decides the policy.
var ErrKindMismatch = errors.New("crdt: values of different kinds")

// Value is a replicated value of one of the kinds: [Register], [Counter],
// [ORSet] or [Map]. MarshalBinary encodes it canonically, starting with its
// kind; [DecodeValue] reads any kind back.
type Value interface {
	// Kind returns the value's type tag.
	Kind() Kind
	// MarshalBinary returns the canonical encoding, whose first byte is
	// the kind.
	MarshalBinary() ([]byte, error)
	isValue()
}

var (
	_ Value = Register{}
	_ Value = Counter(nil)
	_ Value = ORSet{}
	_ Value = Map{}
)

// Kind returns KindRegister.
func (Register) Kind() Kind { return KindRegister }

// Kind returns KindCounter.
func (Counter) Kind() Kind { return KindCounter }

// Kind returns KindSet.
func (ORSet) Kind() Kind { return KindSet }

// Kind returns KindMap.
func (Map) Kind() Kind { return KindMap }

func (Register) isValue() {}
func (Counter) isValue()  {}
func (ORSet) isValue()    {}
func (Map) isValue()      {}

// Zero returns the empty value of kind k, or nil for an invalid kind.
func Zero(k Kind) Value {
	switch k {
	case KindRegister:
		return Register{}
	case KindCounter:
		return Counter(nil)
	case KindSet:
		return ORSet{}
	case KindMap:
		return Map{}
	}
	return nil
}

// JoinValues joins two values of the same kind. Values of different kinds
// fail with ErrKindMismatch, as does a nil value.
func JoinValues(a, b Value) (Value, error) {
	switch x := a.(type) {
	case Register:
		if y, ok := b.(Register); ok {
			return x.Join(y), nil
		}
	case Counter:
		if y, ok := b.(Counter); ok {
			return x.Join(y), nil
		}
	case ORSet:
		if y, ok := b.(ORSet); ok {
			return x.Join(y), nil
		}
	case Map:
		if y, ok := b.(Map); ok {
			return x.Join(y), nil
		}
	}
	return nil, fmt.Errorf("%w: %s and %s", ErrKindMismatch, kindOf(a), kindOf(b))
}

func kindOf(v Value) string {
	if v == nil {
		return "nil"
	}
	return v.Kind().String()
}

// EqualValues reports whether a and b are of the same kind and equal.
func EqualValues(a, b Value) bool {
	switch x := a.(type) {
	case Register:
		y, ok := b.(Register)
		return ok && x.Equal(y)
	case Counter:
		y, ok := b.(Counter)
		return ok && x.Equal(y)
	case ORSet:
		y, ok := b.(ORSet)
		return ok && x.Equal(y)
	case Map:
		y, ok := b.(Map)
		return ok && x.Equal(y)
	}
	return false
}

// isZeroValue reports whether v is its kind's empty value (joining it
// changes nothing).
func isZeroValue(v Value) bool {
	switch x := v.(type) {
	case Register:
		return len(x.Versions) == 0
	case Counter:
		return x.IsZero()
	case ORSet:
		return x.IsZero()
	case Map:
		return len(x.fields) == 0
	}
	return false
}
