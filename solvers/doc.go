// Package solvers answers ACME challenges: http-01 ([HTTP01]), tls-alpn-01
// ([TLSALPN01]) and dns-01 over any libdns provider ([DNS01]). Each solver
// is an [acme.Solver] that [acme.Client.Obtain] drives on its own.
package solvers
