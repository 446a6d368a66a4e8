package metrics

import (
	"context"
	"fmt"
	"time"
)

// Refresh has the Manager build a snapshot now (autotls.Manager.RefreshSnapshot,
// which its other views then share) and replaces the collector's copy of
// every name's state with it; events that arrive during the read are
// applied on top. Scrapes call it on their own (see
// Options.RefreshInterval); call it yourself with a negative
// RefreshInterval, or to have a scrape show a change at once. One read
// runs at a time: a call waits for the one running, or for ctx. A read
// that returns some certificates and an error (a storage List failed)
// still replaces the copy. With a nil Manager, Refresh does nothing.
func (c *Collector) Refresh(ctx context.Context) error { return c.refresh(ctx, true) }

// refresh is Refresh, reading the Manager's shared snapshot unless fresh.
func (c *Collector) refresh(ctx context.Context, fresh bool) error {
	if c.source == nil && c.snapshot == nil {
		return nil
	}
	select {
	case c.refreshSem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("metrics: waiting for a refresh: %w", ctx.Err())
	}
	defer func() { <-c.refreshSem }()
	return c.read(ctx, fresh)
}

// read does one read of the source, of a snapshot built for it when
// fresh; refreshSem is held.
func (c *Collector) read(ctx context.Context, fresh bool) error {
	start := c.now()
	c.bgMu.Lock()
	c.attempted = start
	c.bgMu.Unlock()
	c.pendMu.Lock()
	c.reading, c.replay = true, make(map[string]update)
	c.pendMu.Unlock()

	tab, err := c.readSource(ctx, fresh)
	took := c.now().Sub(start)
	c.bgMu.Lock()
	c.lastTook = took
	c.bgMu.Unlock()

	c.mu.Lock()
	c.pendMu.Lock()
	replay := c.replay
	c.reading, c.replay = false, nil
	if tab != nil {
		// Events from before the read are in what it returned; those
		// since are not, or not surely.
		for name, u := range replay {
			tab.apply(name, u)
		}
		c.tab = tab
		c.pending = make(map[string]update)
	}
	c.pendMu.Unlock()
	c.mu.Unlock()

	if tab != nil {
		c.bgMu.Lock()
		c.refreshed = start
		c.bgMu.Unlock()
	}
	if err != nil {
		c.refreshErrors.Inc()
		return fmt.Errorf("metrics: reading the Manager's snapshot: %w", err)
	}
	return nil
}

// readSource builds a table from the Manager's snapshot (or from the
// list of Options.Certificates or a test), turning a panic into an error; nil when nothing was read.
func (c *Collector) readSource(ctx context.Context, fresh bool) (tab *table, err error) {
	defer func() {
		if p := recover(); p != nil {
			tab, err = nil, fmt.Errorf("metrics: reading the Manager's snapshot panicked: %v", p)
		}
	}()
	if c.source != nil {
		infos, err := c.source(ctx)
		if infos != nil || err == nil {
			tab = newTable(infos)
		}
		return tab, err
	}
	read := c.snapshot
	if fresh {
		read = c.freshSnapshot
	}
	s, err := read(ctx)
	if s != nil {
		tab = snapshotTable(s)
	}
	return tab, err
}

// maxDuty bounds how often a slow read of the source repeats: not before
// maxDuty times its duration has passed since it started.
const maxDuty = 20

// maybeRefresh is a scrape's part in keeping the copy fresh: the first
// scrape reads the source and those that come meanwhile wait for it;
// later ones start a background read when the last is older than
// RefreshInterval.
func (c *Collector) maybeRefresh() {
	if (c.source == nil && c.snapshot == nil) || c.refreshInterval < 0 {
		return
	}
	now := c.now()
	c.bgMu.Lock()
	if c.closed {
		c.bgMu.Unlock()
		return
	}
	if c.attempted.IsZero() && c.first == nil {
		first := make(chan struct{})
		c.first = first
		c.bgMu.Unlock()
		ctx, cancel := context.WithTimeout(c.ctx, c.refreshTimeout)
		defer cancel()
		defer close(first)
		_ = c.refresh(ctx, false) // counted in tlsmint_metrics_refresh_errors_total
		return
	}
	if first := c.first; first != nil {
		select {
		case <-first:
		default:
			c.bgMu.Unlock()
			select {
			case <-first:
			case <-c.ctx.Done():
			}
			return
		}
	}
	// A read that takes long (a million stored certificates) is not
	// repeated more often than every maxDuty times its duration, so
	// reads never take more than 1/maxDuty of the time.
	if interval := max(c.refreshInterval, maxDuty*c.lastTook); !c.background && now.Sub(c.attempted) >= interval {
		c.background = true
		c.wg.Add(1)
		go c.backgroundRefresh()
	}
	c.bgMu.Unlock()
}

func (c *Collector) backgroundRefresh() {
	defer c.wg.Done()
	defer func() {
		c.bgMu.Lock()
		c.background = false
		c.bgMu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(c.ctx, c.refreshTimeout)
	defer cancel()
	_ = c.refresh(ctx, false) // counted in tlsmint_metrics_refresh_errors_total
}

// lastRefresh is when the last successful read started.
func (c *Collector) lastRefresh() time.Time {
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	return c.refreshed
}
