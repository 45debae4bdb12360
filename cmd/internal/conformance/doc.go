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
// skipped only when the server cannot be exercised by it: its precondition
// is absent from the server's SETTINGS or the negotiated draft (for example
// WebTransport flow control), or what the server did leaves the checked
// rule unobservable (a path that does not echo, a reset that discards the
// response). The result says why.
//
// Section references: RFC 9114 (HTTP/3), RFC 9204 (QPACK), RFC 9220 and
// RFC 8441 (extended CONNECT), RFC 9297 (HTTP datagrams and capsules) and
// draft-ietf-webtrans-http3-16 ("WT-H3").
package conformance
