// Package e2e holds multi-process end-to-end tests of push delivery,
// subscriptions and the audit log across a provider crash: three real `borderlink serve` processes (NL, SG, CN) on
// loopback, killed with SIGKILL at random moments and at the crash points
// of BORDERLINK_CRASH_AT, checked afterwards through their SQLite files
// and audit logs. The package has no non-test code; `go test -short`
// skips everything (the tests build the binary and take minutes).
package e2e
