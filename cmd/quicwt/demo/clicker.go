package demo

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/quicwt/quicwt/quicwt"
)

// The clicker (seed S2).
//
// Request: {"type":"increment","username":"John Doe"} (UTF-8 JSON), on a
// datagram or on a bidirectional stream. Reply on the same channel:
// {"status":200,"score":N} or {"status":400} for anything malformed
// (empty, not JSON, not an object, type other than "increment", missing or
// empty username). A bad message never ends the session.
//
// Scores start at 0 for a user's first click, as in the original (a
// counter returning 0, 1, 2, ...): N is the number of clicks that user had
// before this one. Scores are shared by every session and connection.
//
// Stream framing: the original wrote one message per click on one
// long-lived bidirectional stream and relied on one write being one read,
// which QUIC does not promise. Here each message, in both directions, is
// one JSON object followed by "\n" (newline-delimited JSON; JSON text
// never contains a raw newline). A final message without "\n" before FIN
// is accepted too. Datagrams carry exactly one JSON object, no newline
// needed. A line longer than maxClickLine is answered with
// {"status":400} and skipped.
//
// A reply is sent only after the new score is durable in the store. When
// the store cannot be reached for now (the Redis store while Redis is
// down), the click is not counted and the reply is {"status":503}; the
// page shows it and the user may click again.

const maxClickLine = 4096

type clicker struct {
	store ScoreStore
	log   *slog.Logger
}

type clickRequest struct {
	Type     *string `json:"type"`
	Username *string `json:"username"`
}

type clickReply struct {
	Status int    `json:"status"`
	Score  *int64 `json:"score,omitempty"`
}

var (
	badRequest  = []byte(`{"status":400}`)
	unavailable = []byte(`{"status":503}`) // the store is away (Redis down)
)

// handle answers one message.
func (c *clicker) handle(msg []byte, log *slog.Logger) []byte {
	var req clickRequest
	dec := json.NewDecoder(bytes.NewReader(msg))
	if err := dec.Decode(&req); err != nil || dec.More() || req.Type == nil || *req.Type != "increment" || req.Username == nil || *req.Username == "" {
		log.Debug("malformed click", "msg", truncate(msg, 100))
		return badRequest
	}
	score, err := c.store.Increment(*req.Username)
	if errors.Is(err, ErrUnavailable) {
		// The store logs its own state changes (once, not per click).
		log.Debug("score store unavailable", "err", err)
		return unavailable
	}
	if err != nil {
		log.Error("cannot store score", "err", err)
		return []byte(`{"status":500}`)
	}
	b, _ := json.Marshal(clickReply{Status: 200, Score: &score})
	return b
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

func (c *clicker) serve(sess *quicwt.Session, log *slog.Logger) {
	ctx := sess.Context()
	go func() {
		for {
			d, err := sess.ReceiveDatagram(ctx)
			if err != nil {
				return
			}
			go func() {
				if err := sess.SendDatagram(c.handle(d, log)); err != nil {
					log.Debug("datagram reply failed", "err", err)
				}
			}()
		}
	}()
	go func() {
		// Unidirectional streams are not part of the protocol.
		for {
			s, err := sess.AcceptUniStream(ctx)
			if err != nil {
				return
			}
			s.CancelRead(0)
		}
	}()
	for {
		s, err := sess.AcceptStream(ctx)
		if err != nil {
			return
		}
		go c.serveStream(s, log)
	}
}

// serveStream answers newline-delimited JSON messages on one stream, in
// order, until FIN; then it FINs too.
func (c *clicker) serveStream(s *quicwt.Stream, log *slog.Logger) {
	br := bufio.NewReaderSize(s, maxClickLine)
	for {
		line, tooLong, err := readLine(br, maxClickLine)
		if len(line) > 0 || tooLong {
			reply := badRequest
			if !tooLong {
				reply = c.handle(line, log)
			}
			_ = s.SetWriteDeadline(time.Now().Add(streamTimeout))
			if _, werr := s.Write(append(reply, '\n')); werr != nil {
				log.Debug("stream reply failed", "err", werr)
				s.CancelRead(0)
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				s.Close()
			} else {
				s.CancelWrite(0)
			}
			return
		}
	}
}

// readLine returns the next line without its "\n" (and a trailing "\r").
// A line longer than max is consumed and reported as tooLong. At the end
// of the stream it returns the last unterminated line with io.EOF.
func readLine(br *bufio.Reader, max int) (line []byte, tooLong bool, err error) {
	for {
		frag, err := br.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(frag) > max+1 {
				tooLong, line = true, nil
			} else {
				line = append(line, frag...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil || len(frag) > 0 && frag[len(frag)-1] == '\n' {
			line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
			if err == nil && len(bytes.TrimSpace(line)) == 0 && !tooLong {
				// An empty line is not a message: skip it.
				line = line[:0]
				continue
			}
			return line, tooLong, err
		}
	}
}
