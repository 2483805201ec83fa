// Package sqlitetest lets tests write to a store's database file as
// another program would (the sqlite3 shell of someone tampering with it),
// beside a store that may be open on it.
package sqlitetest

import (
	"database/sql"
	"testing"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// Exec runs stmts in order on the database file at path, on a connection
// of its own that waits for the locks of a store running on the file, and
// fails the test naming the first statement that fails.
func Exec(t testing.TB, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}
