package demo

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quicwt/quicwt/cmd/quicwt/internal/certs"
)

func TestClicker(t *testing.T) {
	d := newTestDemo(t, NewMemoryStore(), ChatOptions{})
	sess, _ := dialDemo(t, d, "/clicker", nil)
	ctx := testCtx(t)
	click := func(u string) []byte { return []byte(`{"type":"increment","username":"` + u + `"}`) }

	// Datagram clicks: scores 0, 1 for the first two clicks.
	for i, want := range []string{`{"status":200,"score":0}`, `{"status":200,"score":1}`} {
		if got := roundTripDatagram(t, ctx, sess, click("dg")); string(got) != want {
			t.Errorf("datagram click %d: %s, want %s", i, got, want)
		}
	}
	if got := roundTripDatagram(t, ctx, sess, []byte("not json")); string(got) != `{"status":400}` {
		t.Errorf("bad datagram: %s", got)
	}

	// Stream clicks: newline-delimited JSON on one long-lived stream. One
	// write holding two messages, one message split over two writes,
	// malformed messages in between: each gets its reply, in order.
	s, err := sess.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(s)
	exchange := func(writes []string, want []string) {
		t.Helper()
		for _, w := range writes {
			if _, err := s.Write([]byte(w)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		for _, w := range want {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("reading reply (want %s): %v", w, err)
			}
			if strings.TrimSuffix(line, "\n") != w {
				t.Errorf("stream reply %q, want %s", line, w)
			}
		}
	}
	exchange([]string{string(click("st")) + "\n" + string(click("st")) + "\n"},
		[]string{`{"status":200,"score":0}`, `{"status":200,"score":1}`})
	c := string(click("st"))
	exchange([]string{c[:10], c[10:] + "\n"}, []string{`{"status":200,"score":2}`})
	exchange([]string{
		"{\n",     // truncated JSON
		"hello\n", // not JSON
		`{"type":"decrement","username":"x"}` + "\n", // wrong type
		`{"type":"increment"}` + "\n",                // no username
		`{"type":"increment","username":""}` + "\n",
		`{"type":"increment","username":5}` + "\n",
		`[1,2]` + "\n",
		strings.Repeat("x", maxClickLine+10) + "\n", // too long
	}, []string{`{"status":400}`, `{"status":400}`, `{"status":400}`, `{"status":400}`, `{"status":400}`, `{"status":400}`, `{"status":400}`, `{"status":400}`})
	// The session and the stream survive bad input.
	exchange([]string{c + "\n"}, []string{`{"status":200,"score":3}`})
	// A last message without newline is answered before the FIN.
	exchange([]string{c}, nil)
	s.Close()
	line, err := br.ReadString('\n')
	if err != nil || line != `{"status":200,"score":4}`+"\n" {
		t.Fatalf("last reply %q, %v", line, err)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("stream not ended after client FIN")
	}
	if got := roundTripDatagram(t, ctx, sess, click("dg")); string(got) != `{"status":200,"score":2}` {
		t.Errorf("datagram after stream: %s", got)
	}
	if sess.Err() != nil {
		t.Fatalf("session ended: %v", sess.Err())
	}
}

// Many sessions click at once: no lost updates (run with -race).
func TestClickerConcurrent(t *testing.T) {
	d := newTestDemo(t, NewMemoryStore(), ChatOptions{})
	const sessions, clicks = 8, 25
	var wg sync.WaitGroup
	for i := 0; i < sessions; i++ {
		sess, _ := dialDemo(t, d, "/clicker", nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := testCtx(t)
			s, err := sess.OpenStreamSync(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			s.SetReadDeadline(time.Now().Add(15 * time.Second))
			br := bufio.NewReader(s)
			for j := 0; j < clicks; j++ {
				s.Write([]byte(`{"type":"increment","username":"shared"}` + "\n"))
				if _, err := br.ReadString('\n'); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got, err := d.cfg.Store.Score("shared"); err != nil || got != sessions*clicks {
		t.Fatalf("score %d, want %d", got, sessions*clicks)
	}
}

func TestClickerScoresSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	c, err := certs.Generate(nil, certs.DefaultValidity)
	if err != nil {
		t.Fatal(err)
	}
	run := func(clicks int, wantFirst int) {
		t.Helper()
		st, err := OpenFileStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		d := startTestDemoWith(t, Config{Cert: c, Store: st})
		sess, _ := dialDemo(t, d, "/clicker", nil)
		ctx := testCtx(t)
		for i := 0; i < clicks; i++ {
			got := roundTripDatagram(t, ctx, sess, []byte(`{"type":"increment","username":"persist"}`))
			want := `{"status":200,"score":` + itoa(wantFirst+i) + `}`
			if string(got) != want {
				t.Fatalf("click %d: %s, want %s", i, got, want)
			}
		}
		// Graceful shutdown: the client closes its session when asked to
		// drain, so Shutdown returns long before its deadline.
		go func() {
			<-sess.Draining()
			sess.Close()
		}()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		if err := d.Shutdown(sctx); err != nil {
			t.Fatalf("shutdown: %v", err)
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Errorf("shutdown took %v", el)
		}
		if sess.Err() == nil {
			t.Error("session still open after shutdown")
		}
	}
	run(3, 0)
	run(2, 3)
	// A torn last line (a write interrupted by a crash, never
	// acknowledged) is ignored; the acknowledged scores stay.
	f, err := os.OpenFile(filepath.Join(dir, scoreFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"user":"persist","cli`)
	f.Close()
	run(1, 5)
	st, err := OpenFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if got, err := st.Score("persist"); err != nil || got != 6 {
		t.Fatalf("score after restarts %d, want 6", got)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
