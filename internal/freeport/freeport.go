// Package freeport picks loopback TCP addresses for processes that are
// told their address before they start (the demo's and the tests'
// gateways, a Vault dev server, an OPA server).
//
// The usual trick, listening on 127.0.0.1:0 and closing, has two races:
// a second call may be handed the port the first just released, and in
// the time before the child binds, the kernel may hand the same port to
// anyone else's :0 listener or outgoing connection, since it is in the
// ephemeral range. Addrs holds every listener until all are chosen and,
// where the kernel's ephemeral range is known (Linux), draws outside it,
// where the kernel hands nothing out by itself. Elsewhere, or when the
// range leaves too little room, it falls back to the kernel's :0 choice:
// the addresses of one call are still distinct, but the second race is
// back. A port handed out is free, not reserved: another program that
// draws from the same range may take it before the child binds it.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// lowest is the bottom of the ports Addrs draws from: above the ports of
// well-known services (PostgreSQL 5432, Redis 6379, NATS 4222, ...).
const lowest = 10000

// rangeFile names the kernel's ephemeral range (Linux).
const rangeFile = "/proc/sys/net/ipv4/ip_local_port_range"

// Addrs returns n distinct addresses on 127.0.0.1 that were free a moment
// ago.
func Addrs(n int) ([]string, error) {
	return pick(n, 1, outside(ephemeral()), listenPort)
}

// Addr returns one address, as Addrs(1).
func Addr() (string, error) { return Block(1) }

// Block returns the address of the first of width consecutive ports that
// were all free a moment ago, for a server that binds more than the port
// it is given (a Vault dev server's cluster listener takes the next one).
func Block(width int) (string, error) {
	a, err := pick(1, width, outside(ephemeral()), listenPort)
	if err != nil {
		return "", err
	}
	return a[0], nil
}

// span is the ports [lo, hi).
type span struct{ lo, hi int }

// outside is what [lowest, 65536) leaves around the ephemeral range e
// (nil when e is unknown).
func outside(e *span) []span {
	if e == nil {
		return nil
	}
	var out []span
	if e.lo > lowest {
		out = append(out, span{lowest, e.lo})
	}
	if lo := max(e.hi, lowest); lo < 65536 {
		out = append(out, span{lo, 65536})
	}
	return out
}

func listenPort(port int) (net.Listener, error) {
	return net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
}

// pick returns n addresses, each the first of width consecutive ports it
// could listen on, drawn from spans when they have room (100 tries per
// address at least), else from the kernel's :0. Every listener is held
// until all are chosen.
func pick(n, width int, spans []span, listen func(port int) (net.Listener, error)) ([]string, error) {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	room := 0
	for _, s := range spans {
		room += max(0, s.hi-s.lo-width+1)
	}
	draw := room >= 100*n*width
	out := make([]string, 0, n)
	var lastErr error
	for tries := 0; len(out) < n; tries++ {
		if tries > 100*n*width+100 {
			return nil, fmt.Errorf("find %d free loopback ports: none after %d tries: %w", n*width, tries, lastErr)
		}
		port := 0
		if draw {
			k := rand.IntN(room)
			for _, s := range spans {
				if w := s.hi - s.lo - width + 1; k >= w {
					k -= max(0, w)
					continue
				}
				port = s.lo + k
				break
			}
		}
		first, err := listen(port)
		if err != nil {
			if port == 0 || !errors.Is(err, syscall.EADDRINUSE) {
				return nil, fmt.Errorf("find a free loopback port: %w", err)
			}
			lastErr = err
			continue // taken: draw again
		}
		block := []net.Listener{first}
		p := first.Addr().(*net.TCPAddr).Port
		for i := 1; i < width; i++ {
			l, err := listen(p + i)
			if err != nil {
				lastErr = err
				break
			}
			block = append(block, l)
		}
		held = append(held, block...)
		if len(block) == width {
			out = append(out, first.Addr().String())
		}
	}
	return out, nil
}

// ephemeral is the kernel's ephemeral port range, or nil when it is not
// known (not Linux, or an unreadable file).
func ephemeral() *span {
	b, err := os.ReadFile(rangeFile)
	if err != nil {
		return nil
	}
	s, err := parseRange(string(b))
	if err != nil {
		return nil
	}
	return &s
}

// parseRange reads "low high" (inclusive) as the span [low, high+1).
func parseRange(s string) (span, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return span{}, errors.New("want two ports")
	}
	var ports [2]int
	for i, x := range f {
		p, err := strconv.Atoi(x)
		if err != nil || p < 1 || p > 65535 {
			return span{}, fmt.Errorf("bad port %q", x)
		}
		ports[i] = p
	}
	if ports[0] > ports[1] {
		return span{}, fmt.Errorf("low port %d above high port %d", ports[0], ports[1])
	}
	return span{ports[0], ports[1] + 1}, nil
}
