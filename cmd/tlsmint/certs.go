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
	var (
		limit int
		state string
		after string
	)
	list := &cobra.Command{
		Use:   "list",
		Short: "List the stored certificates, the soonest expiry first",
		Long: `list shows the stored certificates, the soonest expiry first (names without a
certificate before all, then by name), every one or --limit of them, in one
--state only if given. It reads the schedule index the Managers keep in the
storage, which lists every certificate without loading it, and loads only the
certificates it prints (and the stored ones the index does not know yet). With
--limit, the JSON's "next" (and a last line on stderr) is the cursor that
--after takes to go on.`,
		Example: `  tlsmint certs list --storage /var/lib/tlsmint
  tlsmint certs list --storage /var/lib/tlsmint --state failing
  tlsmint certs list --storage /var/lib/tlsmint --limit 50 --after 1767225600.example.com
  TLSMINT_STORAGE=/var/lib/tlsmint tlsmint certs list --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := statuspage.Query{State: statuspage.State(state), After: after}
			switch q.State {
			case "", statuspage.StateRevoked, statuspage.StateExpired, statuspage.StateFailing, statuspage.StateExpiring, statuspage.StatePending, statuspage.StateOK:
			default:
				return usagef("--state %q: want failing, expiring, ok, expired, pending or revoked", state)
			}
			if limit < 0 {
				return usagef("--limit %d: want a positive number, or 0 for every certificate", limit)
			}
			st, err := a.storedStatus(cmd, q, limit)
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
			if st.Next != "" {
				fmt.Fprintf(a.stderr, "%d of %d listed; the next: --after %s\n", len(st.Certificates), st.Total, termSafe(st.Next))
			}
			return nil
		},
	}
	lf := list.Flags()
	lf.IntVar(&limit, "limit", 0, "at most this many certificates (0: every one)")
	lf.StringVar(&state, "state", "", "only certificates in this state: failing, expiring, ok, expired, pending, revoked")
	lf.StringVar(&after, "after", "", "start after this cursor (the \"next\" of a listing cut by --limit)")
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
			c, ok, err := a.storedCertificate(cmd, norm[0])
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("no certificate for %s in %s: see tlsmint certs list", norm[0], a.storageURL)
			}
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
				row("expires", leftText(time.Until(c.NotAfter)))
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

// storedManager opens the storage and returns a Manager for every CA in
// it (or --ca's), which only reads; nil when there is none. The CAs come
// from the schedule index, or, when it names none, from the stored
// certificates (one List of all of them).
func (a *app) storedManager(cmd *cobra.Command) (*autotls.Manager, func(), error) {
	ctx := cmd.Context()
	store, closeStore, err := a.openStorage(ctx)
	if err != nil {
		return nil, nil, err
	}
	dirs, err := autotls.IndexedIssuers(ctx, store)
	if err == nil && len(dirs) == 0 {
		dirs, err = autotls.StoredIssuers(ctx, store)
	}
	if err != nil {
		closeStore()
		return nil, nil, err
	}
	if flagSet(cmd, "ca") {
		want, err := a.directory()
		if err != nil {
			closeStore()
			return nil, nil, err
		}
		dirs = slices.DeleteFunc(dirs, func(d string) bool { return d != want })
	}
	if len(dirs) == 0 {
		return nil, closeStore, nil
	}
	m := &autotls.Manager{Storage: store}
	for _, d := range dirs {
		m.Issuers = append(m.Issuers, autotls.Issuer{DirectoryURL: d})
	}
	return m, func() { m.Close(); closeStore() }, nil
}

// storedStatus reads the storage's certificates as the status page shows
// them: those of q, at most limit (0: every one), through pages of
// statuspage.MaxLimit.
func (a *app) storedStatus(cmd *cobra.Command, q statuspage.Query, limit int) (*statuspage.Status, error) {
	m, done, err := a.storedManager(cmd)
	if err != nil {
		return nil, err
	}
	defer done()
	if m == nil {
		return &statuspage.Status{Title: statuspage.DefaultTitle, Now: time.Now(), Certificates: []statuspage.Certificate{}, Counts: map[statuspage.State]int{}, Filter: q.State}, nil
	}
	h := &statuspage.Handler{Manager: m}
	var all *statuspage.Status
	for {
		q.Limit = statuspage.MaxLimit
		if limit > 0 {
			q.Limit = min(limit-len(certsOf(all)), statuspage.MaxLimit)
		}
		st, err := h.Query(cmd.Context(), q)
		if err != nil {
			return nil, usagef("%v", err)
		}
		if all == nil {
			all = st
		} else {
			all.Certificates = append(all.Certificates, st.Certificates...)
			all.Next = st.Next
		}
		if st.Next == "" || (limit > 0 && len(all.Certificates) >= limit) {
			break
		}
		q.After = st.Next
	}
	all.Attention = nil // the listing holds them
	return all, nil
}

func certsOf(st *statuspage.Status) []statuspage.Certificate {
	if st == nil {
		return nil
	}
	return st.Certificates
}

// storedCertificate reads one stored certificate as the status page shows
// it; ok is false when the storage has none for name.
func (a *app) storedCertificate(cmd *cobra.Command, name string) (statuspage.Certificate, bool, error) {
	m, done, err := a.storedManager(cmd)
	if err != nil || m == nil {
		return statuspage.Certificate{}, false, err
	}
	defer done()
	infos, err := m.CertificatesOf(cmd.Context(), name)
	if len(infos) == 0 {
		return statuspage.Certificate{}, false, err
	}
	return statuspage.CertificateOf(infos[0], time.Now()), true, nil
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

// clip cuts s to n bytes at a character boundary, marking a cut with
// "…" (textclip.Ellipsis), for a message or a table cell.
func clip(s string, n int) string {
	return textclip.Ellipsis(s, n)
}
