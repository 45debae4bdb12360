module github.com/quicwt/quicwt/cmd/quicwt

go 1.26.0

require (
	github.com/quic-go/quic-go v0.64.1
	github.com/quicwt/quicwt v0.0.0-00010101000000-000000000000
)

require (
	github.com/quic-go/qpack v0.6.0 // indirect
	golang.org/x/crypto v0.54.0 // indirect
	golang.org/x/net v0.56.0 // indirect
	golang.org/x/sys v0.47.0 // indirect
)

replace github.com/quicwt/quicwt => ../..
