package postgres

import (
	"context"

	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tlsmint/tlsmint/storage"
)

type subscriber struct {
	prefix string
	ch     chan storage.Event
}

const watchBuffer = 64

// Watch implements [storage.Watcher] with LISTEN/NOTIFY: a trigger on the
// values table notifies every change, made by any node (or by hand in SQL),
// when its transaction commits. The first Watch starts a listener on a
// connection of its own, and returns once it listens; the listener
// reconnects by itself after a lost connection (changes made while it was
// disconnected are not reported). A receiver that falls more than a few
// dozen events behind misses the excess.
func (s *Storage) Watch(ctx context.Context, prefix string) (<-chan storage.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, wrap("watch", prefix, err)
	}
	sub := &subscriber{prefix: prefix, ch: make(chan storage.Event, watchBuffer)}
	s.lmu.Lock()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		s.lmu.Unlock()
		return nil, wrap("watch", prefix, storage.ErrClosed)
	}
	if s.subs == nil {
		s.subs = make(map[*subscriber]struct{})
	}
	s.subs[sub] = struct{}{}
	if !s.listening {
		s.listening = true
		s.ready = make(chan struct{})
		s.wg.Add(1)
		go s.listen()
	}
	ready := s.ready
	s.lmu.Unlock()

	stop := context.AfterFunc(ctx, func() { s.unsubscribe(sub) })
	select {
	case <-ready:
	case <-ctx.Done():
		stop()
		s.unsubscribe(sub)
		return nil, wrap("watch", prefix, ctx.Err())
	case <-s.ctx.Done():
		return nil, wrap("watch", prefix, storage.ErrClosed)
	}
	return sub.ch, nil
}

func (s *Storage) unsubscribe(sub *subscriber) {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if _, ok := s.subs[sub]; ok {
		delete(s.subs, sub)
		close(sub.ch)
	}
}

// listen runs until Close, reconnecting with backoff.
func (s *Storage) listen() {
	defer s.wg.Done()
	defer func() {
		s.lmu.Lock()
		for sub := range s.subs {
			close(sub.ch)
		}
		s.subs = nil
		s.lmu.Unlock()
	}()
	backoff := 100 * time.Millisecond
	first := true
	for s.ctx.Err() == nil {
		err := s.listenOnce(func() {
			backoff = 100 * time.Millisecond
			if first {
				first = false
				close(s.ready)
			}
		})
		if s.ctx.Err() != nil {
			return
		}
		s.log.Warn("postgres: change listener disconnected; reconnecting", slog.Any("error", err), slog.Duration("after", backoff))
		select {
		case <-time.After(backoff):
		case <-s.ctx.Done():
			return
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func (s *Storage) listenOnce(listening func()) error {
	c, err := pgx.ConnectConfig(s.ctx, s.pool.Config().ConnConfig)
	if err != nil {
		return err
	}
	defer closeConn(c)
	if _, err := c.Exec(s.ctx, "LISTEN "+pgx.Identifier{s.n.channel}.Sanitize()); err != nil {
		return err
	}
	listening()
	for {
		n, err := c.WaitForNotification(s.ctx)
		if err != nil {
			return err
		}
		if len(n.Payload) < 2 {
			continue
		}
		ev := storage.Event{Key: n.Payload[1:], Deleted: n.Payload[0] == 'D'}
		s.dispatch(ev)
	}
}

func (s *Storage) dispatch(ev storage.Event) {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	for sub := range s.subs {
		if !strings.HasPrefix(ev.Key, sub.prefix) {
			continue
		}
		select {
		case sub.ch <- ev:
		default:
			s.log.Debug("postgres: watcher is behind; dropping an event", slog.String("key", ev.Key))
		}
	}
}

var _ interface {
	storage.Storage
	storage.Watcher
	storage.LockerWithContext
} = (*Storage)(nil)
