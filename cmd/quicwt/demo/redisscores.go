package demo

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// redisStore keeps the clicker's scores in one Redis hash, one field per
// user name. A click is HINCRBY, atomic in Redis, so clicks on every
// instance sharing the Redis server give one sequence per user: 0 for the
// first click, then 1, 2, ... (the reply is the new count minus one).
//
// Durability is Redis's: with appendonly yes and appendfsync always an
// acknowledged click survives a crash of Redis; with the default
// appendfsync everysec up to about a second of clicks may be lost; with
// RDB snapshots only (or none) everything since the last snapshot is
// lost when Redis stops. While Redis is away, Increment fails with an
// error wrapping ErrUnavailable (the clicker answers {"status":503}).
type redisStore struct {
	r   *Redis
	key string
}

// scoresKey is the hash holding the scores.
const scoresKey = "quicwt:clicker:scores"

// NewRedisStore returns a score store on r. Closing it leaves r open
// (the chat link may share it).
func NewRedisStore(r *Redis) ScoreStore { return &redisStore{r: r, key: scoresKey} }

func (s *redisStore) Increment(user string) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*redisIOTimeout)
	defer cancel()
	n, err := s.r.client.HIncrBy(ctx, s.key, user, 1).Result()
	if connErr(err) {
		s.r.observe(err)
		return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if err != nil {
		return 0, fmt.Errorf("redis HINCRBY %s: %w", s.key, err)
	}
	s.r.observe(nil)
	return n - 1, nil
}

func (s *redisStore) Score(user string) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*redisIOTimeout)
	defer cancel()
	n, err := s.r.client.HGet(ctx, s.key, user).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if connErr(err) {
		s.r.observe(err)
		return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return n, err
}

func (s *redisStore) Close() error { return nil }

func (s *redisStore) Describe() string {
	return "Redis " + s.r.Addr() + ", hash " + s.key + " (durability: the Redis server's persistence settings)"
}
