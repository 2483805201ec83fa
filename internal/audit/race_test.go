//go:build race

package audit_test

// raceEnabled scales the memory test down under the race detector.
const raceEnabled = true
