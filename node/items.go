package node

import (
	"cmp"
	"slices"
	"sync"
)

// itemCache holds every key's anti-entropy item (its key hash's high bits
// and its digest's low bits, antientropy.ItemOf) in memory, bucketed by the
// top bits of the key hash and sorted within a bucket. A session has to
// list the items of all the ranges it compares; reading them from pebble
// means decoding every value of those ranges, which was half the CPU of a
// heal at a million keys. The cache costs about 16 bytes a key; beyond
// Config.AEItemCacheKeys keys it is dropped and sessions scan again.
type itemCache struct {
	mu      sync.RWMutex
	max     int
	n       int
	buckets [][]itemRef // nil: no cache
}

// itemBucketBits is how many top hash bits pick a bucket.
const itemBucketBits = 16

func newItemCache(max int) *itemCache {
	return &itemCache{max: max}
}

// reset starts an empty cache (if the cache is on at all).
func (c *itemCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n, c.buckets = 0, nil
	if c.max > 0 {
		c.buckets = make([][]itemRef, 1<<itemBucketBits)
	}
}

// drop turns the cache off (too many keys).
func (c *itemCache) drop() {
	c.n, c.buckets = 0, nil
}

func bucketOf(hash uint64) int { return int(hash >> (64 - itemBucketBits)) }

func cmpRef(x, y itemRef) int {
	return cmp.Or(cmp.Compare(x.hash, y.hash), cmp.Compare(x.item, y.item))
}

// update replaces the item old (if had) of a key at hash with new (if
// has).
func (c *itemCache) update(hash uint64, old uint64, had bool, new uint64, has bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buckets == nil {
		return
	}
	b := &c.buckets[bucketOf(hash)]
	if had {
		if i, ok := slices.BinarySearchFunc(*b, itemRef{item: old, hash: hash}, cmpRef); ok {
			*b = slices.Delete(*b, i, i+1)
			c.n--
		}
	}
	if has {
		r := itemRef{item: new, hash: hash}
		i, _ := slices.BinarySearchFunc(*b, r, cmpRef)
		*b = slices.Insert(*b, i, r)
		c.n++
		if c.n > c.max {
			c.drop()
		}
	}
}

// clear removes the items whose key hashes lie in [start, end) (end 0:
// to the end of the hash space).
func (c *itemCache) clear(start, end uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.buckets == nil {
		return
	}
	c.walk(start, end, func(b *[]itemRef, lo, hi int) {
		*b = slices.Delete(*b, lo, hi)
		c.n -= hi - lo
	})
}

// appendRange appends the items of the keys whose hashes lie in [start,
// end) to refs, in hash order; ok is false when the cache is off.
func (c *itemCache) appendRange(refs []itemRef, start, end uint64) (_ []itemRef, ok bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.buckets == nil {
		return refs, false
	}
	c.walk(start, end, func(b *[]itemRef, lo, hi int) {
		refs = append(refs, (*b)[lo:hi]...)
	})
	return refs, true
}

// walk calls fn with each bucket overlapping [start, end) and the index
// range of its entries inside it, in hash order.
func (c *itemCache) walk(start, end uint64, fn func(b *[]itemRef, lo, hi int)) {
	if end != 0 && start >= end {
		return
	}
	last := len(c.buckets) - 1
	if end != 0 {
		last = bucketOf(end - 1)
	}
	for k := bucketOf(start); k <= last; k++ {
		b := &c.buckets[k]
		lo, hi := 0, len(*b)
		if k == bucketOf(start) {
			lo, _ = slices.BinarySearchFunc(*b, start, func(r itemRef, h uint64) int { return cmp.Compare(r.hash, h) })
		}
		if end != 0 && k == last {
			hi, _ = slices.BinarySearchFunc(*b, end, func(r itemRef, h uint64) int { return cmp.Compare(r.hash, h) })
		}
		if lo < hi {
			fn(b, lo, hi)
		}
	}
}

// keys reports how many items the cache holds and whether it is on.
func (c *itemCache) keys() (int, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.n, c.buckets != nil
}
