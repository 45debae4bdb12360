// Package sfv parses and serializes the few HTTP Structured Field Values
// (RFC 9651) that WebTransport needs: the WT-Available-Protocols List and
// the WT-Protocol Item of draft-ietf-webtrans-http3, Section 3.3, whose
// only valid value type is the String. It does no I/O, never panics and
// keeps nothing between calls.
//
// Parsing is strict RFC 9651: the whole field value (every field line of
// the header, combined with commas as RFC 9651, Section 4.2 says) must be
// a valid List or Item, parameters included, or it is an ErrSyntax; a
// valid field with a member that is not a String (a Token, an Integer, an
// Inner List...) is an ErrNotString. Either way the draft says to ignore
// the whole field. Parameters are parsed for validity and dropped.
//
// Drafts -10 to -12 carried Tokens (WT-Protocol: proto) instead of
// Strings (WT-Protocol: "proto"); as draft -13 and later say, a Token is
// ErrNotString here.
//
// One leniency of RFC 9651 is not taken: a Byte Sequence must carry its
// "=" padding (Section 4.2.7 says parsers SHOULD NOT fail without it).
// Byte Sequences can only occur in parameters of these fields, and
// github.com/dunglas/httpsfv, which webtransport-go uses, requires the
// padding too, so both agree on which fields are ignored.
package sfv

import (
	"errors"
	"strings"
	"unicode/utf8"
)

var (
	// ErrSyntax is matched by errors for a field value that is not a
	// valid structured field of the expected kind.
	ErrSyntax = errors.New("sfv: invalid structured field")
	// ErrNotString is matched by errors for a valid field with a member
	// (or item) that is not a String.
	ErrNotString = errors.New("sfv: value is not a String")
)

// combine joins a field's lines as RFC 9651, Section 4.2 says (RFC 9110,
// Section 5.3: a comma between lines).
func combine(lines []string) string {
	if len(lines) == 1 {
		return lines[0]
	}
	return strings.Join(lines, ",")
}

// ParseStringList parses the field lines of a List whose members must all
// be Strings (WT-Available-Protocols) and returns the strings in order. An
// empty field value is an empty list. On error, ignore the field.
func ParseStringList(lines []string) ([]string, error) {
	p := parser{s: combine(lines)}
	p.sp()
	var out []string
	notString := false
	for !p.eof() {
		str, isStr, err := p.member()
		if err != nil {
			return nil, err
		}
		if isStr {
			out = append(out, str)
		} else {
			notString = true // keep parsing: a syntax error wins
		}
		p.ows()
		if p.eof() {
			break
		}
		if p.s[p.i] != ',' {
			return nil, ErrSyntax
		}
		p.i++
		p.ows()
		if p.eof() {
			return nil, ErrSyntax // trailing comma
		}
	}
	if notString {
		return nil, ErrNotString
	}
	return out, nil
}

// ParseStringItem parses the field lines of an Item that must be a String
// (WT-Protocol). On error, ignore the field.
func ParseStringItem(lines []string) (string, error) {
	p := parser{s: combine(lines)}
	p.sp()
	if p.eof() {
		return "", ErrSyntax
	}
	str, isStr, err := p.bareItem()
	if err != nil {
		return "", err
	}
	if err := p.params(); err != nil {
		return "", err
	}
	p.sp()
	if !p.eof() {
		return "", ErrSyntax
	}
	if !isStr {
		return "", ErrNotString
	}
	return str, nil
}

// AppendString appends s serialized as a String (RFC 9651, Section
// 4.1.6). Only printable ASCII (0x20 to 0x7e) can be a String; anything
// else is an ErrSyntax and nothing is appended.
func AppendString(b []byte, s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return b, ErrSyntax
		}
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"'), nil
}

// FormatStringList serializes a List of Strings (RFC 9651, Section
// 4.1.1), for WT-Available-Protocols.
func FormatStringList(list []string) (string, error) {
	var b []byte
	for i, s := range list {
		if i > 0 {
			b = append(b, ", "...)
		}
		var err error
		if b, err = AppendString(b, s); err != nil {
			return "", err
		}
	}
	return string(b), nil
}

// FormatString serializes a String Item, for WT-Protocol.
func FormatString(s string) (string, error) {
	b, err := AppendString(nil, s)
	return string(b), err
}

type parser struct {
	s string
	i int
}

func (p *parser) eof() bool { return p.i >= len(p.s) }

// sp discards spaces, ows spaces and tabs.
func (p *parser) sp() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

func (p *parser) ows() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// member parses an Item or an Inner List (RFC 9651, Section 4.2.1.1);
// isStr reports an Item whose bare item is a String.
func (p *parser) member() (str string, isStr bool, err error) {
	if p.s[p.i] == '(' {
		return "", false, p.innerList()
	}
	str, isStr, err = p.bareItem()
	if err != nil {
		return "", false, err
	}
	return str, isStr, p.params()
}

// innerList parses an Inner List (Section 4.2.1.2).
func (p *parser) innerList() error {
	p.i++ // '('
	for !p.eof() {
		p.sp()
		if p.eof() {
			break
		}
		if p.s[p.i] == ')' {
			p.i++
			return p.params()
		}
		if _, _, err := p.bareItem(); err != nil {
			return err
		}
		if err := p.params(); err != nil {
			return err
		}
		if p.eof() || (p.s[p.i] != ' ' && p.s[p.i] != ')') {
			return ErrSyntax
		}
	}
	return ErrSyntax
}

// params parses and drops Parameters (Section 4.2.3.2).
func (p *parser) params() error {
	for !p.eof() && p.s[p.i] == ';' {
		p.i++
		p.sp()
		if err := p.key(); err != nil {
			return err
		}
		if !p.eof() && p.s[p.i] == '=' {
			p.i++
			if _, _, err := p.bareItem(); err != nil {
				return err
			}
		}
	}
	return nil
}

// key parses a Key (Section 4.2.3.3).
func (p *parser) key() error {
	if p.eof() || !(isLCAlpha(p.s[p.i]) || p.s[p.i] == '*') {
		return ErrSyntax
	}
	p.i++
	for !p.eof() {
		c := p.s[p.i]
		if !isLCAlpha(c) && !isDigit(c) && c != '_' && c != '-' && c != '.' && c != '*' {
			break
		}
		p.i++
	}
	return nil
}

// bareItem parses a Bare Item (Section 4.2.3.1): a String is returned,
// the other types are checked and dropped.
func (p *parser) bareItem() (str string, isStr bool, err error) {
	if p.eof() {
		return "", false, ErrSyntax
	}
	switch c := p.s[p.i]; {
	case c == '-' || isDigit(c):
		_, err = p.number()
	case c == '"':
		str, err = p.str()
		isStr = err == nil
	case isAlpha(c) || c == '*':
		p.token()
	case c == ':':
		err = p.byteSeq()
	case c == '?':
		err = p.boolean()
	case c == '@':
		err = p.date()
	case c == '%':
		err = p.displayString()
	default:
		err = ErrSyntax
	}
	return str, isStr, err
}

// number parses an Integer or Decimal (Section 4.2.4); decimal reports
// which.
func (p *parser) number() (decimal bool, err error) {
	if p.s[p.i] == '-' {
		p.i++
	}
	if p.eof() || !isDigit(p.s[p.i]) {
		return false, ErrSyntax
	}
	n, frac := 0, -1 // characters of input_number; digits after '.'
	for !p.eof() {
		c := p.s[p.i]
		switch {
		case isDigit(c):
			n++
			if frac >= 0 {
				frac++
			}
		case c == '.' && !decimal:
			if n > 12 {
				return false, ErrSyntax
			}
			decimal, frac = true, 0
			n++
		default:
			goto done
		}
		p.i++
		if (!decimal && n > 15) || (decimal && n > 16) {
			return false, ErrSyntax
		}
	}
done:
	if decimal && (frac == 0 || frac > 3) {
		return false, ErrSyntax
	}
	return decimal, nil
}

// str parses a String (Section 4.2.5).
func (p *parser) str() (string, error) {
	p.i++ // '"'
	start := p.i
	var b []byte // only when there are escapes
	for !p.eof() {
		c := p.s[p.i]
		p.i++
		switch {
		case c == '\\':
			if p.eof() {
				return "", ErrSyntax
			}
			n := p.s[p.i]
			if n != '"' && n != '\\' {
				return "", ErrSyntax
			}
			if b == nil {
				b = append(make([]byte, 0, p.i-start+8), p.s[start:p.i-1]...)
			}
			b = append(b, n)
			p.i++
		case c == '"':
			if b != nil {
				return string(b), nil
			}
			return p.s[start : p.i-1], nil
		case c < 0x20 || c > 0x7e:
			return "", ErrSyntax
		default:
			if b != nil {
				b = append(b, c)
			}
		}
	}
	return "", ErrSyntax
}

// token parses a Token (Section 4.2.6); its first character was checked.
func (p *parser) token() {
	p.i++
	for !p.eof() {
		c := p.s[p.i]
		if !isTChar(c) && c != ':' && c != '/' {
			return
		}
		p.i++
	}
}

// byteSeq parses a Byte Sequence (Section 4.2.7), padding required.
func (p *parser) byteSeq() error {
	p.i++ // ':'
	end := strings.IndexByte(p.s[p.i:], ':')
	if end < 0 {
		return ErrSyntax
	}
	b64 := p.s[p.i : p.i+end]
	for i := 0; i < len(b64); i++ {
		c := b64[i]
		if !isAlpha(c) && !isDigit(c) && c != '+' && c != '/' && c != '=' {
			return ErrSyntax
		}
	}
	if !validBase64(b64) {
		return ErrSyntax
	}
	p.i += end + 1
	return nil
}

// validBase64 reports whether s (of base64 alphabet characters) is
// padded base64 that encoding/base64's StdEncoding decodes, without
// decoding it.
func validBase64(s string) bool {
	if len(s)%4 != 0 {
		return false
	}
	n := len(s)
	for pad := 0; pad < 2 && n > 0 && s[n-1] == '='; pad++ {
		n--
	}
	return strings.IndexByte(s[:n], '=') < 0
}

// boolean parses a Boolean (Section 4.2.8).
func (p *parser) boolean() error {
	p.i++ // '?'
	if p.eof() || (p.s[p.i] != '0' && p.s[p.i] != '1') {
		return ErrSyntax
	}
	p.i++
	return nil
}

// date parses a Date (Section 4.2.9): an Integer after '@'.
func (p *parser) date() error {
	p.i++ // '@'
	if p.eof() {
		return ErrSyntax
	}
	decimal, err := p.number()
	if err != nil || decimal {
		return ErrSyntax
	}
	return nil
}

// displayString parses a Display String (Section 4.2.10).
func (p *parser) displayString() error {
	if len(p.s)-p.i < 2 || p.s[p.i+1] != '"' {
		return ErrSyntax
	}
	p.i += 2
	var buf [64]byte
	b := buf[:0]
	for !p.eof() {
		c := p.s[p.i]
		p.i++
		switch {
		case c < 0x20 || c > 0x7e:
			return ErrSyntax
		case c == '%':
			if len(p.s)-p.i < 2 {
				return ErrSyntax
			}
			hi, ok1 := unhex(p.s[p.i])
			lo, ok2 := unhex(p.s[p.i+1])
			if !ok1 || !ok2 {
				return ErrSyntax
			}
			b = append(b, hi<<4|lo)
			p.i += 2
		case c == '"':
			if !utf8.Valid(b) {
				return ErrSyntax
			}
			return nil
		default:
			b = append(b, c)
		}
	}
	return ErrSyntax
}

func unhex(c byte) (byte, bool) {
	switch {
	case isDigit(c):
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

func isDigit(c byte) bool   { return c >= '0' && c <= '9' }
func isLCAlpha(c byte) bool { return c >= 'a' && c <= 'z' }
func isAlpha(c byte) bool   { return isLCAlpha(c) || (c >= 'A' && c <= 'Z') }

// isTChar: RFC 9110, Section 5.6.2.
func isTChar(c byte) bool {
	if isAlpha(c) || isDigit(c) {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
