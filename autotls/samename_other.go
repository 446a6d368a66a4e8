//go:build !(amd64 || arm64 || 386 || ppc64 || ppc64le || s390x)

package autotls

// sameName reports whether a and b are the same name (see samename.go;
// this architecture may not load words at any address).
func sameName(a, b string) bool { return a == b }
