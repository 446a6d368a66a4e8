package acme_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
)

// ListOrders follows Pebble's pagination and returns every order.
func TestListOrders(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{OrdersPerPage: 2})
	c := registered(t, ca)
	var want []string
	for i := range 5 {
		o, err := c.NewOrder(ctxT(t), acme.OrderRequest{Identifiers: acme.DNSNames(fmt.Sprintf("list%d.example.com", i))})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, o.URL)
	}
	got, err := c.ListOrders(ctxT(t), nil)
	if err != nil {
		t.Fatalf("ListOrders: %v", err)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("got orders %v, want %v", got, want)
	}
	if n := ca.Requests("orders"); n < 3 {
		t.Errorf("%d orders-list requests, want 3 pages of 2", n)
	}
}

// A server whose "next" link loops back is read once per page.
func TestListOrdersLoop(t *testing.T) {
	t.Parallel()
	var pages atomic.Int32
	ca := faultCA(t, func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasPrefix(r.URL.Path, "/list-orderz/") {
			return false
		}
		pages.Add(1)
		self := "https://" + r.Host + r.URL.Path
		w.Header().Set("Link", "<"+self+`>;rel="next"`)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"orders":["`+self+`/o1"]}`)
		return true
	})
	c := registered(t, ca)
	got, err := c.ListOrders(ctxT(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || pages.Load() != 1 {
		t.Fatalf("got %d orders from %d pages, want 1 from 1", len(got), pages.Load())
	}
}

// Pre-authorization: refused without a request when the directory has no
// newAuthz; sent with the identifier when it has one.
func TestNewAuthorization(t *testing.T) {
	t.Parallel()
	t.Run("unsupported", func(t *testing.T) {
		t.Parallel()
		ca := newCA(t, testpebble.Options{})
		c := registered(t, ca)
		before := totalRequests(ca)
		_, err := c.NewAuthorization(ctxT(t), acme.Identifier{Type: acme.IdentifierDNS, Value: "pre.example.com"})
		wantIs(t, err, acme.ErrUnsupported)
		if after := totalRequests(ca); after != before {
			t.Fatalf("%d requests made, want none", after-before)
		}
	})
	t.Run("offered", func(t *testing.T) {
		t.Parallel()
		var payload atomic.Value
		ca := rewriteCA(t, "/dir", func(r *http.Request, obj map[string]any) {
			obj["newAuthz"] = "https://" + r.Host + "/new-authz"
		}, func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path != "/new-authz" {
				return false
			}
			p := jwsPayload(r)
			payload.Store(string(p))
			base := "https://" + r.Host
			w.Header().Set("Location", base+"/authZ/pre1")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"status":"pending","identifier":{"type":"dns","value":"pre.example.com"},"challenges":[{"type":"http-01","url":"`+base+`/chalZ/c1","token":"tok1","status":"pending"}]}`)
			return true
		})
		c := registered(t, ca)
		a, err := c.NewAuthorization(ctxT(t), acme.Identifier{Type: acme.IdentifierDNS, Value: "pre.example.com"})
		if err != nil {
			t.Fatalf("NewAuthorization: %v", err)
		}
		if !strings.HasSuffix(a.URL, "/authZ/pre1") || len(a.Challenges) != 1 || a.Challenges[0].KeyAuthorization == "" {
			t.Fatalf("authorization = %+v, want its URL and a challenge with a key authorization", a)
		}
		var got struct{ Identifier acme.Identifier }
		if err := json.Unmarshal(bytes.TrimSpace([]byte(payload.Load().(string))), &got); err != nil || got.Identifier.Value != "pre.example.com" {
			t.Fatalf("payload = %v, want the identifier", payload.Load())
		}
	})
}

func totalRequests(ca *testpebble.CA) int {
	n := 0
	for _, v := range ca.RequestCounts() {
		n += v
	}
	return n
}
