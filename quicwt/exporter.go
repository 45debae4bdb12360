package quicwt

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The session exporter (draft-ietf-webtrans-http3-16, Section 4.8): a TLS
// exporter (RFC 8446, Section 7.5) of the session's connection with the
// label "EXPORTER-WebTransport" and, as context, the serialization of the
// WebTransport Exporter Context struct:
//
//	WebTransport Exporter Context {
//	  WebTransport Session ID (64),
//	  WebTransport Application-Supplied Exporter Label Length (8),
//	  WebTransport Application-Supplied Exporter Label (8..),
//	  WebTransport Application-Supplied Exporter Context Length (8),
//	  WebTransport Application-Supplied Exporter Context (..)
//	}
//
// The session ID is a fixed 64-bit big-endian integer here (not a varint),
// and both lengths are single bytes, so label and context are at most 255
// bytes each. Sessions sharing a connection get independent keys.

// ExporterLabel is the TLS exporter label of every session exporter.
const ExporterLabel = "EXPORTER-WebTransport"

// ErrExporterInput is matched (errors.Is) by ExportKeyingMaterial's error
// for a label or context longer than 255 bytes, or a length outside 1 to
// MaxExportLength.
var ErrExporterInput = errors.New("quicwt: invalid exporter input")

// MaxExportLength bounds the bytes one ExportKeyingMaterial call derives
// (browsers allow up to 4096).
const MaxExportLength = 1 << 16

// exporterContext appends the WebTransport Exporter Context struct.
func exporterContext(b []byte, sessionID uint64, label string, context []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, sessionID)
	b = append(b, byte(len(label)))
	b = append(b, label...)
	b = append(b, byte(len(context)))
	return append(b, context...)
}

// ExportKeyingMaterial derives length bytes of keying material bound to
// this session, from the application's label and context (nil and empty
// are the same: the draft's omitted context is zero-length). Both
// endpoints of the session derive the same bytes; other sessions on the
// same connection derive different ones. It fails before the TLS
// handshake is complete (a server session of a 0.5-RTT connection) and
// after the connection's TLS state is gone.
func (s *Session) ExportKeyingMaterial(label string, context []byte, length int) ([]byte, error) {
	if len(label) > 255 {
		return nil, fmt.Errorf("%w: label of %d bytes (at most 255)", ErrExporterInput, len(label))
	}
	if len(context) > 255 {
		return nil, fmt.Errorf("%w: context of %d bytes (at most 255)", ErrExporterInput, len(context))
	}
	if length < 1 || length > MaxExportLength {
		return nil, fmt.Errorf("%w: length %d (1 to %d)", ErrExporterInput, length, MaxExportLength)
	}
	st := s.c.tlsConnectionState()
	if st == nil || !st.HandshakeComplete {
		return nil, errors.New("quicwt: TLS handshake not complete")
	}
	ctx := exporterContext(make([]byte, 0, 10+len(label)+len(context)), s.id, label, context)
	return st.ExportKeyingMaterial(ExporterLabel, ctx, length)
}
