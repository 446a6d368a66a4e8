// Package revocation tells whether a certificate was revoked, from the
// certificate revocation lists (CRLs, RFC 5280) its CRLDistributionPoints
// name — what Let's Encrypt publishes now that it no longer runs OCSP.
//
// # Getting started
//
//	c := &revocation.Checker{}
//	st, err := c.Check(ctx, leaf, issuer)
//	if err == nil && st.Revoked {
//		log.Printf("%s revoked at %s (reason %d)", st.Serial, st.RevokedAt, st.Reason)
//	}
//
// # Cost
//
// Each CRL is fetched at most once per [Checker.CacheFor] (an hour by
// default) however many certificates are checked against it and however
// many checks run at once: concurrent checks of one CRL wait for one
// fetch. A CRL that could not be fetched is not asked for again within
// [Checker.RetryAfter] (five minutes by default). Responses are read up
// to [Checker.MaxSize] bytes, redirects are not followed, and only http
// and https URLs are fetched.
//
// # Trust
//
// A CRL counts only when its signature verifies with the issuer's key
// and the issuer's name matches its own: a forged list can neither revoke
// nor clear a certificate.
//
// # Concurrency
//
// A Checker is safe for concurrent use; set its fields before the first
// Check and do not change them afterwards.
//
// # Testing
//
// The tests serve CRLs made with [crypto/x509.CreateRevocationList] from
// a local HTTP server and count its fetches; the clock is Checker.Now.
package revocation
