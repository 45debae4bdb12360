package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlog"
	"github.com/quic-go/quic-go/qlogwriter"

	"github.com/quicwt/quicwt/quicwt"
)

// flagSet is a command's flag set with its -h help text.
type flagSet struct {
	*flag.FlagSet
	help string
}

// newFlags returns a flag set whose errors are reported by parseFlags as
// one line. help is printed for -h, after the flag defaults.
func newFlags(name, help string) *flagSet {
	fs := flag.NewFlagSet("quicwt "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flagSet{FlagSet: fs, help: help}
}

// parseFlags parses args. It returns (-1) to go on, or the exit code: 0
// after printing -h help to stdout, 2 after printing a one-line error.
func parseFlags(fs *flagSet, args []string, stdout, stderr io.Writer) int {
	err := fs.Parse(args)
	if err == nil {
		return -1
	}
	if errors.Is(err, flag.ErrHelp) {
		fs.printHelp(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "%s: %v (run '%s -h')\n", fs.Name(), oneLine(err), fs.Name())
	return 2
}

func (fs *flagSet) printHelp(w io.Writer) {
	fmt.Fprintln(w, strings.TrimSpace(fs.help))
	fmt.Fprintf(w, "\nflags:\n")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// fail prints a one-line error for command name and returns exit code 1.
func fail(stderr io.Writer, name string, err error) int {
	fmt.Fprintf(stderr, "quicwt %s: %s\n", name, oneLine(err))
	return 1
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// newLogger returns a text slog logger at the named level.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("bad -log-level %q (want debug, info, warn or error)", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// qlogTracer returns a quic.Config Tracer that writes one qlog file
// (JSON-SEQ, .sqlog) per connection into dir, named like quic-go's own
// qlog.DefaultConnectionTracer: <odcid>_<client|server>.sqlog.
func qlogTracer(dir string, log *slog.Logger) (func(context.Context, bool, quic.ConnectionID) qlogwriter.Trace, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return func(_ context.Context, isClient bool, connID quic.ConnectionID) qlogwriter.Trace {
		label := "server"
		if isClient {
			label = "client"
		}
		path := filepath.Join(dir, fmt.Sprintf("%s_%s.sqlog", connID, label))
		f, err := os.Create(path)
		if err != nil {
			log.Warn("cannot create qlog file", "path", path, "err", err)
			return nil
		}
		log.Debug("qlog file", "path", path)
		fs := qlogwriter.NewConnectionFileSeq(&bufferedFile{Writer: bufio.NewWriter(f), f: f}, isClient, connID, append([]string{qlog.EventSchema}, quicwt.QlogSchemas...))
		go fs.Run()
		return fs
	}, nil
}

type bufferedFile struct {
	*bufio.Writer
	f *os.File
}

func (b *bufferedFile) Close() error {
	err := b.Flush()
	if cerr := b.f.Close(); err == nil {
		err = cerr
	}
	return err
}
