package demo

import "context"

// A ChatLink joins the chat room of this process to the rooms of other
// instances: it carries the local members' events out and delivers the
// others' in.
type ChatLink interface {
	// Publish hands over an event of a local member, under the room's
	// mutex: it must never block.
	Publish(ChatEvent)
	// Run delivers the events of members on other instances until ctx
	// ends.
	Run(ctx context.Context, deliver func(ChatEvent))
	// Close sends what Publish queued (until ctx ends) and withdraws
	// this instance from the shared room.
	Close(ctx context.Context) error
	// Describe says where the room lives, for the startup banner.
	Describe() string
}

// ChatEvent is what the room tells other instances.
type ChatEvent struct {
	Kind    string `json:"k"`           // EventEnter, EventComment or EventLeave
	Owner   string `json:"o"`           // the instance of the member (set by the link)
	Member  string `json:"-"`           // the member's ID in its process
	Name    string `json:"n"`           // the member's name
	Comment string `json:"c,omitempty"` // EventComment's text
}

// The kinds of ChatEvent.
const (
	EventEnter   = "enter"
	EventComment = "comment"
	EventLeave   = "leave"
)

// localOnly is the link of a room alone in its process.
type localOnly struct{}

func (localOnly) Publish(ChatEvent)                          {}
func (localOnly) Run(ctx context.Context, _ func(ChatEvent)) { <-ctx.Done() }
func (localOnly) Close(context.Context) error                { return nil }
func (localOnly) Describe() string                           { return "in this process" }
