package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tlsmint/tlsmint/audit"
	"github.com/tlsmint/tlsmint/internal/durfmt"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/statuspage"
)

// parseDays parses a duration that may be given in days: "14d", "36h",
// "1d12h", "90m", and as the output prints one, "90d 3h".
func parseDays(s string) (time.Duration, error) {
	var total time.Duration
	rest := strings.ReplaceAll(s, " ", "")
	if i := strings.Index(rest, "d"); i > 0 {
		n, err := strconv.Atoi(rest[:i])
		if err != nil || n < 0 || n > 100000 {
			return 0, fmt.Errorf("invalid duration %q: want for example 14d, 36h or 1d12h", s)
		}
		total = time.Duration(n) * 24 * time.Hour
		rest = rest[i+1:]
	}
	if rest != "" {
		d, err := time.ParseDuration(rest)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("invalid duration %q: want for example 14d, 36h or 1d12h", s)
		}
		total += d
		if total < 0 {
			return 0, fmt.Errorf("invalid duration %q: too long", s)
		}
	}
	return total, nil
}

// auditRecordJSON is an audit record as audit --json prints it: with its
// latency in milliseconds beside the record's nanoseconds.
type auditRecordJSON struct {
	record.Audit
	LatencyMS int64 `json:"latency_ms,omitempty"`
}

func (a *app) auditCommand() *cobra.Command {
	var f record.AuditFilter
	var since string
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show the audit trail of a storage: ACME exchanges and decisions",
		Long: `audit reads the audit trail that autotls Managers (with package audit) and
tlsmint obtain --storage keep in a storage: every exchange with a CA (operation,
status, the CA's problem, latency) and every decision (obtained, renewed,
failed, rate limited, …), of every node, oldest first. No request or response
body, key or secret is ever in it.`,
		Example: `  tlsmint audit --storage /var/lib/tlsmint
  tlsmint audit --storage /var/lib/tlsmint --name example.com --since 24h
  tlsmint audit --storage postgres://tlsmint@db/tlsmint --outcome failure --since 7d --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := parseDays(since)
			if err != nil {
				return usagef("--since: %v", err)
			}
			if f.Outcome != "" && f.Outcome != record.OutcomeOK && f.Outcome != record.OutcomeFailure && f.Outcome != record.OutcomeRefused {
				return usagef("--outcome %q: want ok, failure or refused", f.Outcome)
			}
			if f.Kind != "" && f.Kind != record.KindExchange && f.Kind != record.KindDecision {
				return usagef("--kind %q: want exchange or decision", f.Kind)
			}
			if f.Name != "" {
				_, norm, err := identifiers([]string{f.Name})
				if err != nil {
					return err
				}
				f.Name = norm[0]
			}
			log, closeLog, err := a.openAuditLog(cmd.Context())
			if err != nil {
				return err
			}
			defer closeLog()
			if d > 0 {
				f.Since = time.Now().Add(-d)
			}
			recs, err := log.Query(cmd.Context(), f)
			if err != nil {
				return err
			}
			if a.jsonOut {
				out := make([]auditRecordJSON, len(recs))
				for i, r := range recs {
					out[i] = auditRecordJSON{Audit: r, LatencyMS: r.Latency.Milliseconds()}
				}
				return a.printJSON(out)
			}
			w := a.stateTable("OUTCOME")
			fmt.Fprintln(w, "TIME\tNODE\tKIND\tOPERATION\tNAMES\tOUTCOME\tSTATUS\tDETAIL")
			for _, r := range recs {
				status := "-"
				if r.Status != 0 {
					status = strconv.Itoa(r.Status)
				}
				detail := r.Problem
				if r.Detail != "" {
					detail = strings.TrimSpace(detail + " " + r.Detail)
				}
				if r.RetryAfter > 0 {
					detail = strings.TrimSpace(detail + " retry after " + durfmt.Format(r.RetryAfter))
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Time.UTC().Format("2006-01-02 15:04:05"), termSafe(r.Node), termSafe(r.Kind), termSafe(r.Operation), dash(termSafe(strings.Join(r.Names, ","))), termSafe(r.Outcome), status, dash(clip(termSafe(detail), 80)))
			}
			return w.Flush()
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.Name, "name", "", "only records about this name")
	fl.StringVar(&since, "since", "24h", "only records this recent: 24h, 7d, … (0 for all)")
	fl.StringVar(&f.Issuer, "issuer", "", "only records of this CA directory URL")
	fl.StringVar(&f.Outcome, "outcome", "", "only records with this outcome: ok, failure, refused")
	fl.StringVar(&f.Kind, "kind", "", "only exchanges or decisions: exchange, decision")
	fl.IntVar(&f.Limit, "limit", 1000, "at most this many records, the newest")
	return cmd
}

func (a *app) rateLimitsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "ratelimits",
		Short: "Show how close each account and domain is to the CA's rate limits",
		Long: `ratelimits counts, from the audit trail of a storage, the new orders per account
and the certificates per registered domain within the CA's windows, against
Let's Encrypt's published limits, the closest to its limit first — the
rate-limit picture of the status page.`,
		Example: `  tlsmint ratelimits --storage /var/lib/tlsmint
  tlsmint ratelimits --storage postgres://tlsmint@db/tlsmint --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, closeLog, err := a.openAuditLog(cmd.Context())
			if err != nil {
				return err
			}
			defer closeLog()
			usage, err := log.RateLimits(cmd.Context(), time.Now(), nil)
			if err != nil {
				return err
			}
			out := make([]statuspage.RateLimit, 0, len(usage))
			for _, u := range usage {
				out = append(out, statuspage.RateLimit{
					Issuer: u.Issuer, Kind: u.Kind, Key: u.Key, Count: u.Count, Limit: u.Limit,
					WindowSeconds: int64(u.Window / time.Second), Frees: u.Frees, Near: u.Near(),
				})
			}
			if a.jsonOut {
				return a.printJSON(out)
			}
			w := a.table()
			fmt.Fprintln(w, "ISSUER\tLIMIT\tFOR\tUSED\tWINDOW\tFREES\tNEAR")
			for _, r := range out {
				near := ""
				if r.Near {
					near = "near"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", termSafe(issuerHost(r.Issuer)), r.Kind, termSafe(r.Key), r.Count, r.Limit, durfmt.Format(time.Duration(r.WindowSeconds)*time.Second), fmtTime(r.Frees), near)
			}
			return w.Flush()
		},
	}
}

// openAuditLog opens the storage and the audit trail in it for reading, as
// this command's node and with a negative Retention (a reader never
// deletes a batch); the returned func closes both, the trail first.
func (a *app) openAuditLog(ctx context.Context) (*audit.Log, func(), error) {
	store, closeStore, err := a.openStorage(ctx)
	if err != nil {
		return nil, nil, err
	}
	log := &audit.Log{Storage: store, Node: cliNode(), Retention: -1}
	return log, func() {
		log.Close()
		closeStore()
	}, nil
}
