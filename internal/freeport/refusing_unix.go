//go:build unix

package freeport

import (
	"fmt"
	"net"
	"sync"
	"syscall"
)

// Refusing returns an address on 127.0.0.1 where connections are refused
// until release is called, for tests of an unreachable server. A port that
// is merely free may be taken meanwhile; this one is held by a socket that
// is bound but never listens, so the kernel refuses connections to it and
// no one else can bind it. release may be called more than once.
func Refusing() (addr string, release func() error, err error) {
	// Not SOCK_CLOEXEC, which not every Unix has: the fork lock keeps a
	// child started meanwhile from inheriting the socket, as net does.
	syscall.ForkLock.RLock()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return "", nil, fmt.Errorf("refusing loopback address: socket: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return "", nil, fmt.Errorf("refusing loopback address: bind: %w", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		return "", nil, fmt.Errorf("refusing loopback address: getsockname: %w", err)
	}
	in4, ok := sa.(*syscall.SockaddrInet4)
	if !ok {
		syscall.Close(fd)
		return "", nil, fmt.Errorf("refusing loopback address: bound to %T", sa)
	}
	addr = (&net.TCPAddr{IP: net.IP(in4.Addr[:]), Port: in4.Port}).String()
	// Closing an fd twice could close another file that reused its number.
	var once sync.Once
	return addr, func() error {
		err := error(nil)
		once.Do(func() { err = syscall.Close(fd) })
		return err
	}, nil
}
