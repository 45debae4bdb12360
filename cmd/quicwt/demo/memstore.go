package demo

import "sync"

// memoryStore keeps the scores in a map: lost on exit.
type memoryStore struct {
	mu     sync.Mutex
	clicks map[string]int64
}

// NewMemoryStore returns an empty in-memory store.
func NewMemoryStore() ScoreStore { return &memoryStore{clicks: map[string]int64{}} }

func (m *memoryStore) Increment(user string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.clicks[user]
	m.clicks[user] = n + 1
	return n, nil
}

func (m *memoryStore) Score(user string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.clicks[user], nil
}

func (m *memoryStore) Close() error     { return nil }
func (m *memoryStore) Describe() string { return "in memory (lost on exit)" }
