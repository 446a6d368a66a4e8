package postgres

import (
	"maps"
	"slices"
	"strconv"
)

// Crash makes s behave as if its process had died: heartbeats stop and the
// leases stay in the table until they expire.
func Crash(s *Storage) {
	s.mu.Lock()
	held := slices.Collect(maps.Keys(s.held))
	s.mu.Unlock()
	for _, l := range held {
		l.abandon()
	}
}

// SchemaAt returns the SQL that creates the schema of version v (1 up to
// the latest) for prefix, as a released version of this package did.
func SchemaAt(prefix string, v int) string {
	n, err := newNames(prefix)
	if err != nil {
		panic(err)
	}
	sql := ""
	for _, m := range migrations[:v] {
		sql += n.expand(m) + ";\n"
	}
	return sql + `CREATE TABLE ` + n.schema + ` (version integer NOT NULL); INSERT INTO ` + n.schema + ` VALUES (` + strconv.Itoa(v) + `)`
}
