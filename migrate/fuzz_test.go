package migrate

import "testing"

// FuzzParsePEM feeds arbitrary cache files to the parser: it must return
// a key and certificates or an error, never panic.
func FuzzParsePEM(f *testing.F) {
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\n\n-----END RSA PRIVATE KEY-----\n-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		key, chainPEM, chain, err := parsePEM(b)
		if err == nil && len(chain) > 0 && len(chainPEM) == 0 {
			t.Fatalf("certificates without their PEM")
		}
		_ = key
	})
}
