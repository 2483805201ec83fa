// Package freeport picks loopback TCP addresses for processes that are
// told their address before they start (the demo's and the tests'
// gateways, a Vault dev server, an OPA server).
//
// The usual trick, listening on 127.0.0.1:0 and closing, has two races:
// a second call may be handed the port the first just released, and in
// the time before the child binds, the kernel may hand the same port to
// anyone else's :0 listener or outgoing connection, since it is in the
// ephemeral range. Addrs holds every listener until all n are chosen and,
// where the ephemeral range is known, chooses below it, where the kernel
// hands nothing out by itself.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// lowest is the bottom of the range Addrs draws from: above the ports of
// well-known services (PostgreSQL 5432, Redis 6379, NATS 4222, ...).
const lowest = 10000

// rangeFile names the kernel's ephemeral range (Linux).
const rangeFile = "/proc/sys/net/ipv4/ip_local_port_range"

// Addrs returns n distinct addresses on 127.0.0.1 that were free a moment
// ago.
func Addrs(n int) ([]string, error) {
	return addrs(n, ephemeralLow())
}

// Addr returns one address, as Addrs(1).
func Addr() (string, error) {
	a, err := Addrs(1)
	if err != nil {
		return "", err
	}
	return a[0], nil
}

// addrs draws from [lowest, below) when that range has room, and from the
// kernel's :0 otherwise.
func addrs(n int, below int) ([]string, error) {
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	out := make([]string, 0, n)
	span := below - lowest
	for tries := 0; len(out) < n; tries++ {
		port := 0
		if span >= 100*n && tries < 50*n {
			port = lowest + rand.IntN(span)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			if port == 0 {
				return nil, fmt.Errorf("find a free loopback port: %w", err)
			}
			continue // taken: draw again
		}
		held = append(held, l)
		out = append(out, l.Addr().String())
	}
	return out, nil
}

// ephemeralLow is the bottom of the kernel's ephemeral port range, or 0
// when it is not known (not Linux, or an unreadable file).
func ephemeralLow() int {
	b, err := os.ReadFile(rangeFile)
	if err != nil {
		return 0
	}
	low, err := parseRange(string(b))
	if err != nil {
		return 0
	}
	return low
}

func parseRange(s string) (int, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, errors.New("want two ports")
	}
	low, err := strconv.Atoi(f[0])
	if err != nil || low < 1 || low > 65535 {
		return 0, fmt.Errorf("bad low port %q", f[0])
	}
	return low, nil
}
