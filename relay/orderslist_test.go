package relay_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/relay"
)

// TestOrdersListPaginated: an account's orders list comes in pages of
// OrdersPageSize linked with Link rel="next" (RFC 8555, section
// 7.1.2.1), oldest first, invalid orders left out; acme.Client.ListOrders
// follows the links to every order; a bad cursor is malformed.
func TestOrdersListPaginated(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := e.registered(t)
	ctx := ctxT(t)
	const n = 2*relay.OrdersPageSize + 30
	var want []string
	for i := range n {
		o, err := c.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames("page.example.com")})
		if err != nil {
			t.Fatalf("order %d: %v", i, err)
		}
		if i%10 == 3 { // made invalid: not listed
			if _, err := c.DeactivateAuthorization(ctx, &acme.Authorization{URL: o.Authorizations[0]}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want = append(want, o.URL)
	}
	acctURL := accountURL(t, c)
	code, p, hdr := e.signedPost(t, c.Key, acctURL, acctURL+"/orders", nil)
	if code != http.StatusOK || p != nil {
		t.Fatalf("first page: %d %v", code, p)
	}
	next := regexp.MustCompile(`<([^>]+)>;rel="next"`).FindStringSubmatch(strings.Join(hdr.Values("Link"), ", "))
	if next == nil {
		t.Fatalf("first page has no next link: %q", hdr["Link"])
	}
	// The first page itself, raw.
	body := e.postAsGetBody(t, c, acctURL+"/orders")
	var page struct {
		Orders []string `json:"orders"`
	}
	if err := json.Unmarshal(body, &page); err != nil || len(page.Orders) != relay.OrdersPageSize || !slices.Equal(page.Orders, want[:relay.OrdersPageSize]) {
		t.Fatalf("first page has %d orders (%v), want the oldest %d", len(page.Orders), err, relay.OrdersPageSize)
	}
	got, err := c.ListOrders(ctx, nil)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("ListOrders: %d orders, %v; want the %d that are not invalid, in order", len(got), err, len(want))
	}
	if code, p, _ := e.signedPost(t, c.Key, acctURL, acctURL+"/orders?cursor=../../etc", nil); code != http.StatusBadRequest || p == nil {
		t.Fatalf("bad cursor: %d %v, want malformed", code, p)
	}
}

// postAsGetBody POSTs-as-GET url signed by c's account and returns the
// body of a 200 answer.
func (e *env) postAsGetBody(t *testing.T, c *acme.Client, url string) []byte {
	t.Helper()
	hdr := map[string]any{"alg": algOf(c.Key), "nonce": e.nonce(t), "url": url, "kid": accountURL(t, c)}
	resp, err := e.ts.Client().Post(url, "application/jose+json", bytes.NewReader(rawJWS(t, c.Key, hdr, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST-as-GET %s: %d %s", url, resp.StatusCode, b)
	}
	return b
}
