// Package varint implements QUIC variable-length integers (RFC 9000, Section
// 16) as used by every HTTP/3 and WebTransport wire structure.
//
// The two most significant bits of the first byte give the encoded length:
// 00 = 1 byte (6-bit value), 01 = 2 bytes (14 bits), 10 = 4 bytes (30 bits),
// 11 = 8 bytes (62 bits). The package does no I/O beyond io.ByteReader, never
// panics on any input and never allocates except when growing an append
// destination.
package varint

import (
	"encoding/binary"
	"errors"
	"io"
)

// Max is the largest value a QUIC variable-length integer can hold, 2^62-1
// (RFC 9000, Section 16).
const Max = 1<<62 - 1

// Boundaries of the four encodings (RFC 9000, Section 16, Table 4).
const (
	max1 = 1<<6 - 1
	max2 = 1<<14 - 1
	max4 = 1<<30 - 1
)

var (
	// ErrTruncated is returned when the input ends inside a varint.
	ErrTruncated = errors.New("varint: truncated")
	// ErrRange is returned for values above Max, which have no encoding.
	ErrRange = errors.New("varint: value exceeds 2^62-1")
	// ErrLength is returned by AppendWithLen for a length that is not 1, 2, 4
	// or 8, or too small for the value.
	ErrLength = errors.New("varint: invalid forced length")
)

// Parse decodes the varint at the start of b. It returns the value and the
// number of bytes it occupied, or ErrTruncated if b is too short.
//
// Parse is written to stay within the compiler's inlining budget, so that
// hot loops over frame headers and SETTINGS pay no call.
func Parse(b []byte) (v uint64, n int, err error) {
	if len(b) == 0 {
		return 0, 0, ErrTruncated
	}
	switch b[0] >> 6 {
	case 0:
		return uint64(b[0]), 1, nil
	case 1:
		if len(b) >= 2 {
			return uint64(binary.BigEndian.Uint16(b) & 0x3fff), 2, nil
		}
	case 2:
		if len(b) >= 4 {
			return uint64(binary.BigEndian.Uint32(b) & 0x3fffffff), 4, nil
		}
	default:
		if len(b) >= 8 {
			return binary.BigEndian.Uint64(b) & Max, 8, nil
		}
	}
	return 0, 0, ErrTruncated
}

// LenOfFirstByte returns the encoded length announced by a varint's first
// byte: 1, 2, 4 or 8.
func LenOfFirstByte(b0 byte) int { return 1 << (b0 >> 6) }

// Len returns the number of bytes Append uses for v, or 0 if v > Max.
func Len(v uint64) int {
	switch {
	case v <= max1:
		return 1
	case v <= max2:
		return 2
	case v <= max4:
		return 4
	case v <= Max:
		return 8
	default:
		return 0
	}
}

// Append appends the shortest encoding of v to b. It returns ErrRange (and b
// unchanged) if v > Max.
func Append(b []byte, v uint64) ([]byte, error) {
	switch {
	case v <= max1:
		return append(b, byte(v)), nil
	case v <= max2:
		return binary.BigEndian.AppendUint16(b, uint16(v)|0x4000), nil
	case v <= max4:
		return binary.BigEndian.AppendUint32(b, uint32(v)|0x8000_0000), nil
	case v <= Max:
		return binary.BigEndian.AppendUint64(b, v|0xc000_0000_0000_0000), nil
	}
	return b, ErrRange
}

// MustAppend is Append for values the caller knows to be at most Max (for
// example constants and lengths of in-memory buffers). A value above Max is a
// programming error and panics; no peer input reaches it. It is the encoder
// the rest of quicwt uses on hot paths and the counterpart of quic-go's
// quicvarint.Append (which also panics past Max). The one-byte case (frame
// and capsule types, short lengths, small IDs) inlines into the caller as a
// compare and an append; longer encodings take one call.
func MustAppend(b []byte, v uint64) []byte {
	if v <= max1 {
		return append(b, byte(v))
	}
	return mustAppendLong(b, v)
}

// mustAppendLong is MustAppend for values of two bytes and more. It is kept
// out of line so that MustAppend itself stays within the inlining budget.
//
//go:noinline
func mustAppendLong(b []byte, v uint64) []byte {
	switch {
	case v <= max2:
		return binary.BigEndian.AppendUint16(b, uint16(v)|0x4000)
	case v <= max4:
		return binary.BigEndian.AppendUint32(b, uint32(v)|0x8000_0000)
	case v <= Max:
		return binary.BigEndian.AppendUint64(b, v|0xc000_0000_0000_0000)
	}
	panic(ErrRange)
}

// AppendWithLen appends v encoded in exactly n bytes (1, 2, 4 or 8), as RFC
// 9000 allows non-minimal encodings. It is used for length fields reserved
// before the payload size is known.
func AppendWithLen(b []byte, v uint64, n int) ([]byte, error) {
	if v > Max {
		return b, ErrRange
	}
	switch n {
	case 1:
		if v > max1 {
			return b, ErrLength
		}
		return append(b, byte(v)), nil
	case 2:
		if v > max2 {
			return b, ErrLength
		}
		return append(b, byte(v>>8)|0x40, byte(v)), nil
	case 4:
		if v > max4 {
			return b, ErrLength
		}
		return append(b, byte(v>>24)|0x80, byte(v>>16), byte(v>>8), byte(v)), nil
	case 8:
		return append(b, byte(v>>56)|0xc0, byte(v>>48), byte(v>>40), byte(v>>32),
			byte(v>>24), byte(v>>16), byte(v>>8), byte(v)), nil
	default:
		return b, ErrLength
	}
}

// PutWithLen writes v in exactly len(b) bytes (1, 2, 4 or 8) over b, for
// patching a length field reserved with AppendWithLen.
func PutWithLen(b []byte, v uint64) error {
	_, err := AppendWithLen(b[:0], v, len(b))
	return err
}

// Read decodes one varint from r. An io.EOF before the first byte is returned
// as io.EOF; an EOF inside the varint is io.ErrUnexpectedEOF.
func Read(r io.ByteReader) (uint64, error) {
	b0, err := r.ReadByte()
	if err != nil {
		return 0, err
	}
	n := LenOfFirstByte(b0)
	v := uint64(b0 & 0x3f)
	for i := 1; i < n; i++ {
		b, err := r.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		v = v<<8 | uint64(b)
	}
	return v, nil
}
