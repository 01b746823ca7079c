package node

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/rumorkv/rumor/antientropy"
)

// The item cache against a model: a plain list of (hash, item), filtered
// and sorted on every query.
func TestItemCacheModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	c := newItemCache(1 << 20)
	c.reset()
	var model []itemRef
	// Hashes crowd a few buckets (and collide now and then) so that
	// bucket edges and equal hashes are exercised.
	randHash := func() uint64 {
		h := uint64(r.IntN(4)) << (64 - itemBucketBits)
		return h | uint64(r.IntN(64))<<40 | uint64(r.IntN(3))
	}
	randRange := func() (uint64, uint64) {
		a, b := randHash(), randHash()
		if r.IntN(10) == 0 {
			b = 0 // to the end
		}
		if b != 0 && a > b {
			a, b = b, a
		}
		return a, b
	}
	in := func(h, start, end uint64) bool { return h >= start && (end == 0 || h < end) }
	for step := range 20000 {
		switch op := r.IntN(10); {
		case op < 5: // insert
			ref := itemRef{hash: randHash(), item: r.Uint64()}
			c.update(ref.hash, 0, false, ref.item, true)
			model = append(model, ref)
		case op < 8 && len(model) > 0: // change or delete
			i := r.IntN(len(model))
			old := model[i]
			if r.IntN(2) == 0 {
				nw := itemRef{hash: old.hash, item: r.Uint64()}
				c.update(old.hash, old.item, true, nw.item, true)
				model[i] = nw
			} else {
				c.update(old.hash, old.item, true, 0, false)
				model = slices.Delete(model, i, i+1)
			}
		case op == 8 && r.IntN(20) == 0: // clear a range
			start, end := randRange()
			c.clear(start, end)
			model = slices.DeleteFunc(model, func(x itemRef) bool { return in(x.hash, start, end) })
		default: // query
			start, end := randRange()
			got, ok := c.appendRange(nil, start, end)
			if !ok {
				t.Fatal("cache off")
			}
			var want []itemRef
			for _, x := range model {
				if in(x.hash, start, end) {
					want = append(want, x)
				}
			}
			slices.SortFunc(want, cmpRef)
			if !slices.Equal(got, want) {
				t.Fatalf("step %d: range [%x, %x): got %d items, want %d", step, start, end, len(got), len(want))
			}
		}
		if n, _ := c.keys(); n != len(model) {
			t.Fatalf("step %d: %d keys, model %d", step, n, len(model))
		}
	}
}

// Past its bound the cache turns itself off, and says so.
func TestItemCacheBound(t *testing.T) {
	c := newItemCache(3)
	c.reset()
	for i := range 4 {
		c.update(uint64(i), 0, false, uint64(i), true)
	}
	if _, ok := c.appendRange(nil, 0, 0); ok {
		t.Fatal("cache still on after exceeding its bound")
	}
	off := newItemCache(0)
	off.reset()
	if _, ok := off.appendRange(nil, 0, 0); ok {
		t.Fatal("cache with bound 0 is on")
	}
}

// checkItemCache fails t unless n's item cache lists exactly the items a
// scan of its storage finds.
func checkItemCache(t testing.TB, n *Node) {
	t.Helper()
	var scanned []itemRef
	err := n.store.Scan(0, 0, func(hash uint64, key, value []byte) error {
		scanned = append(scanned, itemRef{item: antientropy.ItemOf(hash, antientropy.DigestOf(key, stateOf(value))), hash: hash})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(scanned, cmpRef)
	cached, ok := n.ae.items.appendRange(nil, 0, 0)
	if !ok {
		t.Fatalf("%s: item cache off", n.Name())
	}
	if !slices.Equal(cached, scanned) {
		t.Fatalf("%s: item cache holds %d items, storage %d (or they differ)", n.Name(), len(cached), len(scanned))
	}
}
