package wake

import "testing"

func TestSignal(t *testing.T) {
	var s Signal
	c1, c2 := s.C(), s.C()
	select {
	case <-c1:
		t.Fatal("closed before Broadcast")
	default:
	}
	s.Broadcast()
	for _, c := range []<-chan struct{}{c1, c2} {
		select {
		case <-c:
		default:
			t.Fatal("not closed when Broadcast returned")
		}
	}
	// A channel taken after the Broadcast waits for the next one.
	c3 := s.C()
	select {
	case <-c3:
		t.Fatal("a new channel is already closed")
	default:
	}
	s.Broadcast()
	<-c3
}
