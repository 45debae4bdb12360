// Package conformance is the protocol conformance checker behind
// `quicwt check`: a raw HTTP/3 peer written on quic-go that connects to any
// WebTransport-over-HTTP/3 server and runs named cases, each sending
// hand-built wire bytes and checking the exact outcome the RFCs and
// draft-ietf-webtrans-http3 require (connection error code, stream error
// code, HTTP status, or that the server ignored what it must ignore).
//
// Every case runs on a fresh QUIC connection, so that one violation cannot
// affect the next. Cases where the specifications allow several behaviours
// (MAY) accept each allowed outcome and say which one they saw; a case is
// skipped only when its precondition is absent from the server's SETTINGS
// (for example WebTransport flow control), and the result says which
// setting was missing.
//
// Section references: RFC 9114 (HTTP/3), RFC 9204 (QPACK), RFC 9220 and
// RFC 8441 (extended CONNECT), RFC 9297 (HTTP datagrams and capsules) and
// draft-ietf-webtrans-http3-16 ("WT-H3").
package conformance
