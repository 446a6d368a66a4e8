//go:build unix

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/storage"
)

// BenchmarkCertsListFailing is `tlsmint certs list --state failing` over
// a storage folder of a million managed names: the schedule index the
// Managers keep (1,024 values; one name in a thousand with a failed
// renewal) and a stored certificate for each failing name, which the
// listing loads to print it. The figures BENCHMARKS.md reports: the whole
// command, opening the storage to the last line, in time and in CPU time
// (cpu-s/op).
func BenchmarkCertsListFailing(b *testing.B) {
	const (
		n   = 1_000_000
		dir = "https://ca.scale.test/directory"
		seg = "ca.scale.test-directory" // autotls's storage key of dir
	)
	folder := b.TempDir()
	store := storage.Dir(folder)
	ctx := context.Background()
	now := time.Now()
	nb := now.Add(-30 * 24 * time.Hour).Truncate(time.Second)
	index := make([]map[string][4]int64, 1024)
	failing := 0
	for i := range n {
		name := fmt.Sprintf("host%07d.scale.example.com", i)
		na := now.Add(24*time.Hour + time.Duration(i)*time.Second).Truncate(time.Second)
		var failedAt int64
		if i%1000 == 7 {
			failedAt = now.Add(-time.Hour).Unix()
			failing++
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 1)), DNSNames: []string{name}, NotBefore: nb, NotAfter: na}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
			if err != nil {
				b.Fatal(err)
			}
			if err := autotls.ImportCertificate(ctx, store, autotls.ImportedCertificate{
				Directory: dir, Name: name, ChainPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Key: key,
			}); err != nil {
				b.Fatal(err)
			}
		}
		bk := i % len(index)
		if index[bk] == nil {
			index[bk] = map[string][4]int64{}
		}
		index[bk][name] = [4]int64{na.Unix(), na.Add(-20 * 24 * time.Hour).Unix(), nb.Unix(), failedAt}
	}
	for bk, names := range index {
		v, err := json.Marshal(map[string]any{"version": 1, "issuer": dir, "names": names})
		if err != nil {
			b.Fatal(err)
		}
		if err := store.Store(ctx, fmt.Sprintf("index/%s/%03x.json", seg, bk), v); err != nil {
			b.Fatal(err)
		}
	}
	index = nil
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	runs, cpu0 := 0, cpu()
	for b.Loop() {
		runs++
		var out strings.Builder
		if code := runEnv(ctx, []string{"certs", "list", "--storage", folder, "--state", "failing"}, strings.NewReader(""), &out, io.Discard, func(string) string { return "" }); code != 0 {
			b.Fatalf("exit %d", code)
		}
		if got := strings.Count(out.String(), "\n") - 1; got != failing {
			b.Fatalf("%d rows, want %d", got, failing)
		}
	}
	// The CPU time of the process (every thread, the collector's
	// included) per run: on a shared machine, what a run costs whatever
	// the others' load.
	b.ReportMetric((cpu()-cpu0).Seconds()/float64(runs), "cpu-s/op")
}
