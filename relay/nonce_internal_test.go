package relay

import "testing"

func TestNoncesBounded(t *testing.T) {
	n := newNonces(4)
	first := n.issue()
	var rest []string
	for range 4 {
		rest = append(rest, n.issue())
	}
	if got := n.len(); got != 4 {
		t.Fatalf("%d live nonces, want the bound 4", got)
	}
	if n.redeem(first) {
		t.Fatal("the oldest nonce survived past the bound")
	}
	for _, v := range rest {
		if len(v) != nonceLen {
			t.Fatalf("nonce %q has length %d, want %d", v, len(v), nonceLen)
		}
		if !n.redeem(v) {
			t.Fatalf("nonce %q not accepted", v)
		}
		if n.redeem(v) {
			t.Fatalf("nonce %q accepted twice", v)
		}
	}
	for _, bad := range []string{"", "x", first + "x", "AAAAAAAAAAAAAAAAAAAAAA"} {
		if n.redeem(bad) {
			t.Fatalf("redeem(%q) = true", bad)
		}
	}
	// Redeemed slots are reused without harm.
	for range 10 {
		if v := n.issue(); !n.redeem(v) {
			t.Fatal("fresh nonce refused")
		}
	}
}
