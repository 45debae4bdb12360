package demo

import "errors"

// ScoreStore keeps the clicker's scores.
type ScoreStore interface {
	// Increment records one click for user and returns the user's score
	// before it (0 for a first click). When it returns, the click is
	// durable (for stores that persist). An error that wraps
	// ErrUnavailable means the store is away for now (Redis down): the
	// clicker answers {"status":503}; other errors get {"status":500}.
	Increment(user string) (int64, error)
	// Score returns the number of clicks recorded for user.
	Score(user string) (int64, error)
	Close() error
	// Describe says where the scores live, for the startup banner.
	Describe() string
}

// ErrUnavailable is wrapped by the errors of a store that cannot be
// reached for now and may come back (the Redis store).
var ErrUnavailable = errors.New("score store unavailable")
