package autotls

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// check verifies every invariant of p against want, the plans it should
// hold: each item is found through the table at its position, the table
// holds nothing else, and the heap is ordered.
func (p *planSet) check(t *testing.T, want map[string]int64) {
	t.Helper()
	if p.len() != len(want) {
		t.Fatalf("%d plans, want %d", p.len(), len(want))
	}
	used := 0
	for _, v := range p.slots {
		if v != 0 {
			used++
		}
	}
	if used != len(want) {
		t.Fatalf("%d slots used for %d plans", used, len(want))
	}
	for pos, it := range p.items {
		if w, ok := want[it.name]; !ok || w != it.at {
			t.Fatalf("item %d is %q at %d, want %v (planned: %v)", pos, it.name, it.at, w, ok)
		}
		s, ok := p.find(it.name)
		if !ok || int(p.slots[s]-1) != pos {
			t.Fatalf("%q at position %d: table finds slot %d (%v) holding %d", it.name, pos, s, ok, p.slots[s]-1)
		}
		if pos > 0 && p.items[(pos-1)/2].at > it.at {
			t.Fatalf("heap order broken at %d", pos)
		}
	}
}

// TestPlanSet drives a planSet with random plans, replans and pops of
// what is due (few names, so that probes collide and wrap), checking every
// invariant after each step and the popped order against a plain map.
func TestPlanSet(t *testing.T) {
	t.Parallel()
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 1))
		var p planSet
		want := map[string]int64{}
		names := 5 + r.IntN(300)
		for step := range 3000 {
			switch op := r.IntN(10); {
			case op < 6:
				name := fmt.Sprintf("n%d.example", r.IntN(names))
				at := r.Int64N(1000)
				p.set(name, at)
				want[name] = at
			case op < 9:
				now := r.Int64N(1000)
				var got []string
				for {
					name, ok := p.popDue(now)
					if !ok {
						break
					}
					if want[name] > now {
						t.Fatalf("seed %d step %d: popped %q planned at %d, not due at %d", seed, step, name, want[name], now)
					}
					if len(got) > 0 && want[got[len(got)-1]] > want[name] {
						t.Fatalf("seed %d step %d: popped out of order", seed, step)
					}
					got = append(got, name)
					delete(want, name)
				}
				for name, at := range want {
					if at <= now && !slices.Contains(got, name) {
						t.Fatalf("seed %d step %d: %q planned at %d not popped at %d", seed, step, name, at, now)
					}
				}
			default:
				name := fmt.Sprintf("n%d.example", r.IntN(names))
				_, ok := want[name]
				if p.has(name) != ok {
					t.Fatalf("seed %d step %d: has(%q) = %v, want %v", seed, step, name, !ok, ok)
				}
			}
			p.check(t, want)
		}
		if n, at, ok := p.earliest(); ok {
			for _, w := range want {
				if w < at {
					t.Fatalf("earliest %q at %d, but a plan at %d", n, at, w)
				}
			}
		}
	}
}

// TestPlanSetShrinks: once most plans are gone, the items' array and the
// table are given back.
func TestPlanSetShrinks(t *testing.T) {
	t.Parallel()
	var p planSet
	want := map[string]int64{}
	for i := range 10_000 {
		name := fmt.Sprintf("n%d.example", i)
		p.set(name, int64(i))
		want[name] = int64(i)
	}
	bigItems, bigSlots := cap(p.items), len(p.slots)
	for i := range 9_990 {
		name, ok := p.popDue(int64(i))
		if !ok || want[name] != int64(i) {
			t.Fatalf("pop %d: %q %v", i, name, ok)
		}
		delete(want, name)
	}
	p.check(t, want)
	if cap(p.items) > bigItems/64 || len(p.slots) > bigSlots/64 {
		t.Errorf("10 plans left hold %d items and %d slots (from %d and %d), want them given back", cap(p.items), len(p.slots), bigItems, bigSlots)
	}
}
