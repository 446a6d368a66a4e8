package relay

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tlsmint/tlsmint/acme"
)

// Retention defaults, for a Retention's zero fields.
const (
	// DefaultOrderRetention is how long an order that ended without a
	// certificate (pending, ready or invalid), with its authorizations,
	// is kept after it expired (OrderLifetime after it was placed).
	DefaultOrderRetention = 7 * 24 * time.Hour
	// DefaultCertificateRetention is how long a certificate, with its
	// order and authorizations, is kept after its NotAfter.
	DefaultCertificateRetention = 30 * 24 * time.Hour
	// DefaultSweepInterval is how often the background sweeper runs.
	DefaultSweepInterval = time.Hour
	// SweepBatch is how many due records one batch of a sweep handles;
	// a pass handles at most maxSweepBatches batches, the rest waits for
	// the next pass.
	SweepBatch = 500
)

const maxSweepBatches = 20

// A Retention says how long the relay keeps what has ended. Its zero
// value is the defaults.
type Retention struct {
	// Orders is how long an order that ended without a certificate is
	// kept after its expiry. Zero means DefaultOrderRetention; negative
	// keeps them.
	Orders time.Duration
	// Certificates is how long an issued certificate and its order are
	// kept after the certificate's NotAfter. Zero means
	// DefaultCertificateRetention; negative keeps them.
	Certificates time.Duration
	// SweepInterval is how often the Server sweeps in the background
	// (the first pass a minute or two after its first use, or after the
	// interval when it is shorter). Zero means
	// DefaultSweepInterval; negative means no background sweeper
	// ([Server.Sweep] still sweeps when called).
	SweepInterval time.Duration
}

func (r Retention) orders() time.Duration {
	if r.Orders == 0 {
		return DefaultOrderRetention
	}
	return r.Orders
}

func (r Retention) certificates() time.Duration {
	if r.Certificates == 0 {
		return DefaultCertificateRetention
	}
	return r.Certificates
}

func (r Retention) interval() time.Duration {
	if r.SweepInterval == 0 {
		return DefaultSweepInterval
	}
	return r.SweepInterval
}

// The sweep index: one key per order, named by when the sweeper should
// next look at it, so that a pass reads only what is due.
const (
	keySweep        = keyRoot + "sweep/"        // <20-digit Unix ns>.<order id>: empty
	keySweepIndexed = keyRoot + "sweep-indexed" // marker: orders stored before the index are in it
)

// keepFor is how far ahead an order is looked at again when its records
// are kept for ever, or while it is processing.
const (
	keepFor        = 30 * 24 * time.Hour
	processingWait = 24 * time.Hour
)

func sweepKey(at time.Time, orderID string) string {
	return fmt.Sprintf("%s%020d.%s", keySweep, max(at.UnixNano(), 0), orderID)
}

// parseSweepKey returns the time and order of a sweep key.
func parseSweepKey(k string) (time.Time, string, bool) {
	ts, id, ok := strings.Cut(strings.TrimPrefix(k, keySweep), ".")
	n, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil || !validID(id) {
		return time.Time{}, "", false
	}
	return time.Unix(0, n), id, true
}

// scheduleSweep puts a new order in the sweep index, to be looked at once
// it expired and its retention passed.
func (s *Server) scheduleSweep(ctx context.Context, o *orderRecord) error {
	at := o.Expires.Add(s.Retention.orders())
	if s.Retention.Orders < 0 {
		at = o.Expires.Add(keepFor)
	}
	return s.Storage.Store(ctx, sweepKey(at, o.ID), []byte{})
}

// SweepStats says what one sweep did.
type SweepStats struct {
	// Orders, Authorizations and Certificates deleted, with their index
	// keys; RateRecords are the rate-limit records whose window passed.
	Orders, Authorizations, Certificates, RateRecords int
	// Rescheduled are the orders looked at and kept for later (valid
	// orders whose certificate is still within its retention, orders
	// still processing).
	Rescheduled int
	// More is true when the pass stopped at its bound with due records
	// left for the next one.
	More bool
}

// Sweep deletes what the Retention says has ended — orders that ended
// without a certificate, with their authorizations, some time after they
// expired; certificates, with their orders, some time after their
// NotAfter; rate-limit records whose window passed — in batches of
// SweepBatch, at most a bounded number of batches a call. It works on any
// storage.Storage and holds the storage lock "sweep" while it runs: with
// several replicas, one sweeps and the others return at once with zero
// stats. The background sweeper (Retention.SweepInterval) calls it.
func (s *Server) Sweep(ctx context.Context) (SweepStats, error) {
	s.init()
	var st SweepStats
	if s.initErr != nil {
		return st, s.initErr
	}
	lctx, cancel := context.WithTimeout(ctx, time.Second)
	unlock, err := s.Storage.Lock(lctx, lockPrefix+"sweep")
	cancel()
	if err != nil {
		if ctx.Err() == nil && lctx.Err() != nil {
			return st, nil // another replica sweeps
		}
		return st, fmt.Errorf("relay: sweep lock: %w", err)
	}
	defer func() {
		if err := unlock(); err != nil {
			s.logger().Warn("relay: releasing a lock failed", "lock", "sweep", "err", err)
		}
	}()
	if err := s.indexForSweep(ctx); err != nil {
		return st, err
	}
	now := s.now()
	keys, err := s.Storage.List(ctx, keySweep)
	if err != nil {
		return st, fmt.Errorf("relay: listing the sweep index: %w", err)
	}
	slices.Sort(keys)
	done := 0
	for _, k := range keys {
		at, id, ok := parseSweepKey(k)
		if !ok {
			if err := s.Storage.Delete(ctx, k); err != nil {
				return st, err
			}
			continue
		}
		if at.After(now) {
			break // sorted: the rest is not due
		}
		if done == SweepBatch*maxSweepBatches {
			st.More = true
			break
		}
		if done%SweepBatch == 0 && ctx.Err() != nil {
			return st, ctx.Err()
		}
		done++
		if err := s.sweepOrder(ctx, k, id, now, &st); err != nil {
			return st, err
		}
	}
	if err := s.sweepRates(ctx, now, &st); err != nil {
		return st, err
	}
	if st.Orders+st.Certificates+st.RateRecords > 0 {
		s.logger().Info("relay: swept", "orders", st.Orders, "authorizations", st.Authorizations, "certificates", st.Certificates, "rate_records", st.RateRecords, "more", st.More)
	}
	return st, nil
}

// indexForSweep puts the orders stored before the sweep index existed in
// it (due at once: the sweeper then finds out when each is really due),
// once per storage.
func (s *Server) indexForSweep(ctx context.Context) error {
	if _, err := s.Storage.Stat(ctx, keySweepIndexed); err == nil {
		return nil
	} else if !isNotFound(err) {
		return err
	}
	keys, err := s.Storage.List(ctx, keyOrders)
	if err != nil {
		return fmt.Errorf("relay: listing orders: %w", err)
	}
	indexed, err := s.Storage.List(ctx, keySweep)
	if err != nil {
		return fmt.Errorf("relay: listing the sweep index: %w", err)
	}
	has := make(map[string]bool, len(indexed))
	for _, k := range indexed {
		if _, id, ok := parseSweepKey(k); ok {
			has[id] = true
		}
	}
	for _, k := range keys {
		id := strings.TrimPrefix(k, keyOrders)
		if !validID(id) || has[id] {
			continue
		}
		if err := s.Storage.Store(ctx, sweepKey(time.Unix(0, 0), id), []byte{}); err != nil {
			return err
		}
	}
	return s.Storage.Store(ctx, keySweepIndexed, []byte(s.now().UTC().Format(time.RFC3339)))
}

// reschedule moves an order's sweep key to at.
func (s *Server) reschedule(ctx context.Context, key, id string, at time.Time, st *SweepStats) error {
	if err := s.Storage.Store(ctx, sweepKey(at, id), []byte{}); err != nil {
		return err
	}
	st.Rescheduled++
	return s.Storage.Delete(ctx, key)
}

// sweepOrder looks at one due order: deletes it with what belongs to it
// when its retention passed, else moves it to when it will have.
func (s *Server) sweepOrder(ctx context.Context, key, id string, now time.Time, st *SweepStats) error {
	unlock, err := s.lock(ctx, "order/"+id)
	if err != nil {
		return err
	}
	defer unlock()
	o := new(orderRecord)
	if err := s.load(ctx, keyOrders+id, o); err != nil {
		if isNotFound(err) {
			return s.Storage.Delete(ctx, key)
		}
		return err
	}
	var cert *certRecord
	var due time.Time
	switch {
	case o.Status == acme.StatusProcessing && now.Sub(o.Processing) < OrderLifetime:
		return s.reschedule(ctx, key, id, now.Add(processingWait), st)
	case o.Status == acme.StatusValid && o.Cert != "":
		cert = new(certRecord)
		if err := s.load(ctx, keyCerts+o.Cert, cert); err != nil {
			if !isNotFound(err) {
				return err
			}
			cert = nil
			due = o.Expires.Add(s.Retention.certificates())
		} else {
			due = cert.NotAfter.Add(s.Retention.certificates())
		}
		if s.Retention.Certificates < 0 {
			return s.reschedule(ctx, key, id, now.Add(keepFor), st)
		}
	default:
		due = o.Expires.Add(s.Retention.orders())
		if s.Retention.Orders < 0 {
			return s.reschedule(ctx, key, id, now.Add(keepFor), st)
		}
	}
	if due.After(now) {
		return s.reschedule(ctx, key, id, due, st)
	}
	if cert != nil {
		if err := s.deleteCert(ctx, cert); err != nil {
			return err
		}
		st.Certificates++
	}
	for _, aid := range o.Authzs {
		if !validID(aid) {
			continue
		}
		if err := s.Storage.Delete(ctx, keyAuthzs+aid); err != nil {
			return err
		}
		st.Authorizations++
	}
	if err := s.Storage.Delete(ctx, fmt.Sprintf("%s%s/%020d.%s", keyAccountOrders, o.Account, o.Created.UnixNano(), o.ID)); err != nil {
		return err
	}
	if err := s.Storage.Delete(ctx, keyOrders+id); err != nil {
		return err
	}
	st.Orders++
	return s.Storage.Delete(ctx, key)
}

// deleteCert deletes a certificate with its ARI index key, its renewal
// window and its row in the index of current certificates.
func (s *Server) deleteCert(ctx context.Context, r *certRecord) error {
	if err := s.dropCurrent(ctx, r); err != nil {
		return err
	}
	if r.ARIID != "" {
		if b, err := s.Storage.Load(ctx, keyARI+r.ARIID); err == nil && string(b) == r.ID {
			if err := s.Storage.Delete(ctx, keyARI+r.ARIID); err != nil {
				return err
			}
		} else if err != nil && !isNotFound(err) {
			return err
		}
	}
	if err := s.Storage.Delete(ctx, keyARIWindows+r.ID); err != nil {
		return err
	}
	return s.Storage.Delete(ctx, keyCerts+r.ID)
}

// sweepRates deletes the rate-limit records whose window passed.
func (s *Server) sweepRates(ctx context.Context, now time.Time, st *SweepStats) error {
	for _, prefix := range []string{keyRates, keyRateAccountOrders, keyRateAccountFailed, keyRateTenantOrders, keyRateTenantFailed} {
		keys, err := s.Storage.List(ctx, prefix)
		if err != nil {
			return err
		}
		for i, k := range keys {
			if i > 0 && i%SweepBatch == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			var r rateRecord
			if err := s.load(ctx, k, &r); err != nil {
				if isNotFound(err) {
					continue
				}
				return err
			}
			if prefix == keyRates {
				// Records of relays before sharded tenant records: no
				// longer read.
				if err := s.Storage.Delete(ctx, k); err != nil {
					return err
				}
				st.RateRecords++
				continue
			}
			if r.Expires.IsZero() || r.Expires.After(now) {
				continue
			}
			if strings.HasPrefix(k, keyRateTenantOrders) || strings.HasPrefix(k, keyRateTenantFailed) {
				// A shard is written by its Server alone, whose new event
				// may race with this delete: at worst one event uncounted.
				st.RateRecords++
				if err := s.Storage.Delete(ctx, k); err != nil {
					return err
				}
				continue
			}
			if err := func() error {
				unlock, err := s.lock(ctx, k[len(keyRoot):])
				if err != nil {
					return err
				}
				defer unlock()
				var cur rateRecord // read again: an event may have come since
				if err := s.load(ctx, k, &cur); err != nil {
					return err
				}
				if cur.Expires.IsZero() || cur.Expires.After(now) {
					return nil
				}
				st.RateRecords++
				return s.Storage.Delete(ctx, k)
			}(); err != nil && !isNotFound(err) {
				return err
			}
		}
	}
	return nil
}

// sweepLoop runs Sweep every Retention.SweepInterval until Close, the
// first time a minute or two after the Server's first use (or after the
// interval, when it is shorter).
func (s *Server) sweepLoop() {
	defer s.wg.Done()
	wait := min(s.Retention.interval(), time.Minute+rand.N(time.Minute))
	for {
		t := time.NewTimer(wait)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		func() {
			defer func() {
				if v := recover(); v != nil {
					s.logger().Error("relay: panic in the sweeper", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				}
			}()
			if _, err := s.Sweep(s.ctx); err != nil && !errors.Is(err, context.Canceled) {
				s.logger().Warn("relay: sweeping failed (tried again at the next interval)", "err", err)
			}
		}()
		wait = s.Retention.interval()
	}
}
