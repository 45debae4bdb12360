package main

import "testing"

// TestChatQuick runs the chat load (chat.go) with tiny counts: every
// comment reaches every member, in the local room and across two
// instances on a real redis-server (Debian's package; .ci/run installs
// it).
func TestChatQuick(t *testing.T) {
	clientPin = serverCert().hash
	spec := chatSpec{instances: 2, perInst: 3, messages: 4}
	for _, setup := range []string{"local", "redis"} {
		r, err := runChat(setup, spec)
		if err != nil {
			t.Fatalf("%s: %v", setup, err)
		}
		if want := 6 * 4 * 6; r.deliveries != want || r.lost != 0 || r.comments != 24 {
			t.Errorf("%s: %d comments, %d deliveries, %d lost; want 24, %d, 0", setup, r.comments, r.deliveries, r.lost, want)
		}
		t.Logf("%s: %d deliveries in %v, p99 %v", setup, r.deliveries, r.elapsed, r.p99)
	}
}
