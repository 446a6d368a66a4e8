package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/tlsmint/tlsmint/migrate"
	"github.com/tlsmint/tlsmint/storage"
)

func (a *app) importCommand() *cobra.Command {
	var replace bool
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Import the certificates of autocert or certmagic into a tlsmint storage",
		Long: `import reads the certificates another Go ACME library keeps and writes them into
a tlsmint storage (--storage), so that an autotls Manager over that storage
serves them at once and renews them when due — nothing is re-ordered. Account
keys and challenge tokens are not imported (the Manager registers its own
account); expired certificates are skipped. The report lists what was imported
and what was skipped, and why. A certificate that could not be stored (the
storage failed) is listed as FAILED and makes the command exit 1, with a
one-line summary on stderr. The source folder is only read.`,
		Example: `  tlsmint import autocert /var/cache/autocert --storage /var/lib/tlsmint
  tlsmint import certmagic ~/.local/share/certmagic --storage postgres://tlsmint@db/tlsmint --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	sub := func(use, short, long, example string, fn func(context.Context, string, storage.Storage, migrate.Options) (*migrate.Report, error)) *cobra.Command {
		c := &cobra.Command{
			Use: use + " DIR", Short: short, Long: long, Example: example,
			Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				opts := migrate.Options{Replace: replace}
				if flagSet(cmd, "ca") {
					d, err := a.directory()
					if err != nil {
						return err
					}
					opts.Directory = d
				}
				store, closeStore, err := a.openStorage(cmd.Context())
				if err != nil {
					return err
				}
				defer closeStore()
				rep, err := fn(cmd.Context(), args[0], store, opts)
				if errors.Is(err, migrate.ErrSource) {
					return usagef("%v", err)
				}
				if err != nil {
					return err
				}
				for _, it := range rep.Imported {
					a.wrote(it.Name + " in the storage")
				}
				if err := a.printReport(rep); err != nil {
					return err
				}
				if n := len(rep.Failed); n > 0 {
					first := rep.Failed[0]
					return fmt.Errorf("%d of %d certificates could not be stored (%s: %s) (the source folder is unchanged: fix the storage and run the import again)",
						n, n+len(rep.Imported), dash(first.Name), first.Reason)
				}
				return nil
			},
		}
		return c
	}
	cmd.AddCommand(
		sub("autocert", "Import an autocert DirCache folder",
			`import autocert reads a golang.org/x/crypto/acme/autocert DirCache folder: one
file per certificate, named after its domain ("+rsa" for RSA ones), holding the
key and the chain. autocert does not record its CA, so the certificates are
filed under --ca when given, else Let's Encrypt production (autocert's default).`,
			`  tlsmint import autocert /var/cache/autocert --storage /var/lib/tlsmint
  tlsmint --ca letsencrypt-staging import autocert ./certs --storage /var/lib/tlsmint --json`,
			migrate.Autocert),
		sub("certmagic", "Import a certmagic (Caddy) file storage folder",
			`import certmagic reads a github.com/caddyserver/certmagic file storage folder (the
one holding "certificates", ~/.local/share/certmagic by default, Caddy's data
folder): certificates/<issuer>/<site>/<site>.crt, .key and .json. Each site is
filed under the CA its metadata names, else the well-known CA its issuer folder
is named after, else --ca.`,
			`  tlsmint import certmagic ~/.local/share/certmagic --storage /var/lib/tlsmint
  tlsmint import certmagic /var/lib/caddy/.local/share/caddy --storage postgres://tlsmint@db/tlsmint`,
			migrate.Certmagic),
	)
	cmd.PersistentFlags().BoolVar(&replace, "replace", false, "overwrite stored certificates that expire later than the imported ones")
	return cmd
}

func (a *app) printReport(rep *migrate.Report) error {
	if a.jsonOut {
		return a.printJSON(rep)
	}
	w := a.stateTable("RESULT")
	fmt.Fprintln(w, "RESULT\tNAME\tEXPIRES\tSOURCE\tREASON")
	for _, it := range rep.Imported {
		fmt.Fprintf(w, "imported\t%s\t%s\t%s\t-\n", it.Name, fmtTime(it.NotAfter), it.Source)
	}
	for _, it := range rep.Skipped {
		fmt.Fprintf(w, "skipped\t%s\t%s\t%s\t%s\n", dash(it.Name), fmtTime(it.NotAfter), it.Source, it.Reason)
	}
	for _, it := range rep.Failed {
		fmt.Fprintf(w, "FAILED\t%s\t%s\t%s\t%s\n", dash(it.Name), fmtTime(it.NotAfter), it.Source, it.Reason)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "%d imported, %d skipped, %d failed\n", len(rep.Imported), len(rep.Skipped), len(rep.Failed))
	return nil
}
