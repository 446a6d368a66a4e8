package relay

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultNonceLifetime is how long a shared nonce is valid when
// Server.NonceLifetime is zero.
const DefaultNonceLifetime = 30 * time.Minute

// Storage keys of shared nonces.
const (
	keyNonceKey  = keyRoot + "nonce-key" // the 32-byte MAC key (secret)
	keyNonceUsed = keyRoot + "nonces/"   // <window>/<id>: a redeemed nonce
)

// A shared nonce is base64url of
//
//	version (1 byte, 1) | issued (Unix seconds, 8 bytes) | random (12 bytes) | MAC (16 bytes)
//
// where MAC is the first 16 bytes of HMAC-SHA256 over the rest under the
// key kept in the storage: any replica on the storage can check that a
// relay issued it and when, without a record of each issued nonce. A
// redeemed nonce is recorded in the storage (under the lock of that
// nonce, so that two replicas never both accept it) until it has expired.
const (
	sharedNonceVersion = 1
	sharedNonceRandom  = 12
	sharedNonceMAC     = 16
	sharedNonceRaw     = 1 + 8 + sharedNonceRandom + sharedNonceMAC
	sharedNonceLen     = (sharedNonceRaw*8 + 5) / 6 // base64url, unpadded
	// nonceSkew is how far in the future a nonce's issue time may be (the
	// clocks of two replicas differ).
	nonceSkew = time.Minute
)

// sharedNonces issues and redeems nonces valid at every replica on the
// storage.
type sharedNonces struct {
	s        *Server
	lifetime time.Duration

	mu  sync.Mutex
	key []byte // nil until loaded

	sweepMu   sync.Mutex
	lastSweep time.Time
}

// macKey returns the nonce MAC key, loading it from the storage (or
// creating it there, once for every replica) on first use.
func (n *sharedNonces) macKey(ctx context.Context) ([]byte, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.key != nil {
		return n.key, nil
	}
	load := func() ([]byte, error) {
		b, err := n.s.Storage.Load(ctx, keyNonceKey)
		if err != nil {
			return nil, err
		}
		if len(b) != 32 {
			return nil, fmt.Errorf("relay: the stored nonce key %s has %d bytes, want 32", keyNonceKey, len(b))
		}
		return b, nil
	}
	k, err := load()
	if isNotFound(err) {
		unlock, lerr := n.s.lock(ctx, "nonce-key")
		if lerr != nil {
			return nil, lerr
		}
		defer unlock()
		if k, err = load(); isNotFound(err) {
			k = make([]byte, 32)
			rand.Read(k)
			err = n.s.Storage.Store(ctx, keyNonceKey, k)
		}
	}
	if err != nil {
		return nil, err
	}
	n.key = k
	return k, nil
}

func (n *sharedNonces) mac(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)[:sharedNonceMAC]
}

// issue returns a fresh nonce.
func (n *sharedNonces) issue(ctx context.Context) (string, error) {
	key, err := n.macKey(ctx)
	if err != nil {
		return "", err
	}
	var b [sharedNonceRaw]byte
	b[0] = sharedNonceVersion
	binary.BigEndian.PutUint64(b[1:9], uint64(n.s.now().Unix()))
	rand.Read(b[9 : 9+sharedNonceRandom])
	copy(b[9+sharedNonceRandom:], n.mac(key, b[:9+sharedNonceRandom]))
	n.maybeSweep()
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// errNonceStorage wraps a storage failure while redeeming a nonce.
var errNonceStorage = errors.New("relay: recording a nonce failed")

// redeem reports whether v is a nonce a replica issued that has not
// expired and was never redeemed, and records it as redeemed. An error
// means the storage failed (the nonce was not accepted).
func (n *sharedNonces) redeem(ctx context.Context, v string) (bool, error) {
	if len(v) != sharedNonceLen {
		return false, nil
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(v)
	if err != nil || len(b) != sharedNonceRaw || b[0] != sharedNonceVersion {
		return false, nil
	}
	key, err := n.macKey(ctx)
	if err != nil {
		return false, fmt.Errorf("%w: %w", errNonceStorage, err)
	}
	if !hmac.Equal(b[9+sharedNonceRandom:], n.mac(key, b[:9+sharedNonceRandom])) {
		return false, nil
	}
	issued := int64(binary.BigEndian.Uint64(b[1:9]))
	now := n.s.now()
	if issued < now.Add(-n.lifetime).Unix() || issued > now.Add(nonceSkew).Unix() {
		return false, nil
	}
	id := hex.EncodeToString(b[9 : 9+sharedNonceRandom])
	k := keyNonceUsed + n.window(issued) + "/" + id
	unlock, err := n.s.lock(ctx, "nonce/"+id)
	if err != nil {
		return false, fmt.Errorf("%w: %w", errNonceStorage, err)
	}
	defer unlock()
	if _, err := n.s.Storage.Stat(ctx, k); err == nil {
		return false, nil
	} else if !isNotFound(err) {
		return false, fmt.Errorf("%w: %w", errNonceStorage, err)
	}
	if err := n.s.Storage.Store(ctx, k, []byte{1}); err != nil {
		return false, fmt.Errorf("%w: %w", errNonceStorage, err)
	}
	return true, nil
}

// window names the lifetime-long period a nonce issued at a Unix time
// falls in: the records of a window are deleted once every nonce of it
// has expired.
func (n *sharedNonces) window(issued int64) string {
	w := issued / int64(max(n.lifetime/time.Second, 1))
	return fmt.Sprintf("%012d", w)
}

// maybeSweep deletes, in the background and at most once per lifetime,
// the records of redeemed nonces that have expired.
func (n *sharedNonces) maybeSweep() {
	now := n.s.now()
	n.sweepMu.Lock()
	if now.Sub(n.lastSweep) < n.lifetime {
		n.sweepMu.Unlock()
		return
	}
	n.lastSweep = now
	n.sweepMu.Unlock()
	s := n.s
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() {
			if v := recover(); v != nil {
				s.logger().Error("relay: panic sweeping nonces", "panic", fmt.Sprint(v))
			}
		}()
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Minute)
		defer cancel()
		if err := n.sweep(ctx, now); err != nil && ctx.Err() == nil {
			s.logger().Warn("relay: deleting expired nonce records failed", "err", err)
		}
	}()
}

// sweep deletes the records of windows whose nonces have all expired at
// now.
func (n *sharedNonces) sweep(ctx context.Context, now time.Time) error {
	keys, err := n.s.Storage.List(ctx, keyNonceUsed)
	if err != nil {
		return err
	}
	// Every nonce of a window before the one of now-lifetime has expired.
	oldest, _ := strconv.ParseInt(n.window(now.Add(-n.lifetime).Unix()), 10, 64)
	var errs []error
	for _, k := range keys {
		w, _, ok := strings.Cut(strings.TrimPrefix(k, keyNonceUsed), "/")
		wn, err := strconv.ParseInt(w, 10, 64)
		if !ok || err != nil || wn >= oldest {
			continue
		}
		if err := n.s.Storage.Delete(ctx, k); err != nil {
			errs = append(errs, err)
			if len(errs) > 10 {
				break
			}
		}
	}
	return errors.Join(errs...)
}
