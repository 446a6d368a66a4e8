package autotls

import "hash/maphash"

// planSet holds at most one planned time per name: a binary min-heap of
// (time, name) items, and an open-addressing table (linear probing) from
// a name to its item's heap position. A name costs its 24-byte item, a
// slot of 4 bytes at a load between 1/8 and 3/4, and its string's bytes;
// there are no stale items, so rescheduling a name often costs nothing
// more. Not safe for concurrent use.
type planSet struct {
	seed  maphash.Seed
	items []planItem
	// slots hold heap position + 1 (0: empty); len(slots) is zero or a
	// power of two.
	slots []int32
}

// planItem is one plan: 24 bytes.
type planItem struct {
	at   int64 // Unix nanoseconds
	name string
}

// planSlotsMin is the table's smallest size.
const planSlotsMin = 16

func (p *planSet) len() int { return len(p.items) }

// home is the slot where name's probe starts.
func (p *planSet) home(name string) int {
	if p.seed == (maphash.Seed{}) {
		p.seed = maphash.MakeSeed()
	}
	return int(maphash.String(p.seed, name) & uint64(len(p.slots)-1))
}

// find returns the slot holding name, or the empty slot where it would go
// and false.
func (p *planSet) find(name string) (int, bool) {
	if len(p.slots) == 0 {
		return -1, false
	}
	mask := len(p.slots) - 1
	for i := p.home(name); ; i = (i + 1) & mask {
		v := p.slots[i]
		if v == 0 {
			return i, false
		}
		if p.items[v-1].name == name {
			return i, true
		}
	}
}

// slotOf returns the slot that holds heap position pos.
func (p *planSet) slotOf(pos int) int {
	want := int32(pos + 1)
	mask := len(p.slots) - 1
	i := p.home(p.items[pos].name)
	for p.slots[i] != want {
		i = (i + 1) & mask
	}
	return i
}

// has reports whether name has a plan.
func (p *planSet) has(name string) bool {
	_, ok := p.find(name)
	return ok
}

// set plans name at at, replacing its plan if it has one.
func (p *planSet) set(name string, at int64) {
	if s, ok := p.find(name); ok {
		pos := int(p.slots[s] - 1)
		old := p.items[pos].at
		p.items[pos].at = at
		if at < old {
			p.up(pos, s)
		} else {
			p.down(pos, s)
		}
		return
	}
	if (len(p.items)+1)*4 > len(p.slots)*3 {
		p.grow()
	}
	s, _ := p.find(name)
	pos := len(p.items)
	p.items = append(p.items, planItem{at: at, name: name})
	p.slots[s] = int32(pos + 1)
	p.up(pos, s)
}

// earliest returns the first plan's name and time; ok is false when there
// is none.
func (p *planSet) earliest() (name string, at int64, ok bool) {
	if len(p.items) == 0 {
		return "", 0, false
	}
	return p.items[0].name, p.items[0].at, true
}

// popDue removes and returns the first plan's name if it is due at now.
func (p *planSet) popDue(now int64) (string, bool) {
	if len(p.items) == 0 || p.items[0].at > now {
		return "", false
	}
	name := p.items[0].name
	p.deleteSlot(p.slotOf(0))
	last := len(p.items) - 1
	if last > 0 {
		s := p.slotOf(last)
		p.items[0] = p.items[last]
		p.slots[s] = 1
		p.items[last] = planItem{}
		p.items = p.items[:last]
		p.down(0, s)
	} else {
		p.items[0] = planItem{}
		p.items = p.items[:0]
	}
	p.shrink()
	return name, true
}

// shrink gives memory back once most plans are gone: the items' array
// when a quarter of it is used, the table when an eighth of it is.
func (p *planSet) shrink() {
	if n := len(p.items); cap(p.items) >= 64 && n < cap(p.items)/4 {
		items := make([]planItem, n, cap(p.items)/2)
		copy(items, p.items)
		p.items = items
	}
	if len(p.slots) > planSlotsMin && len(p.items)*8 < len(p.slots) {
		p.resize(len(p.slots) / 2)
	}
}

// up moves the item at pos, whose slot is s, towards the root while it is
// earlier than its parent. Only the item being moved has a stale slot, and
// the positions looked up are never those already written.
func (p *planSet) up(pos, s int) {
	x := p.items[pos]
	for pos > 0 {
		parent := (pos - 1) / 2
		if p.items[parent].at <= x.at {
			break
		}
		ps := p.slotOf(parent)
		p.items[pos] = p.items[parent]
		p.slots[ps] = int32(pos + 1)
		pos = parent
	}
	p.items[pos] = x
	p.slots[s] = int32(pos + 1)
}

// down moves the item at pos, whose slot is s, towards the leaves while a
// child is earlier.
func (p *planSet) down(pos, s int) {
	x := p.items[pos]
	n := len(p.items)
	for {
		child := 2*pos + 1
		if child >= n {
			break
		}
		if r := child + 1; r < n && p.items[r].at < p.items[child].at {
			child = r
		}
		if p.items[child].at >= x.at {
			break
		}
		cs := p.slotOf(child)
		p.items[pos] = p.items[child]
		p.slots[cs] = int32(pos + 1)
		pos = child
	}
	p.items[pos] = x
	p.slots[s] = int32(pos + 1)
}

// deleteSlot empties slot i and shifts back the entries after it that
// probed past it, so that every probe still finds its name.
func (p *planSet) deleteSlot(i int) {
	mask := len(p.slots) - 1
	for {
		p.slots[i] = 0
		j := i
		for {
			j = (j + 1) & mask
			v := p.slots[j]
			if v == 0 {
				return
			}
			// The entry at j may move to i unless its home lies
			// cyclically in (i, j].
			k := p.home(p.items[v-1].name)
			if (i < j && (k <= i || k > j)) || (i > j && k <= i && k > j) {
				p.slots[i] = v
				i = j
				break
			}
		}
	}
}

// grow doubles the table (or makes its first) and places every item again.
func (p *planSet) grow() { p.resize(max(planSlotsMin, 2*len(p.slots))) }

// resize makes a table of n slots (a power of two) and places every item
// again.
func (p *planSet) resize(n int) {
	p.slots = make([]int32, n)
	mask := len(p.slots) - 1
	for pos, it := range p.items {
		i := p.home(it.name)
		for p.slots[i] != 0 {
			i = (i + 1) & mask
		}
		p.slots[i] = int32(pos + 1)
	}
}
