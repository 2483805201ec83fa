package freeport

import (
	"errors"
	"net"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestPickDistinctAndFree(t *testing.T) {
	for _, tc := range []struct {
		name   string
		spans  []span
		inside func(port int) bool
		relist bool // the released ports can be listened on again
	}{
		{"below and above the ephemeral range", outside(&span{32768, 61000}),
			func(p int) bool { return p >= lowest && p < 32768 || p >= 61000 }, true},
		// The kernel's choice, from its ephemeral range: anyone may take a
		// released port again, so that is not checked.
		{"range unknown: the kernel's choice", nil, func(p int) bool { return p > 0 }, false},
		{"too little room: the kernel's choice", []span{{lowest, lowest + 50}}, func(p int) bool { return p > 0 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pick(64, 1, tc.spans, listenPort)
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
				if host != "127.0.0.1" || !tc.inside(port) {
					t.Errorf("address %s: not 127.0.0.1 or port outside the expected range", a)
				}
				if tc.relist {
					l, err := net.Listen("tcp", a)
					if err != nil {
						t.Fatalf("address %s not free after pick returned: %v", a, err)
					}
					l.Close()
				}
			}
		})
	}
}

// fakeListener stands for a listener on a port, so that pick's choices can
// be tested without taking ports other tests' children wait to bind.
type fakeListener struct{ port int }

func (l fakeListener) Accept() (net.Conn, error) { return nil, errors.New("fake") }
func (l fakeListener) Close() error              { return nil }
func (l fakeListener) Addr() net.Addr            { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: l.port} }

func TestPickSkipsTakenPorts(t *testing.T) {
	// In a span of 10,000 ports every odd one is taken; blocks of two need
	// an even port and the odd one after it, so none fits.
	taken := func(p int) bool { return p%2 == 1 }
	var tried []int
	listen := func(p int) (net.Listener, error) {
		tried = append(tried, p)
		if p == 0 || taken(p) {
			return nil, errors.New("address already in use")
		}
		return fakeListener{p}, nil
	}
	got, err := pick(50, 1, []span{{lowest, lowest + 10000}}, listen)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range got {
		_, p, _ := net.SplitHostPort(a)
		if port, _ := strconv.Atoi(p); taken(port) {
			t.Errorf("handed out %s, which is taken", a)
		}
	}
	// All 50 draws even by chance: 1 in 2^50.
	if len(tried) <= 50 {
		t.Errorf("tried %d ports for 50 in a half-taken span; want the taken ones drawn and skipped", len(tried))
	}
	if _, err := pick(1, 2, []span{{lowest, lowest + 10000}}, listen); err == nil {
		t.Error("a block of 2 found where every second port is taken")
	}
}

func TestBlock(t *testing.T) {
	a, err := Block(2)
	if err != nil {
		t.Fatal(err)
	}
	_, p, _ := net.SplitHostPort(a)
	port, _ := strconv.Atoi(p)
	for _, q := range []int{port, port + 1} {
		l, err := listenPort(q)
		if err != nil {
			t.Fatalf("port %d of the block at %s not free: %v", q, a, err)
		}
		l.Close()
	}
}

func TestOutside(t *testing.T) {
	for _, tc := range []struct {
		e    *span
		want []span
	}{
		{nil, nil},
		{&span{32768, 61000}, []span{{lowest, 32768}, {61000, 65536}}},
		{&span{1024, 61000}, []span{{61000, 65536}}},
		{&span{1024, 65536}, nil},
		{&span{20000, 65536}, []span{{lowest, 20000}}},
	} {
		if got := outside(tc.e); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("outside(%v) = %v, want %v", tc.e, got, tc.want)
		}
	}
}

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want span
		ok   bool
	}{
		{"32768\t60999\n", span{32768, 61000}, true},
		{"1024 65535", span{1024, 65536}, true},
		{"", span{}, false},
		{"32768", span{}, false},
		{"x 60999", span{}, false},
		{"0 60999", span{}, false},
		{"70000 80000", span{}, false},
		{"60999 32768", span{}, false},
	} {
		got, err := parseRange(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseRange(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

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
