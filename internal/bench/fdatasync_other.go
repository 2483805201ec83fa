//go:build !linux

package bench

import "os"

// fdatasync falls back to a full sync where the system has no fdatasync:
// the floors then time more than SQLite's WAL sync does on Linux.
func fdatasync(f *os.File) error { return f.Sync() }
