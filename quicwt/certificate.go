package quicwt

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"
)

// MaxHashValidity is the longest validity browsers accept for a
// certificate pinned by hash (the W3C WebTransport API's
// serverCertificateHashes; Chromium and Firefox check that NotAfter -
// NotBefore is at most 14 days).
const MaxHashValidity = 14 * 24 * time.Hour

// SelfSignedCertificate makes a certificate a browser accepts through
// serverCertificateHashes, as Dialer.CertificateHashes does: ECDSA P-256
// (browsers refuse RSA there), self-signed, for localhost, 127.0.0.1, ::1
// and hosts (names or IP addresses), valid from an hour ago (against clock
// skew) for validity in all, at most MaxHashValidity. The certificate's
// Leaf is set; CertificateHash gives the hash to pin.
func SelfSignedCertificate(validity time.Duration, hosts ...string) (tls.Certificate, error) {
	if validity <= 0 || validity > MaxHashValidity {
		return tls.Certificate{}, fmt.Errorf("quicwt: certificate validity %v out of range (0, 14 days]", validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	notBefore := time.Now().Add(-time.Hour).Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "quicwt"},
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range hosts {
		h = strings.Trim(strings.TrimSpace(h), "[]")
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// CertificateHash is the SHA-256 of a certificate's DER encoding: what
// Dialer.CertificateHashes and the browsers' serverCertificateHashes pin.
func CertificateHash(c *x509.Certificate) [32]byte { return sha256.Sum256(c.Raw) }
