package quicwt

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/frames"
)

// A request's response and body at a server (RFC 9114, Section 4.1).

// responseWriter is the http.ResponseWriter of a request stream: HEADERS
// then DATA frames (RFC 9114, Section 4.1).
type responseWriter struct {
	c      *conn
	str    bidiStream
	req    *http.Request
	header http.Header

	wroteHeader bool
	status      int
	bodyAllowed bool
	writeErr    error

	sess      *Session // set for WebTransport CONNECT requests
	upgrading bool     // Upgrade is sending the 2xx
	upgraded  bool
}

func (w *responseWriter) Header() http.Header { return w.header }

// WriteHeader sends the response header section. On a WebTransport CONNECT
// a 2xx status is accepted only through Upgrade; a handler writing 2xx
// itself would establish a session nobody holds, so it becomes 500.
func (w *responseWriter) WriteHeader(code int) {
	if w.wroteHeader || w.writeErr != nil {
		return
	}
	if code < 100 || code > 999 {
		code = http.StatusInternalServerError
	}
	if w.sess != nil && !w.upgrading && code >= 200 && code < 300 {
		w.c.logger.Warn("handler answered a WebTransport CONNECT with 2xx without quicwt.Upgrade", "path", w.pathForLog())
		code = http.StatusInternalServerError
	}
	informational := code >= 100 && code < 200
	e := newFieldEncoder()
	e.add(":status", strconv.Itoa(code))
	e.addHeader(w.header)
	if !informational {
		w.wroteHeader = true
		w.status = code
		w.bodyAllowed = code != http.StatusNoContent && code != http.StatusNotModified &&
			(w.req == nil || w.req.Method != http.MethodHead) && w.sess == nil
	}
	if _, err := w.str.Write(e.headersFrame()); err != nil {
		w.writeErr = translateStreamErr(err)
	}
}

func (w *responseWriter) pathForLog() string {
	if w.req != nil && w.req.URL != nil {
		return w.req.URL.Path
	}
	return ""
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		if w.header.Get("Content-Type") == "" && w.sess == nil {
			w.header.Set("Content-Type", http.DetectContentType(p))
		}
		w.WriteHeader(http.StatusOK)
	}
	if w.writeErr != nil {
		return 0, w.writeErr
	}
	if !w.bodyAllowed {
		return 0, http.ErrBodyNotAllowed
	}
	if len(p) == 0 {
		return 0, nil
	}
	var hdr [16]byte
	if _, err := w.str.Write(frames.AppendDataHeader(hdr[:0], uint64(len(p)))); err != nil {
		w.writeErr = translateStreamErr(err)
		return 0, w.writeErr
	}
	n, err := w.str.Write(p)
	if err != nil {
		w.writeErr = translateStreamErr(err)
	}
	return n, w.writeErr
}

// Flush implements http.Flusher; quic-go sends written data promptly.
func (w *responseWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
}

// FlushError implements the interface http.ResponseController uses.
func (w *responseWriter) FlushError() error { w.Flush(); return w.writeErr }

// SetReadDeadline and SetWriteDeadline serve http.ResponseController.
func (w *responseWriter) SetReadDeadline(t time.Time) error  { return w.str.SetReadDeadline(t) }
func (w *responseWriter) SetWriteDeadline(t time.Time) error { return w.str.SetWriteDeadline(t) }

// finish completes the response: a handler that wrote nothing answered 200
// (404 for an unaccepted WebTransport CONNECT), then FIN.
func (w *responseWriter) finish() {
	if !w.wroteHeader {
		if w.sess != nil {
			w.WriteHeader(http.StatusNotFound)
		} else {
			w.WriteHeader(http.StatusOK)
		}
	}
	if w.writeErr == nil {
		_ = w.str.Close()
	}
}

// abort resets the stream (http.ErrAbortHandler).
func (w *responseWriter) abort() {
	w.str.CancelRead(quic.StreamErrorCode(frames.H3RequestCancelled))
	w.str.CancelWrite(quic.StreamErrorCode(frames.H3RequestCancelled))
	w.writeErr = errors.New("quicwt: handler aborted")
}

// requestBody reads a request's content from its DATA frames, skipping
// unknown frames and stopping at trailers (RFC 9114, Section 4.1).
type requestBody struct {
	c      *conn
	str    bidiStream
	fr     *frameReader
	remain uint64 // bytes left in the current DATA frame
	done   bool
	err    error
	cancel context.CancelFunc // the request's context
}

func (b *requestBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	for b.remain == 0 {
		h, err := readMessageFrameHeader(b.fr, &b.c.limits)
		if err == io.EOF {
			b.done = true
			b.err = io.EOF
			return 0, io.EOF
		}
		if err != nil {
			return 0, b.fail(eofAsTruncated(err))
		}
		known, err := frames.Check(h.Type, frames.KindRequest, true)
		if err != nil {
			return 0, b.fail(err)
		}
		switch {
		case !known:
			if err := b.fr.skip(h.Length); err != nil {
				return 0, b.fail(eofAsTruncated(err))
			}
		case h.Type == frames.TypeHeaders:
			// Trailers end the content; skip them.
			if err := b.fr.skip(h.Length); err != nil {
				return 0, b.fail(eofAsTruncated(err))
			}
		default:
			b.remain = h.Length
		}
	}
	n, err := b.fr.Read(p[:min(uint64(len(p)), b.remain)])
	b.remain -= uint64(n)
	if err == io.EOF && b.remain > 0 {
		return n, b.fail(frames.ErrTruncated)
	}
	if err != nil && err != io.EOF {
		return n, b.fail(err)
	}
	return n, nil
}

func (b *requestBody) fail(err error) error {
	if fe, ok := errors.AsType[*frames.Error](err); ok && fe.Connection {
		b.c.fail(err)
	}
	b.err = translateStreamErr(err)
	if se, ok := errors.AsType[*StreamError](b.err); ok && se.Remote && b.cancel != nil {
		b.cancel() // the peer reset the request
	}
	return b.err
}

func (b *requestBody) Close() error {
	if !b.done {
		b.done = true
		b.str.CancelRead(quic.StreamErrorCode(frames.H3NoError))
	}
	return nil
}
