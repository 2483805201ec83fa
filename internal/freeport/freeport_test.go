package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestAddrsDistinctAndFree(t *testing.T) {
	for _, tc := range []struct {
		name  string
		below int
		lo    int // every port in [lo, hi)
		hi    int
	}{
		{"below the ephemeral range", 32768, lowest, 32768},
		{"range unknown: the kernel's choice", 0, 1, 65536},
		{"range too small: the kernel's choice", lowest + 50, 1, 65536},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := addrs(64, tc.below)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 64 {
				t.Fatalf("got %d addresses, want 64", len(got))
			}
			seen := map[string]bool{}
			for _, a := range got {
				if seen[a] {
					t.Fatalf("address %s handed out twice in %v", a, got)
				}
				seen[a] = true
				host, p, err := net.SplitHostPort(a)
				if err != nil {
					t.Fatal(err)
				}
				port, _ := strconv.Atoi(p)
				if host != "127.0.0.1" || port < tc.lo || port >= tc.hi {
					t.Errorf("address %s: want 127.0.0.1 with a port in [%d, %d)", a, tc.lo, tc.hi)
				}
				// Released on return: the caller's child can bind it.
				l, err := net.Listen("tcp", a)
				if err != nil {
					t.Fatalf("address %s not free after Addrs returned: %v", a, err)
				}
				l.Close()
			}
		})
	}
}

func TestAddrsSkipsTakenPorts(t *testing.T) {
	// Hold ten ports of a tiny range, so that most draws hit a taken one.
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	taken := map[string]bool{}
	for p := lowest; len(held) < 10 && p < lowest+1000; p++ {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		held = append(held, l)
		taken[l.Addr().String()] = true
	}
	got, err := addrs(5, lowest+1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range got {
		if taken[a] {
			t.Errorf("Addrs handed out %s, which another listener holds", a)
		}
	}
}

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"32768\t60999\n", 32768, true},
		{"1024 65535", 1024, true},
		{"", 0, false},
		{"32768", 0, false},
		{"x 60999", 0, false},
		{"0 60999", 0, false},
		{"70000 80000", 0, false},
	} {
		got, err := parseRange(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseRange(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
