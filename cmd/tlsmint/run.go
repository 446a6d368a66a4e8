package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/tlsmint/tlsmint/internal/textclip"
)

// Exit codes, as documented in the package doc and docs/cli.md.
const (
	exitOK      = 0
	exitFailure = 1 // the operation failed
	exitUsage   = 2 // the command line is wrong
	exitProblem = 3 // check found a problem

	exitInterrupted = 130 // SIGINT or SIGTERM stopped the command (128 + SIGINT, as shells report it)
)

// exitError carries the exit code of a failure.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usagef is an error in the command line: exit code 2.
func usagef(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// errProblem reports that check found problems (already printed).
var errProblem = &exitError{code: exitProblem, err: errors.New("problems found")}

// run is the whole command: it parses args, runs the command and returns
// the exit code. Output goes to stdout, messages (progress, -v, errors)
// to stderr.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return runEnv(ctx, args, stdin, stdout, stderr, os.Getenv)
}

// runEnv is run with the environment read through getenv.
func runEnv(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	// The progress of a request in flight is written from timers'
	// goroutines: every message goes through one lock, and none is written
	// once the run has returned.
	errw := &syncWriter{w: stderr}
	defer errw.close()
	stderr = errw
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if cmd != nil {
		a.cmdPath = subcommandPath(cmd)
	}
	if err == nil {
		return exitOK
	}
	if err == errProblem {
		return exitProblem
	}
	if ctx.Err() != nil {
		// Ctrl-C: what the command was doing when it stopped matters less
		// than what it left behind.
		fmt.Fprintf(stderr, "tlsmint: interrupted; %s\n", a.writtenSummary())
		return exitInterrupted
	}
	code := exitFailure
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		code = ee.code
	case isCobraUsage(err):
		code = exitUsage
	}
	msg := err.Error()
	if code == exitUsage {
		// One line: cobra adds suggestions on lines of their own.
		msg, _, _ = strings.Cut(msg, "\n")
		if !strings.Contains(msg, "--help") {
			msg += "; see " + strings.TrimSpace("tlsmint "+a.cmdPath) + " --help"
		}
	}
	fmt.Fprintf(stderr, "tlsmint: %s\n", msg)
	return code
}

// wrote records a file or storage entry the command has written, for the
// message of an interrupted run.
func (a *app) wrote(what string) { a.written = append(a.written, what) }

// writtenSummary says what the run wrote before it stopped.
func (a *app) writtenSummary() string {
	if len(a.written) == 0 {
		return "nothing was written"
	}
	return "written before it stopped: " + strings.Join(a.written, ", ")
}

// isCobraUsage reports errors cobra makes for a wrong command line, which
// it does not type.
func isCobraUsage(err error) bool {
	s := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "required flag", "invalid argument", "accepts ", "requires at least", "flag needs an argument", "if any flags in the group"} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

// app holds the streams and the global options of one run; nothing is
// global, so tests run commands in parallel.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	cmdPath        string   // of the command being run, for messages
	written        []string // files and storage entries written, for an interrupted run's message

	// global flags
	ca, caRoots, storageURL, accountKey string
	jsonOut, verbose, progress          bool
	requestTimeout                      time.Duration
	color                               string

	prog *progress // the run's progress (newProgress)
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "tlsmint",
		Short: "An ACME client: accounts, certificates, storage, audit, checks and migrations",
		Long: `tlsmint obtains, renews and revokes certificates from an ACME CA (Let's
Encrypt, ZeroSSL, Google Trust Services, a private step-ca, …), shows what a
tlsmint storage holds and what its audit trail recorded, checks what a server
serves, and imports autocert and certmagic certificates into a storage.

Flags can be set from the environment: TLSMINT_CA, TLSMINT_CA_ROOTS,
TLSMINT_STORAGE, TLSMINT_ACCOUNT_KEY, TLSMINT_EMAIL, TLSMINT_EAB_KID,
TLSMINT_EAB_HMAC (the MAC key itself), TLSMINT_EAB_HMAC_FILE, TLSMINT_KEY_TYPE,
TLSMINT_PROFILE, TLSMINT_PREFERRED_CHAIN, TLSMINT_HTTP, TLSMINT_TLS_ALPN.
A flag on the command line wins over the environment.

Exit codes: 0 success; 1 the operation failed; 2 the command line is wrong;
3 check found a problem; 130 interrupted (SIGINT or SIGTERM).`,
		Example: `  tlsmint account register --email ops@example.com --accept-tos
  tlsmint obtain example.com --http :80
  tlsmint certs list --storage /var/lib/tlsmint
  tlsmint check example.com --warn 14d`,
		Version:       version(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			a.cmdPath = subcommandPath(cmd)
			if err := a.applyEnv(cmd); err != nil {
				return err
			}
			return a.checkGlobalFlags()
		},
	}
	root.SetVersionTemplate("tlsmint {{.Version}}\n")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		a.cmdPath = subcommandPath(cmd)
		return &exitError{code: exitUsage, err: err}
	})
	pf := root.PersistentFlags()
	pf.StringVar(&a.ca, "ca", "letsencrypt", "ACME CA: letsencrypt, letsencrypt-staging, zerossl, google, or a directory URL (env TLSMINT_CA)")
	pf.StringVar(&a.caRoots, "ca-roots", "", "PEM file of roots to trust for the CA's HTTPS server, for a private CA (env TLSMINT_CA_ROOTS; default the system's)")
	pf.StringVar(&a.accountKey, "account-key", "", "account key file, PEM (env TLSMINT_ACCOUNT_KEY; default one per CA under the user's config folder)")
	pf.StringVar(&a.storageURL, "storage", "", "tlsmint storage: a folder or postgres://… (env TLSMINT_STORAGE)")
	pf.BoolVar(&a.jsonOut, "json", false, "print JSON for scripts instead of text")
	pf.BoolVarP(&a.verbose, "verbose", "v", false, "print every ACME exchange on stderr")
	pf.BoolVar(&a.progress, "progress", isTerminal(a.stderr), "print progress on stderr (default: when stderr is a terminal)")
	pf.DurationVar(&a.requestTimeout, "request-timeout", defaultRequestTimeout, "bound on each request to the CA, its answer included")
	pf.StringVar(&a.color, "color", "auto", "colour states in text output: auto (on a terminal, unless NO_COLOR is set), always, never")

	root.AddCommand(
		a.accountCommand(),
		a.obtainCommand(),
		a.renewCommand(),
		a.revokeCommand(),
		a.ariCommand(),
		a.certsCommand(),
		a.auditCommand(),
		a.rateLimitsCommand(),
		a.checkCommand(),
		a.importCommand(),
		a.relayCommand(),
		a.devCACommand(),
	)
	return root
}

// defaultRequestTimeout bounds each request to the CA (--request-timeout).
const defaultRequestTimeout = 30 * time.Second

// subcommandPath is cmd's path without the leading "tlsmint" ("" for the
// root command itself).
func subcommandPath(cmd *cobra.Command) string {
	p := cmd.CommandPath()
	if !strings.Contains(p, " ") {
		return ""
	}
	return strings.TrimPrefix(p, "tlsmint ")
}

// checkGlobalFlags checks the values of the global flags.
func (a *app) checkGlobalFlags() error {
	if a.requestTimeout <= 0 {
		return usagef("--request-timeout %s: want a positive duration, such as 30s", a.requestTimeout)
	}
	switch a.color {
	case "auto", "always", "never":
	default:
		return usagef("--color %q: want auto, always or never", a.color)
	}
	return nil
}

// version is the module version of the binary (from its build
// information: a tag when installed with go install …@version,
// "(devel)" when built from a checkout), with the VCS revision when the
// build recorded one.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+dirty"
			}
		}
	}
	if rev != "" {
		v += " " + textclip.Prefix(rev, 12) + modified
	}
	return v + " " + bi.GoVersion
}

// envFlags are the flags that environment variables set, when not given
// on the command line.
var envFlags = map[string]string{
	"ca":               "TLSMINT_CA",
	"ca-roots":         "TLSMINT_CA_ROOTS",
	"storage":          "TLSMINT_STORAGE",
	"account-key":      "TLSMINT_ACCOUNT_KEY",
	"email":            "TLSMINT_EMAIL",
	"eab-kid":          "TLSMINT_EAB_KID",
	"eab-hmac-file":    "TLSMINT_EAB_HMAC_FILE",
	"key-type":         "TLSMINT_KEY_TYPE",
	"profile":          "TLSMINT_PROFILE",
	"preferred-chain":  "TLSMINT_PREFERRED_CHAIN",
	"http":             "TLSMINT_HTTP",
	"tls-alpn":         "TLSMINT_TLS_ALPN",
	"config":           "TLSMINT_RELAY_CONFIG",
	"admin":            "TLSMINT_RELAY_ADMIN",
	"admin-token-file": "TLSMINT_RELAY_ADMIN_TOKEN_FILE",
}

// noEnvAnnotation marks a flag that shares its name with one of envFlags
// but means something else, so that its variable does not set it.
const noEnvAnnotation = "tlsmint-no-env"

// noEnv keeps the environment variables of envFlags away from the named
// flags of fl.
func noEnv(fl *pflag.FlagSet, names ...string) {
	for _, n := range names {
		_ = fl.SetAnnotation(n, noEnvAnnotation, []string{"true"})
	}
}

// applyEnv sets the flags of cmd that the command line left alone from
// their environment variables.
func (a *app) applyEnv(cmd *cobra.Command) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		env, ok := envFlags[f.Name]
		if !ok || f.Changed || err != nil || f.Annotations[noEnvAnnotation] != nil {
			return
		}
		v := a.getenv(env)
		if v == "" {
			return
		}
		if serr := cmd.Flags().Set(f.Name, v); serr != nil {
			err = usagef("%s=%q: %v", env, v, serr)
		}
	})
	return err
}

// flagSet reports whether the flag was given on the command line or by
// its environment variable.
func flagSet(cmd *cobra.Command, name string) bool {
	f := cmd.Flags().Lookup(name)
	return f != nil && f.Changed
}

// syncWriter serialises the writes to w, and drops those made after close.
type syncWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return len(b), nil
	}
	return s.w.Write(b)
}

func (s *syncWriter) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}
