package migrate_test

import (
	"context"
	"log"
	"net/http"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/migrate"
	"github.com/tlsmint/tlsmint/storage"
)

// Move from autocert to autotls without re-ordering: import the DirCache,
// then serve from the same storage.
func ExampleAutocert() {
	ctx := context.Background()
	store := storage.Dir("/var/lib/tlsmint")
	rep, err := migrate.Autocert(ctx, "/var/cache/autocert", store, migrate.Options{})
	if err != nil {
		log.Fatal(err)
	}
	for _, it := range rep.Imported {
		log.Printf("imported %s (until %s)", it.Name, it.NotAfter)
	}
	for _, it := range rep.Skipped {
		log.Printf("skipped %s: %s", it.Source, it.Reason)
	}
	m := &autotls.Manager{Storage: store, Hosts: autotls.HostWhitelist("example.com"), AcceptTOS: true}
	defer m.Close()
	ln, err := m.Listen("tcp", ":443")
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.Serve(ln, nil))
}

// Move from Caddy or certmagic to autotls: import certmagic's storage
// folder, then keep every imported name managed — renewed in the
// background from the same storage, none ordered again now.
func ExampleCertmagic() {
	ctx := context.Background()
	store := storage.Dir("/var/lib/tlsmint")
	rep, err := migrate.Certmagic(ctx, "/var/lib/caddy/.local/share/caddy", store, migrate.Options{})
	if err != nil {
		log.Fatal(err)
	}
	var names []string
	for _, it := range rep.Imported {
		names = append(names, it.Name)
	}
	for _, it := range rep.Skipped {
		log.Printf("skipped %s: %s", it.Source, it.Reason)
	}
	m := &autotls.Manager{Storage: store, AcceptTOS: true}
	defer m.Close()
	if err := m.Manage(ctx, names...); err != nil {
		log.Fatal(err)
	}
	ln, err := m.Listen("tcp", ":443")
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.Serve(ln, nil))
}
