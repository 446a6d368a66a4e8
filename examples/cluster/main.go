// Command cluster runs two Managers, two nodes of a fleet behind one load
// balancer, over shared storage, against the in-process test CA. Both nodes
// get their first handshake for the same name at the same moment; the
// storage lock makes exactly one of them order the certificate, and the
// other loads it from storage. The http-01 tokens live in the shared
// storage too, so the CA's validation request may reach either node.
//
// Usage:
//
//	go run ./examples/cluster -dsn 'postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable'
//	TLSMINT_TEST_POSTGRES='postgres://...' go run ./examples/cluster
//	go run ./examples/cluster        # no DSN: a shared temporary folder instead
//
// With PostgreSQL it uses tables prefixed "tlsmint_example_" and deletes the
// keys it added before it exits.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/storage"
	"github.com/tlsmint/tlsmint/storage/postgres"
)

const name = "cluster.tlsmint.test"

func main() {
	dsn := flag.String("dsn", os.Getenv("TLSMINT_TEST_POSTGRES"), "PostgreSQL DSN (default $TLSMINT_TEST_POSTGRES)")
	flag.Parse()
	if err := run(*dsn); err != nil {
		log.Printf("cluster: %v", err)
		os.Exit(1)
	}
}

func run(dsn string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	ca, err := testpebble.New(testpebble.Options{})
	if err != nil {
		return err
	}
	defer ca.Close()

	// One storage handle per node, as two processes would have.
	var stores [2]storage.Storage
	if dsn != "" {
		fmt.Println("shared storage: PostgreSQL")
		for i := range stores {
			s, err := postgres.New(ctx, postgres.Config{DSN: dsn, TablePrefix: "tlsmint_example_"})
			if err != nil {
				return err
			}
			defer s.Close()
			stores[i] = s
		}
		before, err := stores[0].List(ctx, "")
		if err != nil {
			return err
		}
		defer removeAdded(stores[0], before)
	} else {
		dir, err := os.MkdirTemp("", "tlsmint-cluster-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		fmt.Printf("shared storage: folder %s (pass -dsn or set TLSMINT_TEST_POSTGRES for PostgreSQL)\n", dir)
		for i := range stores {
			s := storage.Dir(dir)
			defer s.Close()
			stores[i] = s
		}
	}

	// The nodes, and the load balancer in front of their http-01 handlers:
	// it sends each of the CA's validation requests to the next node.
	var (
		nodes    [2]*autotls.Manager
		handlers [2]http.Handler
		addrs    [2]string
	)
	for i := range nodes {
		m := &autotls.Manager{
			Issuers:          []autotls.Issuer{{DirectoryURL: ca.DirectoryURL()}},
			HTTPClient:       ca.HTTPClient(),
			Storage:          stores[i],
			Hosts:            autotls.HostWhitelist(name),
			AcceptTOS:        true, // agree to the CA's terms of service
			DisableTLSALPN01: true, // the load balancer forwards port 80 only
			OnEvent: func(e autotls.Event) {
				fmt.Printf("node %d: certificate %s (serial %s)\n", i+1, e.Type, e.Serial)
			},
		}
		defer m.Close()
		nodes[i], handlers[i] = m, m.HTTPHandler(nil)
		ln, err := m.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: hello(i + 1), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		addrs[i] = ln.Addr().String()
	}
	var next atomic.Uint32
	lb := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handlers[next.Add(1)%2].ServeHTTP(w, r)
	})}
	lbLn, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(ca.HTTPPort())))
	if err != nil {
		return err
	}
	go lb.Serve(lbLn)
	defer lb.Close()

	// The first handshake through each node, at the same time.
	var (
		wg     sync.WaitGroup
		serial [2]string
		body   [2]string
		errs   [2]error
	)
	for i, addr := range addrs {
		wg.Go(func() {
			d := tls.Dialer{Config: &tls.Config{ServerName: name, RootCAs: ca.RootPool()}}
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				errs[i] = fmt.Errorf("node %d: %w", i+1, err)
				return
			}
			defer c.Close()
			serial[i] = hex.EncodeToString(c.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.Bytes())
			body[i], errs[i] = get(c, name)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	orders := ca.Requests("newOrder")
	for i := range serial {
		fmt.Printf("node %d served serial %s and said %q\n", i+1, serial[i], body[i])
	}
	fmt.Printf("orders the CA received: %d\n", orders)
	if serial[0] != serial[1] || orders != 1 {
		return fmt.Errorf("want one certificate from one order, got serials %s and %s from %d orders", serial[0], serial[1], orders)
	}
	fmt.Println("ok: both nodes serve the same certificate, ordered once")
	return nil
}

// removeAdded deletes the keys that are in s now but were not in before.
func removeAdded(s storage.Storage, before []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	keys, err := s.List(ctx, "")
	if err != nil {
		log.Printf("cluster: cleaning up: %v", err)
		return
	}
	for _, k := range keys {
		if !slices.Contains(before, k) {
			if err := s.Delete(ctx, k); err != nil {
				log.Printf("cluster: cleaning up %s: %v", k, err)
			}
		}
	}
}

// get sends one HTTP/1.1 request for / over c and returns the body.
func get(c net.Conn, host string) (string, error) {
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b)), err
}

func hello(node int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from node %d\n", node)
	})
}
