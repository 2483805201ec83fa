//go:build !unix

package freeport

// Refusing returns an address on 127.0.0.1 where connections are refused
// until release is called. Without Unix sockets to hold the port, it is
// only a free one (Addr), which another program may take meanwhile.
func Refusing() (addr string, release func() error, err error) {
	addr, err = Addr()
	return addr, func() error { return nil }, err
}
