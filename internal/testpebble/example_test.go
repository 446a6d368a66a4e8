package testpebble_test

import (
	"fmt"
	"net/http"

	"github.com/tlsmint/tlsmint/internal/testpebble"
)

// A CA for one test: its HTTP client trusts its HTTPS server, its DNS server
// answers the validation authority, and its counters show the traffic.
func Example() {
	ca, err := testpebble.New(testpebble.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ca.Close()

	// dns-01 records go to the CA's own DNS server.
	ca.DNS().AddTXT("_acme-challenge.example.test", "digest")

	req, err := http.NewRequest(http.MethodGet, ca.DirectoryURL(), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	req.Header.Set("User-Agent", "example") // Pebble refuses requests without one
	resp, err := ca.HTTPClient().Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()

	fmt.Println(resp.Status, ca.Requests("directory"), len(ca.Roots()))
	// Output: 200 OK 1 1
}
