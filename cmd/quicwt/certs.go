package main

import (
	"crypto/tls"
	"crypto/x509"
	"time"

	"github.com/quicwt/quicwt/cmd/quicwt/internal/certs"
)

// The certificate helpers live in internal/certs, shared with the demo
// package; these are the names the subcommands use.

type certHashes = certs.Hashes

const (
	maxHashValidity = certs.MaxHashValidity
	defaultValidity = certs.DefaultValidity
)

func genCert(hosts []string, validity time.Duration) (tls.Certificate, error) {
	return certs.Generate(hosts, validity)
}

func loadCert(certFile, keyFile string) (tls.Certificate, error) {
	return certs.Load(certFile, keyFile)
}

func certPEM(c tls.Certificate) []byte           { return certs.CertPEM(c) }
func keyPEM(c tls.Certificate) ([]byte, error)   { return certs.KeyPEM(c) }
func hashesOf(leaf *x509.Certificate) certHashes { return certs.HashesOf(leaf) }
func hashPinnable(leaf *x509.Certificate) bool   { return certs.Pinnable(leaf) }
func parseCertHash(s string) ([32]byte, error)   { return certs.ParseHash(s) }
