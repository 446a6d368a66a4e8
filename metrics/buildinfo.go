package metrics

import (
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// ModulePath is this module's path, whose version tlsmint_build_info
// reports.
const ModulePath = "github.com/tlsmint/tlsmint"

// NewBuildInfoCollector returns a collector of one series,
// tlsmint_build_info{version, goversion} 1: the version of this module in
// the running binary (from debug.ReadBuildInfo: a tag such as v1.2.0,
// "(devel)" when built from a checkout, "unknown" without build
// information) and the Go version it was built with. [Collector.Handler]
// registers it; a program that registers Collectors in its own registry
// registers this once, as it would the Go and process collectors, since
// it describes the process rather than a Manager.
func NewBuildInfoCollector() prometheus.Collector {
	version, goVersion := "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if bi.Main.Path == ModulePath {
			version = bi.Main.Version
		}
		for _, d := range bi.Deps {
			if d.Path == ModulePath {
				version = d.Version
				if d.Replace != nil && d.Replace.Version != "" {
					version = d.Replace.Version
				}
			}
		}
		if version == "" {
			version = "(devel)"
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "tlsmint_build_info",
		Help:        "Always 1; its labels are the version of the tlsmint module in this binary and the Go version it was built with.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": goVersion},
	})
	g.Set(1)
	return g
}
