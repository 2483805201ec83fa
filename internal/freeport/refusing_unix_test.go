//go:build unix

package freeport

import (
	"net"
	"strings"
	"testing"
)

func TestRefusing(t *testing.T) {
	addr, release, err := Refusing()
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("connected to %s; want refused", addr)
	} else if !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("dial %s: %v; want connection refused", addr, err)
	}
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		t.Errorf("listened on %s while Refusing holds it", addr)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
}
