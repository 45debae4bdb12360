package main

import (
	"io"
	"os"
	"testing"
	"time"
)

// TestMain lets the hold workloads re-execute the test binary as their
// client process.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		childMain()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestQuick runs every workload for the three implementations with tiny
// counts (as -quick does); each workload checks its payloads, so this
// verifies that the suite works and that all three pass the same checks.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	clientPin = serverCert().hash
	var progress io.Writer = io.Discard
	if testing.Verbose() {
		progress = os.Stderr
	}
	cfg := config{rounds: 1, scaleRounds: 1, sz: quickSizes(), impls: impls, progress: progress}
	start := time.Now()
	res := run(cfg)
	for _, e := range res.Errors {
		t.Error(e)
	}
	for _, w := range workloads() {
		for _, im := range impls {
			found := false
			for _, mt := range w.metrics {
				if res.get(w.name, mt.name, im.Name()) != nil {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: no result for %s", w.name, im.Name())
			}
		}
	}
	t.Logf("quick suite took %s\n%s", time.Since(start).Round(time.Millisecond), res.table(cfg))
}
