package solvers_test

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/solvers"
)

// discardWriter is a ResponseWriter that keeps nothing, so that benchmarks
// measure the handler rather than a recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// BenchmarkHTTP01 compares an application handler alone with the same
// handler behind HTTP01.Middleware, for ordinary requests and challenges.
func BenchmarkHTTP01(b *testing.B) {
	h := &solvers.HTTP01{}
	chal := httpChallenge(acme.IdentifierDNS, "example.com")
	if err := h.Present(b.Context(), chal); err != nil {
		b.Fatal(err)
	}
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	wrapped := h.Middleware(app)
	page := httptest.NewRequest(http.MethodGet, "http://example.com/index.html", nil)
	challenge := httptest.NewRequest(http.MethodGet, "http://example.com"+chal.HTTP01ResourcePath(), nil)
	unknown := httptest.NewRequest(http.MethodGet, "http://example.com"+solvers.HTTP01PathPrefix+"AAAAAAAAAAAAAAAAAAAAAAAA", nil)
	tests := []struct {
		name    string
		handler http.Handler
		req     *http.Request
	}{
		{"page/app alone", app, page},
		{"page/through middleware", wrapped, page},
		{"challenge/middleware", wrapped, challenge},
		{"unknown token/middleware", wrapped, unknown},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			w := &discardWriter{h: make(http.Header)}
			b.ReportAllocs()
			for b.Loop() {
				tt.handler.ServeHTTP(w, tt.req)
			}
		})
	}
}

// BenchmarkHTTP01RoundTrip measures whole HTTP/1.1 requests over loopback
// to an application alone and behind HTTP01.Middleware: the middleware's
// cost on ordinary requests is below the noise of a real request.
func BenchmarkHTTP01RoundTrip(b *testing.B) {
	h := &solvers.HTTP01{}
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	for _, tt := range []struct {
		name    string
		handler http.Handler
	}{
		{"app alone", app},
		{"through middleware", h.Middleware(app)},
	} {
		b.Run(tt.name, func(b *testing.B) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			client := srv.Client()
			b.ReportAllocs()
			for b.Loop() {
				resp, err := client.Get(srv.URL + "/index.html")
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
			}
		})
	}
}

// BenchmarkTLSALPN01 compares a GetCertificate hook alone with the same hook
// wrapped by TLSALPN01.Wrap, for ordinary hellos and challenge hellos.
func BenchmarkTLSALPN01(b *testing.B) {
	s := &solvers.TLSALPN01{}
	if err := s.Present(b.Context(), alpnChallenge(dnsID("example.com"))); err != nil {
		b.Fatal(err)
	}
	app := &tls.Certificate{}
	next := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return app, nil }
	wrapped := s.Wrap(next)
	h2 := &tls.ClientHelloInfo{ServerName: "example.com", SupportedProtos: []string{"h2", "http/1.1"}}
	chal := &tls.ClientHelloInfo{ServerName: "example.com", SupportedProtos: []string{acme.ALPNProto}}
	tests := []struct {
		name  string
		hook  func(*tls.ClientHelloInfo) (*tls.Certificate, error)
		hello *tls.ClientHelloInfo
	}{
		{"h2 hello/hook alone", next, h2},
		{"h2 hello/wrapped", wrapped, h2},
		{"challenge hello/wrapped", wrapped, chal},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tt.hook(tt.hello); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
