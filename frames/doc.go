// Package frames is the sans-I/O HTTP/3 and WebTransport wire layer: it
// parses and appends bytes and never performs I/O.
//
// It implements:
//   - HTTP/3 frames (RFC 9114, Section 7): the frame header, DATA, HEADERS
//     (opaque field section), SETTINGS (the frame; its payload is package
//     settings), CANCEL_PUSH, PUSH_PROMISE, GOAWAY, MAX_PUSH_ID, and
//     PRIORITY_UPDATE (RFC 9218, Section 7.2); reserved (GREASE) types
//     0x1f*N+0x21 and unknown types are skipped (RFC 9114, Section 9), and the
//     HTTP/2-only types 0x02, 0x06, 0x08 and 0x09 are H3_FRAME_UNEXPECTED
//     (RFC 9114, Section 7.2.8).
//   - Which frame may appear on which stream kind (RFC 9114, Sections 6.2.1,
//     7.2 and 4.1; RFC 9220 and draft-ietf-webtrans-http3 for CONNECT
//     streams), answered by Check.
//   - Stream-type prefixes of unidirectional streams (RFC 9114, Section 6.2;
//     RFC 9204, Section 4.2; draft-ietf-webtrans-http3, Section 4.2) and the
//     WEBTRANSPORT_STREAM signal of bidirectional streams (Section 4.3).
//   - The Capsule Protocol (RFC 9297, Section 3) with a streaming parser, and
//     the WebTransport capsules (draft-ietf-webtrans-http3, Sections 5 and 6).
//   - HTTP/3, QPACK, HTTP Datagram and WebTransport error codes, and the
//     mapping of 32-bit WebTransport application error codes into the HTTP/3
//     error space (draft-ietf-webtrans-http3, Section 4.4).
//
// Every parse function returns a *Error carrying the error code the
// specifications name, never panics on any input, and never allocates in
// proportion to a length the peer declared but did not send.
package frames
