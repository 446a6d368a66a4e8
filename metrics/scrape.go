package metrics

import (
	"math"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// expiryWindows are the "within" values of tlsmint_certificates_expiring.
func expiryWindows() [3]struct {
	label string
	d     time.Duration
} {
	return [3]struct {
		label string
		d     time.Duration
	}{{"1d", 24 * time.Hour}, {"7d", 7 * 24 * time.Hour}, {"30d", 30 * 24 * time.Hour}}
}

// A summary is what a scrape reports of all names.
type summary struct {
	valid, expired, missing, failing, notStored int
	expiring                                    [3]int
}

// collectCertificates reports the aggregates over every name and the
// per-name series of the maxNames that expire soonest.
func (c *Collector) collectCertificates(ch chan<- prometheus.Metric) {
	now := c.now().UnixNano()
	c.mu.Lock()
	c.applyPendingLocked()
	sum, sel := c.tab.summarize(now, c.maxNames)
	total := len(c.tab.recs)
	c.mu.Unlock()

	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		for i, l := range labels {
			labels[i] = labelValue(l)
		}
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(c.d.certificates, float64(sum.valid), stateValid)
	gauge(c.d.certificates, float64(sum.expired), stateExpired)
	gauge(c.d.certificates, float64(sum.missing), stateMissing)
	for i, w := range expiryWindows() {
		gauge(c.d.expiring, float64(sum.expiring[i]), w.label)
	}
	gauge(c.d.failing, float64(sum.failing))
	gauge(c.d.unstored, float64(sum.notStored))
	gauge(c.d.omitted, float64(total-len(sel)))
	for i := range sel {
		r := &sel[i]
		ready := 0.0
		if r.notAfter > now && !r.failing {
			ready = 1
		}
		gauge(c.d.ready, ready, r.name, r.issuer)
		if r.notAfter != 0 {
			gauge(c.d.notAfter, seconds(r.notAfter), r.name, r.issuer)
		}
		if r.renewAt != 0 {
			gauge(c.d.renewal, seconds(r.renewAt), r.name, r.issuer, r.reason)
		}
	}
}

// summarize counts every record at now and returns copies of the k that
// expire soonest (those without a certificate first, then by name).
func (t *table) summarize(now int64, k int) (summary, []nameRecord) {
	var s summary
	windows := expiryWindows()
	h := topK{recs: t.recs, k: k}
	if k > 0 {
		h.idx = make([]int32, 0, min(k, len(t.recs)))
	}
	for i := range t.recs {
		r := &t.recs[i]
		switch {
		case r.notAfter == 0:
			s.missing++
		case r.notAfter <= now:
			s.expired++
		default:
			s.valid++
			for j, w := range windows {
				if r.notAfter-now <= int64(w.d) {
					s.expiring[j]++
				}
			}
		}
		if r.failing {
			s.failing++
		}
		if r.notStored {
			s.notStored++
		}
		if k > 0 {
			h.offer(int32(i))
		}
	}
	sel := make([]nameRecord, len(h.idx))
	for i, j := range h.idx {
		sel[i] = t.recs[j]
	}
	return s, sel
}

// topK keeps the k records that expire soonest, as a heap whose root is
// the one of them that expires last.
type topK struct {
	recs []nameRecord
	k    int
	idx  []int32
}

// before reports whether record a expires before b (no certificate counts
// as soonest; equal times go by name).
func (h *topK) before(a, b int32) bool {
	ra, rb := &h.recs[a], &h.recs[b]
	ka, kb := sortKey(ra.notAfter), sortKey(rb.notAfter)
	if ka != kb {
		return ka < kb
	}
	return strings.Compare(ra.name, rb.name) < 0
}

func sortKey(notAfter int64) int64 {
	if notAfter == 0 {
		return math.MinInt64
	}
	return notAfter
}

func (h *topK) offer(i int32) {
	if len(h.idx) < h.k {
		h.idx = append(h.idx, i)
		h.up(len(h.idx) - 1)
		return
	}
	if h.before(i, h.idx[0]) {
		h.idx[0] = i
		h.down(0)
	}
}

// up and down restore the heap order: a parent expires after its
// children.
func (h *topK) up(j int) {
	for j > 0 {
		p := (j - 1) / 2
		if !h.before(h.idx[p], h.idx[j]) {
			return
		}
		h.idx[p], h.idx[j] = h.idx[j], h.idx[p]
		j = p
	}
}

func (h *topK) down(j int) {
	n := len(h.idx)
	for {
		l := 2*j + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h.before(h.idx[l], h.idx[r]) {
			m = r
		}
		if !h.before(h.idx[j], h.idx[m]) {
			return
		}
		h.idx[j], h.idx[m] = h.idx[m], h.idx[j]
		j = m
	}
}
