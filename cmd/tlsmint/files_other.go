//go:build !unix

package main

// openNonblock: no such flag off Unix.
const openNonblock = 0
