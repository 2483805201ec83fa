package bench

import (
	"os"
	"syscall"
)

// fdatasync makes f's data durable without its metadata, as SQLite's
// WAL sync does on Linux, so that the floors time the same system call.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
