package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/internal/fsizelimit"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/storage"
)

const helperEnv = "TLSMINT_AUDIT_TEST_HELPER"

// fsizeHelper runs the helper process of TestFlushCutShortEveryPosition
// (from TestMain) when the environment asks for it, and exits.
func fsizeHelper() {
	if os.Getenv(helperEnv) == "fsize-walk" {
		os.Exit(fsizelimit.Walk(func() (int, error) { return fsizeWalk(os.Getenv(fsizelimit.DirEnv)) }))
	}
}

// A flush to the file journal that the kernel cuts short at any byte (a
// helper process limits the size of the files it writes, RLIMIT_FSIZE, as
// a full disk would stop them) fails, keeps its records buffered, and the
// next flush writes each of them once. Before, a failed flush kept its
// whole lines and a torn one, and the next appended them all again.
func TestFlushCutShortEveryPosition(t *testing.T) {
	fsizelimit.Run(t, helperEnv, "fsize-walk", t.TempDir())
}

// fsizeWalk runs in the helper process. For k = 0, 1, 2, … it empties the
// trail, flushes one record, then adds three and flushes them with the
// journal file limited to k bytes more than it holds, lifts the limit and
// flushes again, until a flush fits; after each, it counts the records in
// the trail.
func fsizeWalk(dir string) (int, error) {
	limit, unlimited, err := fsizelimit.Limiter()
	if err != nil {
		return 0, err
	}
	ctx := context.Background()
	store := storage.Dir(dir)
	defer store.Close()
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	l := &Log{Storage: store, Node: "web-1", Retention: -1, FlushInterval: time.Hour}
	defer l.Close()
	p := filepath.Join(dir, ".journal", "audit", "web-1", "2026120110.jsonl")
	add := func(i int) {
		l.Add(record.Audit{Time: at.Add(time.Duration(i) * time.Second), Kind: record.KindDecision, Outcome: record.OutcomeOK, Operation: "obtained", Names: []string{fmt.Sprintf("r%d.example", i)}})
	}
	for k := 0; ; k++ {
		if err := store.TrimJournal(ctx, journalName, at.Add(time.Hour)); err != nil {
			return 0, err
		}
		add(0)
		if err := l.Flush(ctx); err != nil {
			return 0, err
		}
		fi, err := os.Stat(p)
		if err != nil {
			return 0, err
		}
		for i := 1; i <= 3; i++ {
			add(i)
		}
		if err := limit(uint64(fi.Size()) + uint64(k)); err != nil {
			return 0, err
		}
		err = l.Flush(ctx)
		if lerr := unlimited(); lerr != nil {
			return 0, lerr
		}
		if err != nil {
			if !errors.Is(err, syscall.EFBIG) {
				return 0, fmt.Errorf("limit +%d: Flush = %v, want EFBIG", k, err)
			}
			if err := l.Flush(ctx); err != nil {
				return 0, fmt.Errorf("limit +%d: the next Flush: %v", k, err)
			}
		}
		recs, qerr := l.Query(ctx, record.AuditFilter{})
		if qerr != nil {
			return 0, qerr
		}
		var names []string
		for _, r := range recs {
			names = append(names, r.Names...)
		}
		if want := "[r0.example r1.example r2.example r3.example]"; fmt.Sprint(names) != want {
			return 0, fmt.Errorf("limit +%d: the trail holds %v, want %s each once", k, names, want)
		}
		if err == nil {
			return k, nil
		}
	}
}
