package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

func init() {
	register(command{name: "cert", summary: "write a certificate usable with serverCertificateHashes", run: runCert})
}

const certHelp = `
usage: quicwt cert [flags]

Writes a self-signed ECDSA P-256 certificate and its key (PEM, PKCS #8),
valid for at most 14 days (the limit of the WebTransport API's
serverCertificateHashes), for localhost, 127.0.0.1 and ::1 plus any -host
names, and prints its hashes:
  - SHA-256 of the DER certificate, in hex and base64: the value of
    serverCertificateHashes in new WebTransport(url, {serverCertificateHashes:
    [{algorithm: "sha-256", value: <bytes>}]}) and of 'quicwt client -certhash';
  - base64 SHA-256 of the public key (SPKI), for Chrome's older
    --ignore-certificate-errors-spki-list flag.

examples:
  quicwt cert
  quicwt cert -cert /tmp/wt.pem -key /tmp/wt.key -host myhost.lan -host 192.168.1.5
  quicwt serve -cert cert.pem -key key.pem
`

func runCert(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("cert", certHelp)
	certFile := fs.String("cert", "cert.pem", "certificate output `file`")
	keyFile := fs.String("key", "key.pem", "private key output `file`")
	days := fs.Int("days", 13, "validity in `days` (1 to 14)")
	force := fs.Bool("force", false, "overwrite existing files")
	var hosts multiFlag
	fs.Var(&hosts, "host", "extra DNS `name` or IP address for the certificate (repeatable)")
	if code := parseFlags(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "quicwt cert: unexpected argument %q (run 'quicwt cert -h')\n", fs.Arg(0))
		return 2
	}
	if *days < 1 || *days > 14 {
		fmt.Fprintf(stderr, "quicwt cert: -days %d out of range: browsers accept at most 14 days\n", *days)
		return 2
	}
	c, err := genCert(hosts, time.Duration(*days)*24*time.Hour)
	if err != nil {
		return fail(stderr, "cert", err)
	}
	kp, err := keyPEM(c)
	if err != nil {
		return fail(stderr, "cert", err)
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if !*force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_EXCL
	}
	write := func(name string, data []byte, mode os.FileMode) error {
		f, err := os.OpenFile(name, flags, mode)
		if err != nil {
			if errors.Is(err, os.ErrExist) {
				return fmt.Errorf("%s exists (use -force to overwrite)", name)
			}
			return err
		}
		if _, err := f.Write(data); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	if err := write(*keyFile, kp, 0o600); err != nil {
		return fail(stderr, "cert", err)
	}
	if err := write(*certFile, certPEM(c), 0o644); err != nil {
		return fail(stderr, "cert", err)
	}
	h := hashesOf(c.Leaf)
	fmt.Fprintf(stdout, "wrote %s and %s: ECDSA P-256, valid %s to %s, for %v %v\n",
		*certFile, *keyFile, c.Leaf.NotBefore.UTC().Format(time.RFC3339), c.Leaf.NotAfter.UTC().Format(time.RFC3339), c.Leaf.DNSNames, c.Leaf.IPAddresses)
	fmt.Fprintf(stdout, "certificate SHA-256 (hex):    %s\n", h.Hex)
	fmt.Fprintf(stdout, "certificate SHA-256 (base64): %s\n", h.Base64)
	fmt.Fprintf(stdout, "public key SPKI SHA-256 (base64, for --ignore-certificate-errors-spki-list): %s\n", h.SPKIB64)
	return 0
}
