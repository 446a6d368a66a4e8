package autotls_test

import (
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/internal/tcpproxy"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/storage/postgres"
)

// restartEnv names a shell command that restarts the test's PostgreSQL
// server (for example "pg_ctl -D /tmp/pg/data -m fast -w restart"). With
// it, TestPostgresFailoverCachedHandshakes restarts the real server, which
// every other test using it would notice: set it only for a run of that
// test alone. Without it, the test cuts the connections with a proxy.
const restartEnv = "TLSMINT_TEST_POSTGRES_RESTART"

// TestPostgresFailoverCachedHandshakes: a Manager on PostgreSQL storage
// keeps serving a cached name through a failover of its database (every
// connection cut, the server unreachable for a while; or a real restart,
// with TLSMINT_TEST_POSTGRES_RESTART): no handshake fails. Once the
// server is back, the first name it has not seen is obtained, stored and
// served, the storage's first calls succeeding. It runs on the real clock:
// the outage is PostgreSQL's and the kernel's (connections cut, a server
// restarting), which no test clock moves.
func TestPostgresFailoverCachedHandshakes(t *testing.T) {
	dsn := fleetDSN(t)
	e := newEnv(t, testpebble.Options{})
	prefix := fleetPrefix(t, dsn)
	restart := os.Getenv(restartEnv)
	pdsn, proxy := dsn, (*tcpproxy.Proxy)(nil)
	if restart == "" {
		pdsn, proxy = tcpproxy.StartPostgres(t, dsn)
	}
	store := openPostgres(t, postgres.Config{DSN: pdsn, TablePrefix: prefix, LockPollInterval: 20 * time.Millisecond})
	m := e.manager(t, store, nil)
	addr := serve(t, m)
	if _, err := e.handshake(ctxT(t), addr, "example.com"); err != nil {
		t.Fatal(err)
	}

	var ok, failed atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := e.handshake(ctxT(t), addr, "example.com"); err != nil {
				t.Errorf("handshake for the cached name during the failover: %v", err)
				failed.Add(1)
			} else {
				ok.Add(1)
			}
		}
	}()
	time.Sleep(100 * time.Millisecond)
	if restart != "" {
		out, err := exec.CommandContext(ctxT(t), "sh", "-c", restart).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", restart, err, out)
		}
	} else {
		proxy.Down()
		time.Sleep(500 * time.Millisecond)
		proxy.Up()
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	<-done
	t.Logf("%d handshakes during the failover, %d failed", ok.Load(), failed.Load())
	if ok.Load() < 10 {
		t.Errorf("only %d handshakes during the failover", ok.Load())
	}
	if _, err := e.handshake(ctxT(t), addr, "a.example.com"); err != nil {
		t.Fatalf("first new name after the failover: %v", err)
	}
	if _, err := store.Load(ctxT(t), "accounts/none"); err == nil {
		t.Fatal("Load of a missing key succeeded")
	}
}
