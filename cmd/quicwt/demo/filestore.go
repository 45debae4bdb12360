package demo

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// fileStore is an append-only log of JSON lines {"user":U,"clicks":N}, one
// per click, each written and fsynced before Increment returns, so an
// acknowledged click survives a crash. At open the log is replayed (the
// last record of a user wins; a torn last line from an interrupted write
// is ignored, since its click was never acknowledged) and compacted to one
// line per user with write-temp, fsync, rename, fsync of the directory.
type fileStore struct {
	mu     sync.Mutex
	path   string
	f      *os.File
	clicks map[string]int64
	buf    []byte
}

const scoreFile = "clicker-scores.jsonl"

type scoreRecord struct {
	User   string `json:"user"`
	Clicks int64  `json:"clicks"`
}

// OpenFileStore opens (or creates) the score log in dir.
func OpenFileStore(dir string) (ScoreStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, scoreFile)
	s := &fileStore{path: path, clicks: map[string]int64{}}
	if f, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			var r scoreRecord
			if json.Unmarshal(sc.Bytes(), &r) != nil || r.Clicks < 0 {
				continue // torn write: never acknowledged
			}
			s.clicks[r.User] = r.Clicks
		}
		err := sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err := s.compact(); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	s.f = f
	return s, nil
}

// compact rewrites the log with one record per user, atomically.
func (s *fileStore) compact() error {
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for u, n := range s.clicks {
		b, _ := json.Marshal(scoreRecord{User: u, Clicks: n})
		w.Write(append(b, '\n'))
	}
	err = w.Flush()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(s.path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (s *fileStore) Increment(user string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return 0, errors.New("score store closed")
	}
	n := s.clicks[user]
	b, _ := json.Marshal(scoreRecord{User: user, Clicks: n + 1})
	s.buf = append(append(s.buf[:0], b...), '\n')
	_, err := s.f.Write(s.buf)
	if err == nil {
		err = s.f.Sync()
	}
	if err != nil {
		// A partial line may be on disk: appending after it would glue the
		// next record to it. Stop writing; the torn line is dropped at the
		// next open, and its click was never acknowledged.
		s.f.Close()
		s.f = nil
		return 0, fmt.Errorf("score store %s failed, restart to recover: %w", s.path, err)
	}
	s.clicks[user] = n + 1
	return n, nil
}

func (s *fileStore) Score(user string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clicks[user], nil
}

func (s *fileStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

func (s *fileStore) Describe() string { return "file " + s.path + " (append-only, fsync per click)" }
