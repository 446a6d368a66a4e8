package relay_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/relay"
	"github.com/tlsmint/tlsmint/storage"
)

// TestAPIRouting pins how the ACME API answers each method and path
// before any handler looks at the request: the status, the Allow header
// of a 405, whether the answer carries a nonce and the directory's
// Link, the problem, and the operation of its audit record (which
// names the handler that answered). A POST without a Content-Type is
// refused by the JWS check of whichever handler it reaches (415), so
// its operation says which one it was. Unclean and escaped paths
// ("/acct/../directory", "/dir%65ctory", "//directory") reach no
// resource they do not spell, and nothing redirects.
func TestAPIRouting(t *testing.T) {
	t.Parallel()
	const (
		id     = "aaaaaaaaaaaaaaaaaaaaaaaaaa" // the shape of a relay ID
		index  = `<https://acme.example/acme/directory>;rel="index"`
		post   = "POST"
		getHd  = "GET, HEAD"
		noRes  = "resource not found"
		noCert = "certificate not found"
	)
	type answer struct {
		status int
		allow  string // the Allow header
		nonce  bool   // a Replay-Nonce
		link   string // the Link header
		op     string // the audit record's operation, "" for none
		detail string // the problem's detail, "" for no check (415s)
	}
	var (
		signed405 = answer{status: 405, allow: post, nonce: true, link: index, op: "request", detail: "method GET not allowed here"}
		signed404 = answer{status: 404, nonce: true, link: index, op: "request", detail: noRes}
		plain404  = answer{status: 404, op: "request", detail: noRes}
		info404   = answer{status: 404, link: index, op: "renewalInfo", detail: noCert}
		reached   = func(op string) answer { return answer{status: 415, nonce: true, link: index, op: op} }
	)
	cases := []struct {
		method, path string
		want         answer
	}{
		// Outside the prefix, and the prefix itself.
		{"GET", "/other/directory", plain404},
		{"GET", "/acmex/directory", plain404},
		{"GET", "/acme", plain404},
		{"POST", "/acme", plain404},
		{"GET", "/acme/", plain404},
		{"POST", "/acme/", plain404},

		// The directory.
		{"GET", "/acme/directory", answer{status: 200}},
		{"HEAD", "/acme/directory", answer{status: 200}},
		{"POST", "/acme/directory", answer{status: 405, allow: getHd, op: "request", detail: "method POST not allowed here"}},
		{"PUT", "/acme/directory", answer{status: 405, allow: getHd, op: "request", detail: "method PUT not allowed here"}},
		{"GET", "/acme/directory/", signed405},
		{"POST", "/acme/directory/", signed404},
		{"GET", "/acme/dir%65ctory", signed405},
		{"GET", "/acme//directory", signed405},
		{"GET", "/acme/x/../directory", signed405},
		{"GET", "/acme/./directory", signed405},
		{"GET", "/acme/%2e%2e/directory", signed405},
		{"GET", "/acme/directory/..", signed405},
		{"GET", "/acme/new-order/../directory", signed405},

		// newNonce.
		{"GET", "/acme/new-nonce", answer{status: 204, nonce: true, link: index}},
		{"HEAD", "/acme/new-nonce", answer{status: 200, nonce: true, link: index}},
		{"POST", "/acme/new-nonce", answer{status: 405, allow: getHd, op: "request", detail: "method POST not allowed here"}},
		{"GET", "/acme/new-nonce/", signed405},
		{"GET", "/acme/new-nonce/x", signed405},

		// renewalInfo: everything below it is a certificate ID.
		{"GET", "/acme/renewal-info/aaaa.bbbb", info404},
		{"HEAD", "/acme/renewal-info/aaaa.bbbb", info404},
		{"POST", "/acme/renewal-info/aaaa.bbbb", answer{status: 405, allow: getHd, op: "request", detail: "method POST not allowed here"}},
		{"GET", "/acme/renewal-info/", info404},
		{"GET", "/acme/renewal-info/a/b", info404},
		{"GET", "/acme/renewal-info/aaaa.bbbb/", info404},
		{"GET", "/acme/renewal-info/../directory", info404},
		{"GET", "/acme/renewal-info/./aaaa.bbbb", info404},
		{"GET", "/acme/renewal-info//aaaa.bbbb", info404},
		{"GET", "/acme/renewal-info/aaaa%2Ebbbb", info404},
		{"GET", "/acme/renewal-info", signed405},
		{"POST", "/acme/renewal-info", signed404},

		// The JWS POST resources: a nonce and the Link on every answer.
		{"POST", "/acme/new-account", reached("newAccount")},
		{"POST", "/acme/new-order", reached("newOrder")},
		{"POST", "/acme/revoke-cert", reached("revoke")},
		{"POST", "/acme/key-change", reached("keyChange")},
		{"POST", "/acme/acct/" + id, reached("account")},
		{"POST", "/acme/acct/" + id + "/orders", reached("orders")},
		{"POST", "/acme/order/" + id, reached("order")},
		{"POST", "/acme/order/" + id + "/finalize", reached("finalize")},
		{"POST", "/acme/authz/" + id, reached("authz")},
		{"POST", "/acme/chall/" + id + "/" + id, reached("challenge")},
		{"POST", "/acme/cert/" + id, reached("certificate")},
		{"POST", "/acme/cert/" + id + "/1", reached("certificate")},
		{"POST", "/acme/cert/" + id + "/16", reached("certificate")},
		{"GET", "/acme/new-account", signed405},
		{"HEAD", "/acme/new-order", answer{status: 405, allow: post, nonce: true, link: index, op: "request", detail: "method HEAD not allowed here"}},
		{"DELETE", "/acme/revoke-cert", answer{status: 405, allow: post, nonce: true, link: index, op: "request", detail: "method DELETE not allowed here"}},
		{"GET", "/acme/key-change", signed405},
		{"GET", "/acme/acct/" + id, signed405},
		{"GET", "/acme/acct/" + id + "/orders", signed405},
		{"GET", "/acme/order/" + id, signed405},
		{"GET", "/acme/order/" + id + "/finalize", signed405},
		{"GET", "/acme/authz/" + id, signed405},
		{"GET", "/acme/chall/" + id + "/" + id, signed405},
		{"GET", "/acme/cert/" + id, signed405},
		{"GET", "/acme/cert/" + id + "/2", signed405},
		{"GET", "/acme/nowhere", signed405},
		{"GET", "/acme/acct/short", signed405},

		// Paths of no resource.
		{"POST", "/acme/nowhere", signed404},
		{"POST", "/acme/new-account/", signed404},
		{"POST", "/acme/new-account/x", signed404},
		{"POST", "/acme/acct", signed404},
		{"POST", "/acme/acct/", signed404},
		{"POST", "/acme/acct/short", signed404},
		{"POST", "/acme/acct/" + strings.ToUpper(id), signed404},
		{"POST", "/acme/acct/%61" + id[1:], signed404},
		{"POST", "/acme/acct/" + id + "/", signed404},
		{"POST", "/acme/acct/" + id + "/other", signed404},
		{"POST", "/acme/acct/" + id + "/orders/", signed404},
		{"POST", "/acme/acct//" + id, signed404},
		{"POST", "/acme/acct/x/../" + id, signed404},
		{"POST", "/acme/acct/" + id + "/../" + id, signed404},
		{"POST", "/acme/acct/" + id + "/./orders", signed404},
		{"POST", "/acme/order/" + id + "/finalize/", signed404},
		{"POST", "/acme/order/" + id + "/other", signed404},
		{"POST", "/acme/authz/" + id + "/x", signed404},
		{"POST", "/acme/chall/" + id, signed404},
		{"POST", "/acme/chall/" + id + "/short", signed404},
		{"POST", "/acme/chall/short/" + id, signed404},
		{"POST", "/acme/cert/short", signed404},
		{"POST", "/acme/cert/short/1", signed404},
		{"POST", "/acme/cert/" + id + "/1/x", signed404},
		{"POST", "/acme/new-%6Frder", signed404},

		// A certificate's alternate chains are 1 to 16, written plainly.
		{"POST", "/acme/cert/" + id + "/0", answer{status: 404, nonce: true, link: index, op: "request", detail: noCert}},
		{"POST", "/acme/cert/" + id + "/17", answer{status: 404, nonce: true, link: index, op: "request", detail: noCert}},
		{"POST", "/acme/cert/" + id + "/01", answer{status: 404, nonce: true, link: index, op: "request", detail: noCert}},
		{"POST", "/acme/cert/" + id + "/x", answer{status: 404, nonce: true, link: index, op: "request", detail: noCert}},
		{"POST", "/acme/cert/" + id + "/%31", answer{status: 404, nonce: true, link: index, op: "request", detail: noCert}},
		{"POST", "/acme/cert/" + id + "/", answer{status: 404, nonce: true, link: index, op: "request", detail: noCert}},
	}

	var mu sync.Mutex
	var ops []string
	s := &relay.Server{
		Storage: storage.NewMemory(),
		BaseURL: "https://acme.example/acme",
		OnDecision: func(r record.Audit) {
			mu.Lock()
			ops = append(ops, strings.TrimPrefix(r.Operation, relay.OperationPrefix))
			mu.Unlock()
		},
	}
	t.Cleanup(func() { s.Close() })
	for _, tc := range cases {
		mu.Lock()
		ops = nil
		mu.Unlock()
		var body *strings.Reader
		if tc.method == http.MethodPost {
			body = strings.NewReader("{}")
		} else {
			body = strings.NewReader("")
		}
		req := httptest.NewRequest(tc.method, "https://acme.example"+tc.path, body)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		mu.Lock()
		op := strings.Join(ops, ",")
		mu.Unlock()
		h := w.Result().Header
		got := answer{status: w.Code, allow: h.Get("Allow"), nonce: h.Get("Replay-Nonce") != "", link: strings.Join(h.Values("Link"), ", "), op: op}
		if tc.want.detail != "" {
			got.detail = problemDetail(t, w)
		}
		if got != tc.want {
			t.Errorf("%s %s: got %+v, want %+v", tc.method, tc.path, got, tc.want)
		}
		if cc := h.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("%s %s: Cache-Control %q, want no-store", tc.method, tc.path, cc)
		}
		if ct := h.Get("Content-Type"); w.Code >= 400 && ct != "application/problem+json" {
			t.Errorf("%s %s: %d with Content-Type %q, want a problem document", tc.method, tc.path, w.Code, ct)
		}
	}

	// Without a prefix, the root is no resource either.
	root := &relay.Server{Storage: storage.NewMemory()}
	t.Cleanup(func() { root.Close() })
	for _, tc := range []struct {
		method, path string
		status       int
		nonce        bool
	}{
		{"GET", "/", 404, false},
		{"POST", "/", 404, false},
		{"GET", "/directory", 200, false},
		{"GET", "//directory", 405, true},
		{"GET", "/new-nonce", 204, true},
		{"POST", "//", 404, true},
	} {
		w := httptest.NewRecorder()
		root.ServeHTTP(w, httptest.NewRequest(tc.method, "https://acme.example"+tc.path, strings.NewReader("")))
		if got := (w.Header().Get("Replay-Nonce") != ""); w.Code != tc.status || got != tc.nonce {
			t.Errorf("no prefix: %s %s: %d, nonce %v; want %d, nonce %v", tc.method, tc.path, w.Code, got, tc.status, tc.nonce)
		}
	}

	// When no nonce can be made, a JWS POST resource answers the
	// storage's failure before it looks at the method, without the
	// Link; the other resources answer their 405 as before.
	broken := &relay.Server{Storage: loadFails{storage.NewMemory()}, SharedNonces: true}
	t.Cleanup(func() { broken.Close() })
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/new-nonce", 500, ""},
		{"POST", "/new-nonce", 405, getHd},
		{"GET", "/new-order", 500, ""},
		{"POST", "/new-order", 500, ""},
		{"GET", "/nowhere", 500, ""},
		{"GET", "/directory", 200, ""},
		{"POST", "/directory", 405, getHd},
		{"POST", "/renewal-info/aaaa.bbbb", 405, getHd},
	} {
		w := httptest.NewRecorder()
		broken.ServeHTTP(w, httptest.NewRequest(tc.method, "https://acme.example"+tc.path, strings.NewReader("")))
		h := w.Header()
		if w.Code != tc.status || h.Get("Allow") != tc.allow || h.Get("Replay-Nonce") != "" || h.Get("Link") != "" {
			t.Errorf("no nonces: %s %s: %d, Allow %q, nonce %q, Link %q; want %d, Allow %q, no nonce, no Link", tc.method, tc.path, w.Code, h.Get("Allow"), h.Get("Replay-Nonce"), h.Get("Link"), tc.status, tc.allow)
		}
	}
}

// loadFails is a storage whose every Load fails.
type loadFails struct{ storage.Storage }

func (loadFails) Load(context.Context, string) ([]byte, error) {
	return nil, errors.New("disk on fire")
}

// problemDetail returns the detail of the problem document w answered.
func problemDetail(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var p struct {
		Type   string `json:"type"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		return "not a problem: " + w.Body.String()
	}
	if p.Type != "urn:ietf:params:acme:error:malformed" {
		return p.Type + ": " + p.Detail
	}
	return p.Detail
}
