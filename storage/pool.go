package storage

import "time"

// PoolReporter is an optional interface a [Storage] may implement when it
// talks to its backing store over a pool of connections, so that the pool
// can be watched (package metrics exports it as tlsmint_storage_pool_*).
type PoolReporter interface {
	// PoolStats returns the pool's statistics at the time of the call.
	PoolStats() PoolStats
}

// PoolStats are the statistics of a connection pool, as reported by a
// [PoolReporter]. The counts of connections are at the time of the call;
// the totals count since the pool was created.
type PoolStats struct {
	// MaxConns is the most connections the pool opens at once.
	MaxConns int
	// TotalConns is the connections open now: idle, in use and being
	// opened.
	TotalConns int
	// IdleConns is the connections open and not in use.
	IdleConns int
	// AcquiredConns is the connections in use by a call.
	AcquiredConns int
	// ConstructingConns is the connections being opened.
	ConstructingConns int

	// Acquires is the calls that got a connection.
	Acquires int64
	// EmptyAcquires is the calls that got a connection but had to wait
	// for one to be opened or released, none being idle.
	EmptyAcquires int64
	// CanceledAcquires is the calls whose context ended while they waited
	// for a connection.
	CanceledAcquires int64
	// AcquireWait is the total time the calls took to get a connection.
	AcquireWait time.Duration
	// NewConns is the connections opened.
	NewConns int64
	// LifetimeCloses is the connections closed because they reached the
	// pool's maximum lifetime.
	LifetimeCloses int64
	// IdleCloses is the connections closed because they were idle for
	// longer than the pool allows.
	IdleCloses int64
	// BrokenConns is the connections a call found broken (closed by the
	// server or the network under it) and that were closed.
	BrokenConns int64
}
