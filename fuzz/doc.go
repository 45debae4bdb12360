// Package fuzz holds the fuzz targets of the framing core (packages varint,
// frames and settings) and the generator of their seed corpora. It has no
// API: everything is in its tests.
//
// Run a target with, for example:
//
//	go test -run='^$' -fuzz=FuzzCapsuleStream -fuzztime=60s ./fuzz
//
// Targets: FuzzVarint, FuzzFrameSequence, FuzzSettings, FuzzCapsuleStream,
// FuzzStreamPrefix. Their seeds in testdata/fuzz/<target>/ are produced by
// the encoders of the framing core, never typed by hand; regenerate them
// after changing an encoder or the seed list in corpus_test.go with:
//
//	QUICWT_GEN_CORPUS=1 go test -run=TestGenerateCorpus ./fuzz
//
// TestCorpusUpToDate fails when the committed files differ from what the
// generator produces.
package fuzz
