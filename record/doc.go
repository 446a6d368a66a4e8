// Package record holds the records that several of tlsmint's packages
// write and read, so that none of them owns another's schema: the audit
// trail's entry ([Audit]) and its query ([AuditFilter]), with their kinds
// and outcomes; the state of one certificate ([Certificate]) that
// autotls.Manager.Certificates, relay.Server.Certificates, the status
// page, the metrics collector and the watchdog share; and the DNS record
// an operator must publish ([DNS]).
//
// The package holds data and nothing else: it imports no other package of
// tlsmint, and its types have no behaviour beyond formatting. Package
// autotls fills them for a Manager, package relay for the certificates it
// issued, package audit stores and queries [Audit] records, and package
// watchdog writes its probes as [Audit] records of [KindProbe].
//
// # Concurrency
//
// The types are plain values: a value is safe for concurrent reads, and
// is not modified by the package that returned it once returned.
package record
