package antientropy

import "math"

// This file implements rateless invertible Bloom lookup tables (Yang, Gilad,
// Alizadeh: "Practical Rateless Set Reconciliation", SIGCOMM 2024) over
// 64-bit items. Every item is mapped to coded symbol 0 and then to a
// pseudo-random, ever sparser sequence of further symbols (index i with
// probability about 1/(1+i/2)), so any prefix of the symbol stream is an
// IBLT and the receiver can stop as soon as it decodes.

// CodedSymbol is one cell: the XOR of its items, the XOR of their
// checksums, and how many items were added (minus removed).
type CodedSymbol struct {
	Sum   uint64
	Check uint64
	Count int64
}

func (c *CodedSymbol) apply(item, check uint64, dir int64) {
	c.Sum ^= item
	c.Check ^= check
	c.Count += dir
}

func (c CodedSymbol) isZero() bool { return c.Sum == 0 && c.Check == 0 && c.Count == 0 }

// checksum is a keyed mix of an item (splitmix64's finalizer), used both to
// recognise pure cells and to seed the item's symbol mapping.
func checksum(item uint64) uint64 {
	z := item ^ 0x5851f42d4c957f2d
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// mapping generates the indices of the coded symbols an item belongs to:
// 0 first, then gaps drawn so that index i is hit with probability about
// 1/(1+i/2).
type mapping struct {
	prng uint64
	idx  uint64
}

func newMapping(check uint64) mapping { return mapping{prng: check, idx: 0} }

// maxIndex caps indices far beyond any stream we would produce.
const maxIndex = 1 << 40

func (m *mapping) next() {
	r := m.prng * 0xda942042e4dd58b5
	m.prng = r
	// gap = ceil((idx + 1.5) * (1/sqrt(1-u) - 1)) with u = r / 2^64. The
	// explicit float64 conversions forbid fused multiply-adds, so every
	// platform computes the same sequence.
	scale := float64(float64(1<<32)/math.Sqrt(float64(r)+1)) - 1
	gap := math.Ceil(float64((float64(m.idx) + 1.5) * scale))
	if gap < 1 {
		gap = 1
	}
	if gap > maxIndex || float64(m.idx)+gap > maxIndex {
		m.idx = maxIndex
		return
	}
	m.idx += uint64(gap)
}

// window is a set of items with their mapping state: the items' symbols
// below next have been produced.
type window struct {
	items  []uint64
	checks []uint64
	maps   []mapping
}

// addAt adds an item whose symbols below from were already accounted for
// elsewhere, fast-forwarding its mapping.
func (w *window) addAt(item, check uint64, m mapping) {
	w.items = append(w.items, item)
	w.checks = append(w.checks, check)
	w.maps = append(w.maps, m)
}

// applyTo applies every item's contribution to the symbols out, which hold
// indices [start, start+len(out)), with direction dir.
func (w *window) applyTo(out []CodedSymbol, start uint64, dir int64) {
	end := start + uint64(len(out))
	for j := range w.items {
		m := &w.maps[j]
		for m.idx < end {
			if m.idx >= start {
				out[m.idx-start].apply(w.items[j], w.checks[j], dir)
			}
			m.next()
		}
	}
}

// encoder produces the coded symbol stream of a fixed item set.
type encoder struct {
	w    window
	next uint64
}

func newEncoder(items []uint64) *encoder {
	e := &encoder{}
	e.w.items = items
	e.w.checks = make([]uint64, len(items))
	e.w.maps = make([]mapping, len(items))
	for i, it := range items {
		c := checksum(it)
		e.w.checks[i] = c
		e.w.maps[i] = newMapping(c)
	}
	return e
}

// produce returns the next n coded symbols.
func (e *encoder) produce(n int) []CodedSymbol {
	out := make([]CodedSymbol, n)
	e.w.applyTo(out, e.next, +1)
	e.next += uint64(n)
	return out
}

// decoder peels the difference between a remote item set (whose symbols it
// receives) and its local one.
type decoder struct {
	local  *encoder // the local set, subtracted from every received symbol
	cs     []CodedSymbol
	remote window // decoded: only the remote side has these
	mine   window // decoded: only the local side has these
	queue  []int
	queued []bool
}

func newDecoder(local []uint64) *decoder {
	return &decoder{local: newEncoder(local)}
}

// add takes the next batch of received symbols (they must follow the ones
// already added), subtracts the local set and what is already decoded, and
// peels.
func (d *decoder) add(batch []CodedSymbol) {
	start := uint64(len(d.cs))
	loc := d.local.produce(len(batch))
	for i := range batch {
		batch[i].Sum ^= loc[i].Sum
		batch[i].Check ^= loc[i].Check
		batch[i].Count -= loc[i].Count
	}
	d.remote.applyTo(batch, start, -1)
	d.mine.applyTo(batch, start, +1)
	for i, c := range batch {
		d.cs = append(d.cs, c)
		d.queued = append(d.queued, false)
		if c.Count >= -1 && c.Count <= 1 {
			d.enqueue(int(start) + i)
		}
	}
	d.peel()
}

func (d *decoder) enqueue(i int) {
	if !d.queued[i] {
		d.queued[i] = true
		d.queue = append(d.queue, i)
	}
}

func (d *decoder) peel() {
	for len(d.queue) > 0 {
		i := d.queue[len(d.queue)-1]
		d.queue = d.queue[:len(d.queue)-1]
		d.queued[i] = false
		c := d.cs[i]
		if (c.Count != 1 && c.Count != -1) || checksum(c.Sum) != c.Check {
			continue
		}
		item, check := c.Sum, c.Check
		dir := -c.Count // remove a remote item, add back a local one
		m := newMapping(check)
		for m.idx < uint64(len(d.cs)) {
			k := int(m.idx)
			d.cs[k].apply(item, check, dir)
			if d.cs[k].Count >= -1 && d.cs[k].Count <= 1 {
				d.enqueue(k)
			}
			m.next()
		}
		if c.Count == 1 {
			d.remote.addAt(item, check, m)
		} else {
			d.mine.addAt(item, check, m)
		}
	}
}

// done reports whether the difference is fully decoded: every item maps to
// symbol 0, so it is empty exactly when nothing undecoded is left.
func (d *decoder) done() bool { return len(d.cs) > 0 && d.cs[0].isZero() }
