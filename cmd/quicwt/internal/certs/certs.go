// Package certs makes, loads and fingerprints the certificates of the quicwt
// command: ECDSA P-256, at most 14 days, usable with serverCertificateHashes.
package certs

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/quicwt/quicwt/quicwt"
)

// MaxHashValidity is the longest validity browsers accept for a
// certificate pinned with serverCertificateHashes.
const MaxHashValidity = quicwt.MaxHashValidity

// DefaultValidity is what we generate: one day of margin below the limit.
const DefaultValidity = 13 * 24 * time.Hour

// Generate makes a self-signed ECDSA P-256 certificate for localhost,
// 127.0.0.1, ::1 and the extra host names or IPs, valid from now for
// validity (quicwt.SelfSignedCertificate).
func Generate(hosts []string, validity time.Duration) (tls.Certificate, error) {
	return quicwt.SelfSignedCertificate(validity, hosts...)
}

// Load reads a PEM certificate chain and key.
func Load(certFile, keyFile string) (tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return tls.Certificate{}, err
		}
	}
	return c, nil
}

// CertPEM and KeyPEM encode a certificate and its key (PKCS #8).
func CertPEM(c tls.Certificate) []byte {
	var out []byte
	for _, der := range c.Certificate {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return out
}

func KeyPEM(c tls.Certificate) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Hashes are the fingerprints of a leaf certificate.
type Hashes struct {
	DER     [32]byte // SHA-256 of the DER certificate: serverCertificateHashes
	SPKI    [32]byte // SHA-256 of the SubjectPublicKeyInfo: --ignore-certificate-errors-spki-list
	Hex     string
	Base64  string
	SPKIB64 string
}

func HashesOf(leaf *x509.Certificate) Hashes {
	h := Hashes{DER: sha256.Sum256(leaf.Raw), SPKI: sha256.Sum256(leaf.RawSubjectPublicKeyInfo)}
	h.Hex = hex.EncodeToString(h.DER[:])
	h.Base64 = base64.StdEncoding.EncodeToString(h.DER[:])
	h.SPKIB64 = base64.StdEncoding.EncodeToString(h.SPKI[:])
	return h
}

// Pinnable says whether browsers accept leaf through
// serverCertificateHashes: ECDSA (we check P-256/P-384) or Ed25519, and a
// validity of at most 14 days.
func Pinnable(leaf *x509.Certificate) bool {
	if leaf.NotAfter.Sub(leaf.NotBefore) > MaxHashValidity {
		return false
	}
	switch leaf.PublicKeyAlgorithm {
	case x509.ECDSA, x509.Ed25519:
		return true
	}
	return false
}

// ParseHash accepts a SHA-256 as 64 hex digits (colons allowed) or
// standard/URL base64 (padding optional).
func ParseHash(s string) ([32]byte, error) {
	var out [32]byte
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(strings.ReplaceAll(s, ":", "")); err == nil && len(b) == 32 {
		copy(out[:], b)
		return out, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == 32 {
			copy(out[:], b)
			return out, nil
		}
	}
	return out, errors.New("bad certificate hash " + fmt.Sprintf("%q", s) + ": want a SHA-256 in hex (64 digits) or base64")
}
