package storagetest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/storage"
)

func mustStore(t *testing.T, ctx context.Context, st storage.Storage, key string, value []byte) {
	t.Helper()
	if err := st.Store(ctx, key, value); err != nil {
		t.Fatalf("Store(%q): %v", key, err)
	}
}

func mustLoad(t *testing.T, ctx context.Context, st storage.Storage, key string) []byte {
	t.Helper()
	got, err := st.Load(ctx, key)
	if err != nil {
		t.Fatalf("Load(%q): %v", key, err)
	}
	return got
}

func wantMissing(t *testing.T, ctx context.Context, st storage.Storage, key string) {
	t.Helper()
	if got, err := st.Load(ctx, key); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(%q) = %d bytes, %v; want an error wrapping fs.ErrNotExist", key, len(got), err)
	}
	if info, err := st.Stat(ctx, key); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat(%q) = %+v, %v; want an error wrapping fs.ErrNotExist", key, info, err)
	}
}

func (s *suite) testStoreLoad(t *testing.T) {
	ctx, st := testContext(t), s.newStorage(t)
	key := s.key("storeload", "example.com", "example.com.json")
	value := []byte(`{"name":"example.com"}`)
	mustStore(t, ctx, st, key, value)
	value[0] = 'X' // the caller may reuse its slice
	got := mustLoad(t, ctx, st, key)
	if want := `{"name":"example.com"}`; string(got) != want {
		t.Fatalf("Load(%q) = %q, want %q", key, got, want)
	}
	got[0] = 'Y' // the returned slice belongs to the caller
	if again := mustLoad(t, ctx, st, key); string(again) != `{"name":"example.com"}` {
		t.Errorf("after changing a loaded slice, Load(%q) = %q", key, again)
	}
}

func (s *suite) testLoadMissing(t *testing.T) {
	ctx, st := testContext(t), s.newStorage(t)
	wantMissing(t, ctx, st, s.key("missing", "never-stored"))
	wantMissing(t, ctx, st, s.key("missing-folder", "a", "b", "c"))
}

func (s *suite) testEmptyValue(t *testing.T) {
	ctx, st := testContext(t), s.newStorage(t)
	for name, value := range map[string][]byte{"nil": nil, "empty": {}} {
		key := s.key("empty", name)
		mustStore(t, ctx, st, key, value)
		if got := mustLoad(t, ctx, st, key); len(got) != 0 {
			t.Errorf("Load(%q) = %q, want empty", key, got)
		}
		info, err := st.Stat(ctx, key)
		if err != nil || info.Size != 0 {
			t.Errorf("Stat(%q) = %+v, %v; want size 0", key, info, err)
		}
	}
}

func (s *suite) testBinaryValue(t *testing.T) {
	ctx, st := testContext(t), s.newStorage(t)
	value := make([]byte, 0, 512)
	for i := range 256 {
		value = append(value, byte(i), byte(255-i))
	}
	key := s.key("binary", "all-bytes")
	mustStore(t, ctx, st, key, value)
	if got := mustLoad(t, ctx, st, key); !bytes.Equal(got, value) {
		t.Errorf("Load(%q) returned %d bytes that differ from the %d stored", key, len(got), len(value))
	}
}

func (s *suite) testLargeValue(t *testing.T) {
	ctx, st := testContext(t), s.newStorage(t)
	for _, size := range []int{64 << 10, 4 << 20} {
		value := randomBytes(size)
		key := s.key("large", fmt.Sprint(size))
		mustStore(t, ctx, st, key, value)
		if got := mustLoad(t, ctx, st, key); !bytes.Equal(got, value) {
			t.Errorf("Load(%q) returned %d bytes that differ from the %d stored", key, len(got), size)
		}
		if info, err := st.Stat(ctx, key); err != nil || info.Size != int64(size) {
			t.Errorf("Stat(%q) = %+v, %v; want size %d", key, info, err, size)
		}
	}
}

func (s *suite) testOverwrite(t *testing.T) {
	ctx, st := testContext(t), s.newStorage(t)
	key := s.key("overwrite", "k")
	for _, v := range []string{"a long first value", "short", "", "a third value"} {
		mustStore(t, ctx, st, key, []byte(v))
		if got := mustLoad(t, ctx, st, key); string(got) != v {
			t.Errorf("after Store(%q, %q), Load = %q", key, v, got)
		}
	}
}

func (s *suite) testDelete(t *testing.T) {
	ctx, st := testContext(t), s.newStorage(t)
	key := s.key("delete", "k")
	mustStore(t, ctx, st, key, []byte("v"))
	if err := st.Delete(ctx, key); err != nil {
		t.Fatalf("Delete(%q): %v", key, err)
	}
	wantMissing(t, ctx, st, key)
	if err := st.Delete(ctx, key); err != nil {
		t.Errorf("Delete(%q) of a deleted key = %v, want nil", key, err)
	}
	if err := st.Delete(ctx, s.key("delete", "never", "stored")); err != nil {
		t.Errorf("Delete of a key never stored = %v, want nil", err)
	}
	mustStore(t, ctx, st, key, []byte("again"))
	if got := mustLoad(t, ctx, st, key); string(got) != "again" {
		t.Errorf("Load after re-Store = %q, want %q", got, "again")
	}
}

// oddKeys are valid keys that a careless backend would mangle, merge or
// refuse.
func oddKeys() map[string]string {
	return map[string]string{
		"upper":        "Example.COM",
		"lower":        "example.com",
		"mixed":        "eXample.com",
		"space":        "with space",
		"unicode":      "ünïcödé/ключ/鍵",
		"wildcard":     "*.example.com",
		"percent":      "100%25",
		"percent2":     "100%",
		"plus-amp":     "a+b&c",
		"tilde":        "~tilde~",
		"dot-first":    ".hidden",
		"dots-inside":  "a..b",
		"trailing-dot": "trailing.",
		"dash":         "-dash-",
		"at":           "users/ops@example.com",
		"colon":        "c:/x",
		"quotes":       `"'<>|?`,
		"dir-suffix":   "plain+",
		"long-segment": strings.Repeat("s", 300),
		"many-levels":  strings.Repeat("d/", 100) + "leaf",
	}
}

func (s *suite) testOddKeys(t *testing.T) {
	ctx, st := testContext(t), s.newStorage(t)
	prefix := s.key("odd") + "/"
	keys := oddKeys()
	// The longest key allowed, with a long final segment of escaped bytes.
	longest := prefix + "max/"
	longest += strings.Repeat("Ü", (storage.MaxKeyLen-len(longest))/2)
	longest += strings.Repeat("x", storage.MaxKeyLen-len(longest))
	var want []string
	for name, k := range keys {
		key := prefix + k
		if err := st.Store(ctx, key, []byte(name)); err != nil {
			t.Errorf("Store(%q): %v", key, err)
			continue
		}
		want = append(want, key)
	}
	if err := st.Store(ctx, longest, []byte("longest")); err != nil {
		t.Errorf("Store of a %d-byte key: %v", len(longest), err)
	} else {
		want = append(want, longest)
		keys["longest"] = strings.TrimPrefix(longest, prefix)
	}
	for name, k := range keys {
		key := prefix + k
		got, err := st.Load(ctx, key)
		if err != nil {
			t.Errorf("Load(%q): %v", key, err)
			continue
		}
		if string(got) != name {
			t.Errorf("Load(%q) = %q, want %q (keys were merged)", key, got, name)
		}
		if info, err := st.Stat(ctx, key); err != nil || info.Key != key || info.Size != int64(len(name)) {
			t.Errorf("Stat(%q) = %+v, %v", key, info, err)
		}
	}
	slices.Sort(want)
	list, err := st.List(ctx, prefix)
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	if !slices.Equal(list, want) {
		t.Errorf("List(%q):\n got %q\nwant %q", prefix, list, want)
	}
	for _, key := range want {
		if err := st.Delete(ctx, key); err != nil {
			t.Errorf("Delete(%q): %v", key, err)
		}
	}
	if list, err := st.List(ctx, prefix); err != nil || len(list) != 0 {
		t.Errorf("List(%q) after deleting all = %q, %v; want none", prefix, list, err)
	}
}

func (s *suite) testInvalidKeys(t *testing.T) {
	ctx, st := testContext(t), s.newStorage(t)
	p := s.key("invalid")
	for name, key := range map[string]string{
		"empty":           "",
		"absolute":        "/" + p + "/abs",
		"trailing-slash":  p + "/dir/",
		"double-slash":    p + "//x",
		"dot":             p + "/./x",
		"dotdot":          p + "/../../etc/passwd",
		"only-dotdot":     "..",
		"nul":             p + "/nul\x00byte",
		"newline":         p + "/line\nbreak",
		"backslash":       p + `\..\x`,
		"too-long":        p + "/" + strings.Repeat("x", storage.MaxKeyLen),
		"invalid-utf8":    p + "/\xff\xfe",
		"dotdot-trailing": p + "/..",
	} {
		t.Run(name, func(t *testing.T) {
			if err := st.Store(ctx, key, []byte("x")); !errors.Is(err, storage.ErrInvalidKey) {
				t.Errorf("Store(%q) = %v, want ErrInvalidKey", key, err)
			}
			if _, err := st.Load(ctx, key); !errors.Is(err, storage.ErrInvalidKey) || errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Load(%q) = %v, want ErrInvalidKey (and not ErrNotExist)", key, err)
			}
			if _, err := st.Stat(ctx, key); !errors.Is(err, storage.ErrInvalidKey) {
				t.Errorf("Stat(%q) = %v, want ErrInvalidKey", key, err)
			}
			if err := st.Delete(ctx, key); !errors.Is(err, storage.ErrInvalidKey) {
				t.Errorf("Delete(%q) = %v, want ErrInvalidKey", key, err)
			}
			if unlock, err := st.Lock(ctx, key); !errors.Is(err, storage.ErrInvalidKey) {
				t.Errorf("Lock(%q) = %v, want ErrInvalidKey", key, err)
				if err == nil {
					_ = unlock()
				}
			}
		})
	}
	if list, err := st.List(ctx, p); err != nil || len(list) != 0 {
		t.Errorf("List(%q) = %q, %v; want nothing stored", p, list, err)
	}
}

func (s *suite) testKeyAndPrefix(t *testing.T) {
	ctx, st := testContext(t), s.newStorage(t)
	parent, child := s.key("nest", "a"), s.key("nest", "a", "b")
	mustStore(t, ctx, st, parent, []byte("parent"))
	mustStore(t, ctx, st, child, []byte("child"))
	if got := mustLoad(t, ctx, st, parent); string(got) != "parent" {
		t.Errorf("Load(%q) = %q, want %q", parent, got, "parent")
	}
	if err := st.Delete(ctx, parent); err != nil {
		t.Fatalf("Delete(%q): %v", parent, err)
	}
	if got := mustLoad(t, ctx, st, child); string(got) != "child" {
		t.Errorf("after deleting %q, Load(%q) = %q, want %q", parent, child, got, "child")
	}
	// And the other way round: a value where a folder used to be.
	if err := st.Delete(ctx, child); err != nil {
		t.Fatalf("Delete(%q): %v", child, err)
	}
	mustStore(t, ctx, st, parent, []byte("again"))
	if got := mustLoad(t, ctx, st, parent); string(got) != "again" {
		t.Errorf("Load(%q) = %q, want %q", parent, got, "again")
	}
}

func (s *suite) testList(t *testing.T) {
	ctx, st := testContext(t), s.newStorage(t)
	base := s.key("list")
	stored := []string{
		base + "/certs/example.com/example.com.crt",
		base + "/certs/example.com/example.com.key",
		base + "/certs/example.org/example.org.crt",
		base + "/certs/example.net",
		base + "/accounts/ca/ops@example.com.json",
		base + "/z",
	}
	for _, k := range stored {
		mustStore(t, ctx, st, k, []byte(k))
	}
	mustStore(t, ctx, st, base+"-other/x", []byte("outside"))
	for _, tc := range []struct {
		name, prefix string
		want         []string
	}{
		{"all", base + "/", sorted(stored)},
		{"folder", base + "/certs/", sorted(stored[:4])},
		{"partial segment", base + "/certs/example.", sorted(stored[:4])},
		{"partial name", base + "/certs/example.com/example.com.k", stored[1:2]},
		{"exact key", base + "/z", stored[5:6]},
		{"no slash", base, sorted(append(slices.Clone(stored), base+"-other/x"))},
		{"no match", base + "/nothing/", nil},
		{"no match partial", base + "/certs/x", nil},
		{"odd prefix", base + "/../", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := st.List(ctx, tc.prefix)
			if err != nil {
				t.Fatalf("List(%q): %v", tc.prefix, err)
			}
			if len(got) != 0 || len(tc.want) != 0 {
				if !slices.Equal(got, tc.want) {
					t.Errorf("List(%q):\n got %q\nwant %q", tc.prefix, got, tc.want)
				}
			}
		})
	}
	if err := st.Delete(ctx, stored[0]); err != nil {
		t.Fatal(err)
	}
	if got, err := st.List(ctx, base+"/certs/example.com/"); err != nil || !slices.Equal(got, stored[1:2]) {
		t.Errorf("List after Delete = %q, %v; want %q", got, err, stored[1:2])
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func (s *suite) testStat(t *testing.T) {
	ctx, st := testContext(t), s.newStorage(t)
	key := s.key("stat", "k")
	before := time.Now()
	mustStore(t, ctx, st, key, []byte("12345"))
	info, err := st.Stat(ctx, key)
	if err != nil {
		t.Fatalf("Stat(%q): %v", key, err)
	}
	if info.Key != key || info.Size != 5 {
		t.Errorf("Stat(%q) = %+v, want key %q and size 5", key, info, key)
	}
	// Backends may use another machine's clock: allow a generous skew.
	if d := info.Modified.Sub(before); d < -time.Minute || d > time.Minute {
		t.Errorf("Stat(%q).Modified = %v, more than a minute away from %v", key, info.Modified, before)
	}
	mustStore(t, ctx, st, key, []byte("1234567"))
	info2, err := st.Stat(ctx, key)
	if err != nil {
		t.Fatalf("Stat(%q): %v", key, err)
	}
	if info2.Size != 7 {
		t.Errorf("Stat(%q).Size after overwrite = %d, want 7", key, info2.Size)
	}
	if info2.Modified.Before(info.Modified) {
		t.Errorf("Stat(%q).Modified went back: %v then %v", key, info.Modified, info2.Modified)
	}
}

func (s *suite) testCancelledContext(t *testing.T) {
	st := s.newStorage(t)
	key := s.key("cancelled", "k")
	mustStore(t, testContext(t), st, key, []byte("v"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context = %v, want context.Canceled", op, err)
		}
	}
	check("Store", st.Store(ctx, key, []byte("new")))
	_, err := st.Load(ctx, key)
	check("Load", err)
	_, err = st.Stat(ctx, key)
	check("Stat", err)
	_, err = st.List(ctx, s.key("cancelled"))
	check("List", err)
	check("Delete", st.Delete(ctx, key))
	unlock, err := st.Lock(ctx, s.key("cancelled", "lock"))
	check("Lock", err)
	if err == nil {
		_ = unlock()
	}
	if got := mustLoad(t, testContext(t), st, key); string(got) != "v" {
		t.Errorf("after cancelled calls, Load(%q) = %q, want %q", key, got, "v")
	}
}

// sealed makes a self-checking value: its length and checksum are inside, so
// any mixture or truncation of two such values is detected by unseal.
func sealed(writer, i int) []byte {
	body := bytes.Repeat([]byte{byte(writer*31 + i)}, 1000+(writer*7919+i*104729)%20000)
	out := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	out = binary.BigEndian.AppendUint32(out, crc32.ChecksumIEEE(body))
	return append(out, body...)
}

func unseal(v []byte) error {
	if len(v) < 8 {
		return fmt.Errorf("value of %d bytes is too short", len(v))
	}
	n, sum := binary.BigEndian.Uint32(v), binary.BigEndian.Uint32(v[4:])
	if int(n) != len(v)-8 {
		return fmt.Errorf("value has %d bytes of body, its header says %d", len(v)-8, n)
	}
	if crc32.ChecksumIEEE(v[8:]) != sum {
		return errors.New("value's checksum does not match")
	}
	return nil
}

func (s *suite) testConcurrentStoreLoad(t *testing.T) {
	ctx := testContext(t)
	key := s.key("concurrent", "k")
	clients := []storage.Storage{s.newStorage(t), s.newStorage(t)}
	mustStore(t, ctx, clients[0], key, sealed(0, 0))
	const writers, readers, rounds = 4, 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers+readers)
	for w := range writers {
		wg.Go(func() {
			st := clients[w%len(clients)]
			for i := range rounds {
				if err := st.Store(ctx, key, sealed(w+1, i)); err != nil {
					errs <- fmt.Errorf("writer %d: Store: %w", w, err)
					return
				}
			}
		})
	}
	for r := range readers {
		wg.Go(func() {
			st := clients[r%len(clients)]
			for range rounds {
				v, err := st.Load(ctx, key)
				if err != nil {
					errs <- fmt.Errorf("reader %d: Load: %w", r, err)
					return
				}
				if err := unseal(v); err != nil {
					errs <- fmt.Errorf("reader %d saw a torn value: %w", r, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// testConcurrentDelete deletes sibling keys of one folder at once, each
// twice, from two clients, as the clean-ups of many challenges do: every
// Delete returns nil (a key a sibling or twin call already removed is a
// missing key), and none of the keys is left.
func (s *suite) testConcurrentDelete(t *testing.T) {
	ctx := testContext(t)
	clients := []storage.Storage{s.newStorage(t), s.newStorage(t)}
	const rounds, siblings = 10, 8
	for r := range rounds {
		keys := make([]string, siblings)
		for i := range keys {
			keys[i] = s.key("concurrent-delete", fmt.Sprintf("r%d", r), fmt.Sprintf("k%d", i))
			mustStore(t, ctx, clients[i%len(clients)], keys[i], []byte("v"))
		}
		errs := make([]error, 2*siblings)
		var wg sync.WaitGroup
		for i := range errs {
			wg.Go(func() { errs[i] = clients[i%len(clients)].Delete(ctx, keys[i/2]) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d: concurrent Delete(%q): got %v, want nil", r, keys[i/2], err)
			}
		}
		for _, k := range keys {
			wantMissing(t, ctx, clients[0], k)
		}
	}
	prefix := s.key("concurrent-delete") + "/"
	if got, err := clients[1].List(ctx, prefix); err != nil || len(got) != 0 {
		t.Errorf("List(%q) after the Deletes: got %q, %v; want no keys", prefix, got, err)
	}
}

func (s *suite) testOtherClient(t *testing.T) {
	ctx := testContext(t)
	a, b := s.newStorage(t), s.newStorage(t)
	key := s.key("clients", "shared")
	mustStore(t, ctx, a, key, []byte("from a"))
	if got := mustLoad(t, ctx, b, key); string(got) != "from a" {
		t.Errorf("client b: Load(%q) = %q, want %q", key, got, "from a")
	}
	if err := b.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	wantMissing(t, ctx, a, key)
}
