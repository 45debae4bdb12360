// Command quicwt is the command line of the quicwt WebTransport library:
// the demo server, a client, a certificate tool, the WebTransport interop
// runner endpoint and the conformance checker, as subcommands.
//
//	quicwt serve              run the demo server (https://127.0.0.1:4433, pages on http://localhost:8080)
//	quicwt client URL         open a session and pipe stdin/stdout over a stream
//	quicwt cert               write a certificate usable with serverCertificateHashes
//	quicwt interop            the WebTransport interop runner endpoint
//	quicwt check URL          check a WebTransport server's protocol conformance
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
)

// command is one subcommand. run gets the arguments after the subcommand
// name and returns the process exit code.
type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{}

// register adds a subcommand; each lives in its own file and registers
// itself from init.
func register(c command) { commands[c.name] = c }

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: quicwt <command> [flags] [args]\n\ncommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nRun 'quicwt <command> -h' for a command's flags and examples.\n")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "quicwt: unknown command %q (run 'quicwt help')\n", args[0])
		return 2
	}
	return c.run(args[1:], stdout, stderr)
}
