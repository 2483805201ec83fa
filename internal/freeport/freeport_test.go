package freeport

import (
	"errors"
	"net"
	"reflect"
	"strconv"
	"syscall"
	"testing"
)

func TestPickDistinctAndFree(t *testing.T) {
	for _, tc := range []struct {
		name   string
		spans  []span
		inside func(port int) bool
		relist bool // the released ports can be listened on again
	}{
		{"outside the ephemeral range", outside(ephemeral()), func(p int) bool {
			e := ephemeral()
			return p >= lowest && (e == nil || p < e.lo || p >= e.hi)
		}, true},
		// The kernel's choice, from its ephemeral range: anyone may take a
		// released port again, so that is not checked.
		{"range unknown: the kernel's choice", nil, func(p int) bool { return p > 0 }, false},
		{"too little room: the kernel's choice", []span{{lowest, lowest + 50}}, func(p int) bool { return p > 0 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.relist && len(tc.spans) == 0 {
				t.Skip("the kernel's ephemeral range is not known here")
			}
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
			return nil, syscall.EADDRINUSE
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
	if _, err := pick(1, 2, []span{{lowest, lowest + 10000}}, listen); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("a block of 2 where every second port is taken: %v; want an error saying the ports are in use", err)
	}
}

func TestPickBlocks(t *testing.T) {
	// Ports 20000 and 20002 are taken. A span narrower than a block is
	// never drawn from, and no block covers a taken port.
	taken := map[int]bool{20000: true, 20002: true}
	listen := func(p int) (net.Listener, error) {
		if p == 0 || taken[p] {
			return nil, syscall.EADDRINUSE
		}
		return fakeListener{p}, nil
	}
	// Too little room to draw (4 start ports, fewer than 300): the
	// kernel's choice, which this fake refuses.
	if got, err := pick(1, 3, []span{{lowest, lowest + 2}, {20000, 20006}}, listen); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("pick = %v, %v; want the fallback to the kernel's choice", got, err)
	}
	// With room, blocks fit where the taken ports leave three in a row.
	wide := []span{{lowest, lowest + 2}, {20000, 21000}}
	for range 50 {
		got, err := pick(1, 3, wide, listen)
		if err != nil {
			t.Fatal(err)
		}
		_, ps, _ := net.SplitHostPort(got[0])
		p, _ := strconv.Atoi(ps)
		if p < 20000 || p+2 >= 21000 || taken[p] || taken[p+1] || taken[p+2] {
			t.Fatalf("block at %d: outside the span or over a taken port", p)
		}
	}
	// The kernel's choice with blocks: it retries until the ports after
	// the one it was given are free.
	next := 30000
	kernel := func(p int) (net.Listener, error) {
		if p == 0 {
			next += 2
			return fakeListener{next}, nil
		}
		if p%4 == 1 {
			return nil, syscall.EADDRINUSE
		}
		return fakeListener{p}, nil
	}
	got, err := pick(2, 2, nil, kernel)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range got {
		_, ps, _ := net.SplitHostPort(a)
		if p, _ := strconv.Atoi(ps); (p+1)%4 == 1 {
			t.Errorf("block at %d: its second port is taken", p)
		}
	}
}

func TestPickFailsOnOtherErrors(t *testing.T) {
	calls := 0
	listen := func(int) (net.Listener, error) { calls++; return nil, syscall.EACCES }
	if _, err := pick(1, 1, []span{{lowest, 65536}}, listen); !errors.Is(err, syscall.EACCES) || calls != 1 {
		t.Errorf("pick with listen failing EACCES: %v after %d calls; want that error at once", err, calls)
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
