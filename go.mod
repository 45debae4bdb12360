module github.com/quicwt/quicwt

go 1.26
