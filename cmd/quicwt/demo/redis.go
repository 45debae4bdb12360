package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Redis is one connection pool to the Redis server shared by the Redis
// score store and the Redis chat link. It says in the log when Redis goes
// away and when it is back: one line per change of state, not one per
// failed command.
type Redis struct {
	client *redis.Client
	addr   string // redis://host:port/db without credentials, for logs
	log    *slog.Logger

	mu   sync.Mutex
	up   bool
	down time.Time // when it went away
}

// Timeouts of every Redis command: short, so that a click or a
// heartbeat fails fast while Redis is away instead of hanging.
const (
	redisDialTimeout = time.Second
	redisIOTimeout   = time.Second
	redisStartPing   = 5 * time.Second // total time DialRedis waits
)

// DialRedis connects to rawURL (redis://[user:password@]host:port/db or
// rediss:// for TLS) and checks that the server answers PING, within
// bounded time: an unreachable Redis is an error, not a hang.
func DialRedis(ctx context.Context, rawURL string, log *slog.Logger) (*Redis, error) {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("bad Redis URL %q: %w", redactURL(rawURL), err)
	}
	opt.DialTimeout = redisDialTimeout
	opt.ReadTimeout = redisIOTimeout
	opt.WriteTimeout = redisIOTimeout
	opt.PoolTimeout = 2 * redisIOTimeout
	opt.MaxRetries = 1
	opt.DialerRetries = 2 // go-redis dials 5 times per command by default
	opt.ContextTimeoutEnabled = true
	// No CLIENT MAINT_NOTIFICATIONS handshake (a Redis Enterprise
	// feature): plain Debian redis-server answers it with an error.
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Redis{client: redis.NewClient(opt), addr: redactURL(rawURL), log: log.With("component", "redis", "redis", redactURL(rawURL))}
	pctx, cancel := context.WithTimeout(ctx, redisStartPing)
	defer cancel()
	if err := r.client.Ping(pctx).Err(); err != nil {
		r.client.Close()
		return nil, fmt.Errorf("Redis at %s unreachable: %w", r.addr, err)
	}
	r.up = true
	r.log.Info("redis connected")
	return r, nil
}

// redactURL drops the password of a Redis URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// Addr is the server's URL without credentials.
func (r *Redis) Addr() string { return r.addr }

// observe records the outcome of a command: a failure while Redis was up
// logs that it went away, a success while it was down that it is back.
// A command that failed for its own reason (a script error, a nil reply)
// says nothing about the connection and should not be observed.
func (r *Redis) observe(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err != nil && r.up:
		r.up, r.down = false, time.Now()
		r.log.Warn("redis unreachable: clicks answered 503, chat local to this instance until it is back", "err", err)
	case err == nil && !r.up:
		r.up = true
		r.log.Info("redis reachable again", "after", time.Since(r.down).Round(time.Millisecond).String())
	}
}

// Up says whether the last observed command succeeded.
func (r *Redis) Up() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.up
}

// Close closes the connection pool.
func (r *Redis) Close() error { return r.client.Close() }

// connErr says whether err is a failure to talk to Redis (as opposed to
// a reply, such as redis.Nil, or a script error).
func connErr(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) {
		return false
	}
	var re redis.Error
	if errors.As(err, &re) {
		// A server still loading its dataset after a restart is away.
		return strings.HasPrefix(re.Error(), "LOADING")
	}
	return true
}
