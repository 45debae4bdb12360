//go:build quicgo_latest

package quicwt

import (
	"io"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlogwriter"
)

// newFileSeq is qlogwriter.NewConnectionFileSeq of quic-go v0.65, which
// takes no schemas.
func newFileSeq(w io.WriteCloser, isClient bool, id quic.ConnectionID, _ []string) *qlogwriter.FileSeq {
	return qlogwriter.NewConnectionFileSeq(w, isClient, id)
}
