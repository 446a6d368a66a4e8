package postgres

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// names are the quoted SQL names of the objects of one table prefix.
type names struct {
	prefix  string
	values  string // table of values
	locks   string // table of leases
	schema  string // table holding the schema version
	fence   string // sequence of fencing tokens
	notify  string // trigger function
	channel string // NOTIFY channel, unquoted
	journal string // table of journal entries
}

var validPrefix = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,39}$`)

func newNames(prefix string) (names, error) {
	if !validPrefix.MatchString(prefix) {
		return names{}, fmt.Errorf("postgres: table prefix %q must match %s", prefix, validPrefix)
	}
	q := func(s string) string { return pgx.Identifier{prefix + s}.Sanitize() }
	return names{
		prefix:  prefix,
		values:  q("values"),
		locks:   q("locks"),
		schema:  q("schema_version"),
		fence:   q("fence"),
		notify:  q("notify"),
		channel: prefix + "changes",
		journal: q("journal"),
	}, nil
}

func (n names) expand(sql string) string {
	return strings.NewReplacer(
		"{values}", n.values, "{locks}", n.locks, "{fence}", n.fence,
		"{notify}", n.notify, "{channel}", n.channel, "{trigger}", pgx.Identifier{n.prefix + "notify"}.Sanitize(),
		"{journal}", n.journal, "{journal_time}", pgx.Identifier{n.prefix + "journal_time"}.Sanitize(),
		"{journal_keys}", pgx.Identifier{n.prefix + "journal_keys"}.Sanitize(),
	).Replace(sql)
}

// migrations bring the schema from version i to i+1. They are applied in
// order, each once, and never edited once released: changes are new
// entries.
var migrations = []string{
	// 1: values, leases with fencing tokens, change notifications.
	`CREATE TABLE {values} (
		key      text COLLATE "C" PRIMARY KEY,
		value    bytea NOT NULL,
		modified timestamptz NOT NULL DEFAULT now()
	);
	CREATE TABLE {locks} (
		name    text COLLATE "C" PRIMARY KEY,
		owner   text NOT NULL,
		expires timestamptz NOT NULL,
		token   bigint NOT NULL
	);
	CREATE SEQUENCE {fence};
	CREATE FUNCTION {notify}() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF TG_OP = 'DELETE' THEN
			PERFORM pg_notify('{channel}', 'D' || OLD.key);
		ELSE
			PERFORM pg_notify('{channel}', 'S' || NEW.key);
		END IF;
		RETURN NULL;
	END $$;
	CREATE TRIGGER {trigger} AFTER INSERT OR UPDATE OR DELETE ON {values}
		FOR EACH ROW EXECUTE FUNCTION {notify}();`,
	// 2: journals (storage.Journal): append-only entries, read by journal
	// and time range and by key, trimmed by time.
	`CREATE TABLE {journal} (
		id      bigserial PRIMARY KEY,
		journal text COLLATE "C" NOT NULL,
		time    timestamptz NOT NULL,
		node    text NOT NULL,
		keys    text[] NOT NULL,
		data    json NOT NULL
	);
	CREATE INDEX {journal_time} ON {journal} (journal, time);
	CREATE INDEX {journal_keys} ON {journal} USING gin (keys);`,
}

// migrate creates or upgrades the schema. Concurrent callers (a fleet
// starting at once) are serialised by an advisory lock.
func migrate(ctx context.Context, c *pgx.Conn, n names) error {
	// A schema already at this version needs nothing: no lock, and no
	// CREATE, so that a role without the right to create tables (a
	// managed database's runtime role) can start once the schema exists.
	var exists bool
	if err := c.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, n.schema).Scan(&exists); err != nil {
		return err
	}
	if exists {
		var version int
		if err := c.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+n.schema).Scan(&version); err != nil {
			return err
		}
		if err := checkVersion(version); err != nil {
			return err
		}
		if version == len(migrations) {
			return nil
		}
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, "tlsmint-migrate:"+n.prefix); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+n.schema+` (version integer NOT NULL)`); err != nil {
		return err
	}
	var version int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM `+n.schema).Scan(&version); err != nil {
		return err
	}
	if err := checkVersion(version); err != nil {
		return err
	}
	if version == len(migrations) {
		return nil
	}
	for i := version; i < len(migrations); i++ {
		if _, err := tx.Exec(ctx, n.expand(migrations[i])); err != nil {
			return fmt.Errorf("postgres: migration %d: %w", i+1, err)
		}
	}
	if _, err := tx.Exec(ctx, `DELETE FROM `+n.schema); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+n.schema+` (version) VALUES ($1)`, len(migrations)); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// ErrSchemaTooNew is returned (wrapped) by [New] when the database's schema
// is at a version newer than this code knows, written by a newer release:
// New then changes nothing, so that the newer nodes keep working.
var ErrSchemaTooNew = errors.New("postgres: the schema is newer than this code knows")

// checkVersion refuses a schema newer than the migrations. It is checked
// before anything is written, so that a node without the right to create
// tables, or on a read-only connection, says why it cannot start.
func checkVersion(version int) error {
	if version > len(migrations) {
		return fmt.Errorf("%w: version %d, this code knows up to %d", ErrSchemaTooNew, version, len(migrations))
	}
	return nil
}

// Drop removes everything a Storage with cfg's TablePrefix creates — the
// values, leases, journal and schema-version tables, the fencing sequence
// and the notification function with its trigger — to tear a deployment
// or a test down. It connects with cfg.DSN; no Storage may be using the
// tables meanwhile. Objects that do not exist are skipped.
func Drop(ctx context.Context, cfg Config) error {
	if cfg.TablePrefix == "" {
		cfg.TablePrefix = "tlsmint_"
	}
	n, err := newNames(cfg.TablePrefix)
	if err != nil {
		return err
	}
	pcfg, err := pgxpool.ParseConfig(cfg.DSN) // takes the pool parameters out
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	c, err := pgx.ConnectConfig(ctx, pcfg.ConnConfig)
	if err != nil {
		return fmt.Errorf("postgres: connecting: %w", err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	for _, stmt := range []string{
		"DROP TABLE IF EXISTS " + n.values + " CASCADE",
		"DROP TABLE IF EXISTS " + n.locks + " CASCADE",
		"DROP TABLE IF EXISTS " + n.journal + " CASCADE",
		"DROP TABLE IF EXISTS " + n.schema + " CASCADE",
		"DROP SEQUENCE IF EXISTS " + n.fence + " CASCADE",
		"DROP FUNCTION IF EXISTS " + n.notify + " CASCADE",
	} {
		if _, err := c.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("postgres: %s: %w", stmt, err)
		}
	}
	return nil
}
