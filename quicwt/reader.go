package quicwt

import (
	"errors"
	"io"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/varint"
)

// frameReader reads HTTP/3 frames from a stream through a small buffer. It
// is used on control, QPACK, request and CONNECT streams, never on
// WebTransport data streams, whose bytes belong to the application.
type frameReader struct {
	r        io.Reader
	buf      []byte
	pos, end int32 // buffers are small
	// A reader with idleSize set drops its buffer when release finds it
	// empty and waits for the next byte in one; it then reads with a
	// buffer of idleSize.
	idleSize uint16
	one      [1]byte
}

func newFrameReader(r io.Reader, size int) *frameReader {
	return &frameReader{r: r, buf: make([]byte, size)}
}

func (f *frameReader) fill() error {
	if f.buf == nil {
		n, err := f.r.Read(f.one[:])
		if n == 0 {
			if err == nil {
				err = io.ErrNoProgress
			}
			return err
		}
		f.buf = make([]byte, f.idleSize)
		f.buf[0] = f.one[0]
		f.pos, f.end = 0, 1
		return nil
	}
	n, err := f.r.Read(f.buf)
	f.pos, f.end = 0, int32(n)
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// release drops an idle reader's buffer when nothing is buffered.
func (f *frameReader) release() {
	if f.idleSize > 0 && f.pos == f.end && f.buf != nil {
		f.buf, f.pos, f.end = nil, 0, 0
	}
}

// ReadByte implements io.ByteReader.
func (f *frameReader) ReadByte() (byte, error) {
	if f.pos == f.end {
		if err := f.fill(); err != nil {
			return 0, err
		}
	}
	b := f.buf[f.pos]
	f.pos++
	return b, nil
}

// Read drains the buffer first, then reads directly.
func (f *frameReader) Read(p []byte) (int, error) {
	if f.pos < f.end {
		n := copy(p, f.buf[f.pos:f.end])
		f.pos += int32(n)
		return n, nil
	}
	return f.r.Read(p)
}

// chunk returns up to max buffered bytes, reading once if none are buffered.
// The slice is valid until the next call.
func (f *frameReader) chunk(max uint64) ([]byte, error) {
	if f.pos == f.end {
		if err := f.fill(); err != nil {
			return nil, err
		}
	}
	n := min(uint64(f.end-f.pos), max)
	b := f.buf[f.pos : f.pos+int32(n)]
	f.pos += int32(n)
	return b, nil
}

// skip discards n bytes.
func (f *frameReader) skip(n uint64) error {
	for n > 0 {
		b, err := f.chunk(n)
		if err != nil {
			return err
		}
		n -= uint64(len(b))
	}
	return nil
}

// payload reads a whole frame payload of n bytes, which the caller has
// already checked against its limit. Memory grows with the bytes actually
// received, never with the declared length alone.
func (f *frameReader) payload(n uint64) ([]byte, error) {
	out := make([]byte, 0, min(n, 4096))
	for uint64(len(out)) < n {
		b, err := f.chunk(n - uint64(len(out)))
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	return out, nil
}

// eofAsTruncated reports an EOF inside a frame as a frame error.
func eofAsTruncated(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return frames.ErrTruncated
	}
	return err
}

// readVarintBytes reads one varint from r into b (at least 8 bytes)
// without reading past it, for stream prefixes that precede application
// data, and returns its length. An EOF before the first byte is io.EOF,
// inside the varint io.ErrUnexpectedEOF.
func readVarintBytes(r io.Reader, b []byte) (int, error) {
	if _, err := io.ReadFull(r, b[:1]); err != nil {
		return 0, err
	}
	n := varint.LenOfFirstByte(b[0])
	if n > 1 {
		if _, err := io.ReadFull(r, b[1:n]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
	}
	return n, nil
}

// readPrefixInt reads a QPACK/HPACK prefixed integer (RFC 7541, Section 5.1)
// whose first byte b0 has already been read, with an N-bit prefix.
func readPrefixInt(r io.ByteReader, b0 byte, n uint) (uint64, error) {
	mask := byte(1<<n - 1)
	v := uint64(b0 & mask)
	if v < uint64(mask) {
		return v, nil
	}
	var shift uint
	for {
		b, err := r.ReadByte()
		if err != nil {
			return 0, err
		}
		if shift > 56 {
			return 0, errIntegerOverflow
		}
		v += uint64(b&0x7f) << shift
		shift += 7
		if b&0x80 == 0 {
			return v, nil
		}
	}
}

// errIntegerOverflow is a prefixed integer beyond 64 bits; the stream it
// came on decides the error code.
var errIntegerOverflow = errors.New("prefixed integer overflow")
