package sqlite_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/borderlink/borderlink/internal/store"
	"github.com/borderlink/borderlink/internal/store/sqlite"
	"github.com/borderlink/borderlink/internal/store/storetest"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "borderlink-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	s, err := sqlite.Open(ctx, filepath.Join(dir, "borderlink.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	decl := storetest.Declaration("NL-2026-000123", 0, "NL", "SG", "851712")
	if err := s.PutRecords(ctx, []*blv1.Declaration{decl}, nil); err != nil {
		log.Fatal(err)
	}
	err = s.SearchDeclarations(ctx, store.DeclarationQuery{HSChapters: []string{"85"}, DestinationCountry: "SG"},
		func(d *blv1.Declaration) error {
			fmt.Println("match:", d.GetId())
			return nil
		})
	if err != nil {
		log.Fatal(err)
	}

	// The returned seq is durable: it is safe to sign a receipt for it now.
	seq, err := s.AppendAudit(ctx, storetest.AuditRecord("req-1", 0))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("audit seq:", seq)
	// Output:
	// match: NL-2026-000123
	// audit seq: 1
}
