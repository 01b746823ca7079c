package storage

import (
	"bytes"
	"fmt"
	"maps"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// hintLock returns the mutex of hint (target, key).
func (s *Store) hintLock(target, hash uint64) *sync.Mutex {
	return &s.hintMu[(hash^target*0x9e3779b97f4a7c15)%stripes]
}

// UpdateHint is Update for the hint of key held for node target: a
// read-modify-write under the lock of (target, key), synced unless NoSync.
// OnChange is not called for hints.
func (s *Store) UpdateHint(target uint64, key []byte, fn func(old []byte, ok bool) ([]byte, bool, error)) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("storage: update hint %016x %q: %w", target, trunc(key), err)
	}
	if !s.enter() {
		return ErrClosed
	}
	defer s.exit()
	h := Hash(key)
	mu := s.hintLock(target, h)
	mu.Lock()
	_, ok, nv, wait, err := s.modify(hintKey(target, h, key), fn, s.wo)
	if err == nil && wait != nil {
		switch {
		case !ok && nv != nil:
			s.countHint(target, +1)
		case ok && nv == nil:
			s.countHint(target, -1)
		}
	}
	mu.Unlock()
	if err == nil && wait != nil {
		err = wait()
	}
	if err != nil {
		return fmt.Errorf("storage: update hint %016x %q: %w", target, trunc(key), err)
	}
	return nil
}

func (s *Store) countHint(target uint64, d int) {
	s.hints.Lock()
	defer s.hints.Unlock()
	if s.hints.count[target] += d; s.hints.count[target] <= 0 {
		delete(s.hints.count, target)
	}
}

// Hints calls fn for up to limit hints held for target (all of them if
// limit <= 0), in key-hash order. The slices are valid only during the call.
// An error from fn stops the iteration and is returned as is.
func (s *Store) Hints(target uint64, limit int, fn func(key, value []byte) error) error {
	if !s.enter() {
		return ErrClosed
	}
	defer s.exit()
	upper := []byte{prefixHint + 1}
	if target != ^uint64(0) {
		upper = hintPrefix(target + 1)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: hintPrefix(target), UpperBound: upper})
	if err != nil {
		return fmt.Errorf("storage: hints for %016x: %w", target, err)
	}
	defer it.Close()
	n := 0
	for valid := it.First(); valid && (limit <= 0 || n < limit); valid = it.Next() {
		_, key, err := decodeHintKey(it.Key())
		if err != nil {
			return fmt.Errorf("storage: hints for %016x: %w", target, err)
		}
		v, err := it.ValueAndErr()
		if err == nil && len(v) == 0 {
			err = fmt.Errorf("%w: empty value", ErrCorrupt)
		}
		if err != nil {
			return fmt.Errorf("storage: hint %016x %q: %w", target, trunc(key), err)
		}
		if err := fn(key, v); err != nil {
			return err
		}
		n++
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("storage: hints for %016x: %w", target, err)
	}
	return nil
}

// DeleteHint deletes the hint of key for target if its value still equals
// value (it may have been merged with a newer state since it was read),
// synced unless NoSync. It reports whether it deleted the hint.
func (s *Store) DeleteHint(target uint64, key, value []byte) (bool, error) {
	var deleted bool
	err := s.UpdateHint(target, key, func(old []byte, ok bool) ([]byte, bool, error) {
		deleted = ok && bytes.Equal(old, value)
		return nil, deleted, nil
	})
	if err != nil {
		return false, err
	}
	return deleted, nil
}

// HintTargets returns the number of pending hints per target node. It
// reads counters kept in memory, so it is cheap.
func (s *Store) HintTargets() (map[uint64]int, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	s.hints.Lock()
	defer s.hints.Unlock()
	return maps.Clone(s.hints.count), nil
}
