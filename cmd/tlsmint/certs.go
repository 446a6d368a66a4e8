package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/durfmt"
	"github.com/tlsmint/tlsmint/internal/textclip"
	"github.com/tlsmint/tlsmint/statuspage"
)

func (a *app) certsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "List or show the certificates a tlsmint storage holds",
		Long: `certs reads a tlsmint storage (--storage DIR or --storage postgres://…), the one
autotls Managers share, and shows every certificate as the status page does:
state, expiry and days left, next renewal and why, the CA's ARI window, issuer
and last error (the failed renewal a Manager recorded with the certificate in
the storage). Every CA found in the storage is listed, or only --ca's when
--ca is given.`,
		Example: `  tlsmint certs list --storage /var/lib/tlsmint
  tlsmint certs list --storage postgres://tlsmint@db.internal/tlsmint --json
  tlsmint certs show example.com --storage /var/lib/tlsmint`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List every stored certificate, the soonest expiry first",
		Example: `  tlsmint certs list --storage /var/lib/tlsmint
  TLSMINT_STORAGE=/var/lib/tlsmint tlsmint certs list --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := a.storedStatus(cmd)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(st)
			}
			w := a.stateTable("STATE")
			fmt.Fprintln(w, "NAME\tSTATE\tEXPIRES\tLEFT\tRENEW AT\tWHY\tISSUER\tLAST ERROR")
			for _, c := range st.Certificates {
				days := "-"
				if !c.NotAfter.IsZero() {
					days = durfmt.Format(c.NotAfter.Sub(st.Now))
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", termSafe(c.Name), c.State, fmtTime(c.NotAfter), days, fmtTime(c.RenewAt), dash(termSafe(c.RenewReason)), termSafe(issuerHost(c.Issuer)), dash(clip(termSafe(c.LastError), 60)))
			}
			if err := w.Flush(); err != nil {
				return err
			}
			for _, e := range st.Errors {
				fmt.Fprintf(a.stderr, "warning: %s\n", termSafe(e))
			}
			return nil
		},
	}
	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Show one stored certificate in full",
		Example: `  tlsmint certs show example.com --storage /var/lib/tlsmint
  tlsmint certs show '*.example.com' --storage /var/lib/tlsmint --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, norm, err := identifiers(args)
			if err != nil {
				return err
			}
			st, err := a.storedStatus(cmd)
			if err != nil {
				return err
			}
			i := slices.IndexFunc(st.Certificates, func(c statuspage.Certificate) bool { return c.Name == norm[0] })
			if i < 0 {
				return fmt.Errorf("no certificate for %s in %s: see tlsmint certs list", norm[0], a.storageURL)
			}
			c := st.Certificates[i]
			if a.jsonOut {
				return a.printJSON(c)
			}
			w := a.table()
			row := func(k, v string) { fmt.Fprintf(w, "%s:\t%s\n", k, termSafe(v)) }
			row("name", c.Name)
			row("state", string(c.State))
			row("names", dash(strings.Join(c.Names, ", ")))
			row("issuer", c.Issuer)
			row("serial", dash(c.Serial))
			row("valid", fmtTime(c.NotBefore)+" to "+fmtTime(c.NotAfter))
			if !c.NotAfter.IsZero() {
				row("expires", leftText(c.NotAfter.Sub(st.Now)))
			}
			row("renew at", fmtTime(c.RenewAt)+" ("+dash(c.RenewReason)+")")
			if !c.ARIWindowStart.IsZero() {
				row("ARI window", fmtTime(c.ARIWindowStart)+" to "+fmtTime(c.ARIWindowEnd))
				row("next ARI poll", fmtTime(c.NextARIPoll))
			}
			if c.ARIExplanationURL != "" {
				row("ARI explanation", c.ARIExplanationURL)
			}
			if c.LastError != "" {
				row("last error", c.LastError+" (at "+fmtTime(c.LastErrorAt)+")")
			}
			if !c.BackoffUntil.IsZero() {
				row("back-off until", fmtTime(c.BackoffUntil))
			}
			row("stored", strconv.FormatBool(c.Stored))
			return w.Flush()
		},
	}
	cmd.AddCommand(list, show)
	return cmd
}

// storedStatus reads the storage's certificates through a Manager for
// every CA in it, as the status page shows them.
func (a *app) storedStatus(cmd *cobra.Command) (*statuspage.Status, error) {
	ctx := cmd.Context()
	store, closeStore, err := a.openStorage(ctx)
	if err != nil {
		return nil, err
	}
	defer closeStore()
	dirs, err := autotls.StoredIssuers(ctx, store)
	if err != nil {
		return nil, err
	}
	if flagSet(cmd, "ca") {
		want, err := a.directory()
		if err != nil {
			return nil, err
		}
		dirs = slices.DeleteFunc(dirs, func(d string) bool { return d != want })
	}
	if len(dirs) == 0 {
		return &statuspage.Status{Title: statuspage.DefaultTitle, Now: time.Now(), Certificates: []statuspage.Certificate{}, Counts: map[statuspage.State]int{}}, nil
	}
	m := &autotls.Manager{Storage: store}
	for _, d := range dirs {
		m.Issuers = append(m.Issuers, autotls.Issuer{DirectoryURL: d})
	}
	defer m.Close()
	h := &statuspage.Handler{Manager: m}
	return h.Status(ctx), nil
}

// issuerHost shortens a directory URL to its host for tables.
func issuerHost(directory string) string {
	rest, ok := strings.CutPrefix(directory, "https://")
	if !ok {
		return directory
	}
	host, _, _ := strings.Cut(rest, "/")
	return host
}

// clip cuts s to n bytes at a character boundary.
func clip(s string, n int) string {
	return textclip.Ellipsis(s, n)
}
