package quicwt

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"net"
	"testing"
	"time"
)

func TestSelfSignedCertificate(t *testing.T) {
	for _, bad := range []time.Duration{0, -time.Hour, MaxHashValidity + time.Second} {
		if _, err := SelfSignedCertificate(bad); err == nil {
			t.Errorf("validity %v accepted", bad)
		}
	}
	c, err := SelfSignedCertificate(MaxHashValidity, "example.test", "[2001:db8::1]", "192.0.2.7", " ")
	if err != nil {
		t.Fatal(err)
	}
	leaf := c.Leaf
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d != MaxHashValidity {
		t.Errorf("validity %v", d)
	}
	if !leaf.NotBefore.Before(time.Now()) {
		t.Errorf("NotBefore %v is not in the past", leaf.NotBefore)
	}
	if k, ok := c.PrivateKey.(*ecdsa.PrivateKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("key %T, want ECDSA P-256", c.PrivateKey)
	}
	for _, h := range []string{"localhost", "example.test", "127.0.0.1", "::1", "2001:db8::1", "192.0.2.7"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("host %s: %v", h, err)
		}
	}
	if len(leaf.IPAddresses) != 4 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("IP addresses %v", leaf.IPAddresses)
	}
	if CertificateHash(leaf) != sha256.Sum256(c.Certificate[0]) {
		t.Error("CertificateHash is not the SHA-256 of the DER")
	}
	if err := verifyPinned(nil, nil); err == nil {
		t.Error("no certificate pinned")
	}
}
