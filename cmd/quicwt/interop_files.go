package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/quicwt/quicwt/quicwt"
)

// readServed reads <www>/<endpoint>/<file>.
func (c *interopConfig) readServed(endpoint, file string) ([]byte, error) {
	return os.ReadFile(filepath.Join(c.www, endpoint, strings.TrimPrefix(file, "/")))
}

// save writes <downloads>/<endpoint>/<basename>, unless ctx is done: a
// file that arrives after the timeout is not stored.
func (c *interopConfig) save(ctx context.Context, endpoint, name string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("not storing %s: %w", name, err)
	}
	full := filepath.Join(c.downloads, endpoint, filepath.Base(name))
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return err
	}
	return os.WriteFile(full, data, 0o644)
}

func (c *interopConfig) writeProtocol(proto string) error {
	if err := os.MkdirAll(c.downloads, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.downloads, "negotiated_protocol.txt"), []byte(proto), 0o644)
}

// sendFile writes the served file name to w: its bytes, or with push
// the PUSH message carrying them.
func (c *interopConfig) sendFile(log *slog.Logger, w io.Writer, endpoint, name string, push bool) {
	payload, err := c.readServed(endpoint, name)
	if err != nil {
		log.Error("failed to read file", "err", err)
		return
	}
	log.Info("sending file", "filename", name, "bytes", len(payload))
	if push {
		payload = pushMessage(name, payload)
	}
	if _, err := w.Write(payload); err != nil {
		log.Error("failed to send file", "err", err)
	}
}

// serveFiles answers GET requests on a session until it ends (test case
// "transfer"): a bidirectional stream gets the file's bytes then FIN, a
// unidirectional stream a new unidirectional stream with PUSH, a datagram
// a PUSH datagram.
func (c *interopConfig) serveFiles(sess *quicwt.Session, endpoint string) {
	ctx := sess.Context()
	log := c.log.With("endpoint", endpoint)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			s, err := sess.AcceptStream(ctx)
			if err != nil {
				return
			}
			wg.Go(func() {
				name, err := readGet(s)
				if err != nil {
					s.CancelRead(1234)
					log.Error(err.Error())
					return
				}
				defer s.Close()
				c.sendFile(log, s, endpoint, name, false)
			})
		}
	})
	wg.Go(func() {
		for {
			s, err := sess.AcceptUniStream(ctx)
			if err != nil {
				return
			}
			wg.Go(func() {
				name, err := readGet(s)
				if err != nil {
					log.Error(err.Error())
					return
				}
				out, err := sess.OpenUniStreamSync(ctx)
				if err != nil {
					log.Error("failed to open unidirectional stream", "err", err)
					return
				}
				defer out.Close()
				c.sendFile(log, out, endpoint, name, true)
			})
		}
	})
	wg.Go(func() {
		for {
			data, err := sess.ReceiveDatagram(ctx)
			if err != nil {
				return
			}
			name, err := parseGet(data)
			if err != nil {
				log.Error("failed to parse datagram request", "err", err)
				continue
			}
			payload, err := c.readServed(endpoint, name)
			if err != nil {
				log.Error("failed to read file for datagram response", "filename", name, "err", err)
				continue
			}
			msg := pushMessage(name, payload)
			log.Info("sending datagram response", "filename", name, "bytes", len(msg))
			if err := sess.SendDatagram(msg); err != nil {
				log.Error("failed to send datagram response", "err", err)
				var tl *quicwt.DatagramTooLargeError
				if !errors.As(err, &tl) {
					return
				}
			}
		}
	})
	wg.Wait()
}

// fetchFiles requests files on a session with the stream type of the test
// case, and stores them under <downloads>/<endpoint>/.
func (c *interopConfig) fetchFiles(ctx context.Context, sess *quicwt.Session, endpoint string, files []string, kind string) error {
	log := c.log.With("endpoint", endpoint)
	errs := make(chan error, 2*len(files)+1)
	var wg sync.WaitGroup
	switch kind {
	case "unidirectional":
		for _, f := range files {
			log.Info("requesting file", "file", f)
			wg.Go(func() {
				s, err := sess.OpenUniStreamSync(ctx)
				if err == nil {
					defer bindStream(ctx, s.SetWriteDeadline)()
					_, err = s.Write([]byte(getPrefix + f))
					if cerr := s.Close(); err == nil {
						err = cerr
					}
				}
				if err != nil {
					errs <- fmt.Errorf("failed to request file %s: %w", f, err)
				}
			})
		}
		for range files {
			wg.Go(func() {
				s, err := sess.AcceptUniStream(ctx)
				if err != nil {
					errs <- err
					return
				}
				defer bindStream(ctx, s.SetReadDeadline)()
				data, err := io.ReadAll(s)
				if err != nil {
					errs <- err
					return
				}
				name, payload, err := parsePush(data)
				if err != nil {
					errs <- err
					return
				}
				log.Info("received PUSH", "filename", name, "bytes", len(payload))
				if err := c.save(ctx, endpoint, name, payload); err != nil {
					errs <- err
				}
			})
		}
	case "bidirectional":
		for _, f := range files {
			log.Info("requesting file", "file", f)
			wg.Go(func() {
				s, err := sess.OpenStreamSync(ctx)
				if err != nil {
					errs <- err
					return
				}
				defer bindStream(ctx, s.SetDeadline)()
				_, err = s.Write([]byte(getPrefix + f))
				if cerr := s.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					errs <- fmt.Errorf("failed to request file %s: %w", f, err)
					return
				}
				data, err := io.ReadAll(s)
				if err != nil {
					errs <- fmt.Errorf("failed to read response: %w", err)
					return
				}
				if err := c.save(ctx, endpoint, f, data); err != nil {
					errs <- err
				}
			})
		}
	case "datagram":
		wg.Go(func() {
			for _, f := range files {
				log.Info("requesting file (datagram)", "file", f)
				if err := sess.SendDatagram([]byte(getPrefix + f)); err != nil {
					errs <- fmt.Errorf("failed to send GET datagram for %s: %w", f, err)
					return
				}
				select {
				case <-time.After(20 * time.Millisecond):
				case <-ctx.Done():
					errs <- fmt.Errorf("sending GET datagrams: %w", ctx.Err())
					return
				}
			}
		})
		wg.Go(func() {
			for i := range len(files) {
				data, err := sess.ReceiveDatagram(ctx)
				if err != nil {
					errs <- fmt.Errorf("receiving PUSH datagram %d/%d: %w", i+1, len(files), err)
					return
				}
				name, payload, err := parsePush(data)
				if err != nil {
					errs <- err
					return
				}
				log.Info("received PUSH datagram", "filename", name, "bytes", len(payload))
				if err := c.save(ctx, endpoint, name, payload); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// bindStream makes the end of ctx interrupt a stream's blocking reads or
// writes, by moving the deadline that setDeadline sets into the past. The
// returned function undoes the binding.
func bindStream(ctx context.Context, setDeadline func(time.Time) error) (stop func() bool) {
	return context.AfterFunc(ctx, func() { _ = setDeadline(time.Now()) })
}
