package sqlite

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/borderlink/borderlink/internal/store/storetest"
)

// BenchmarkAppendAudit measures AppendAudit with 16 concurrent appenders,
// as the audit scenario of make bench runs it (group commit forms the
// batches); per op = one record appended and durable.
func BenchmarkAppendAudit(b *testing.B) {
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "borderlink.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	appenders := 16
	if v, err := strconv.Atoi(os.Getenv("APPENDERS")); err == nil {
		appenders = v
	}
	rec := storetest.AuditRecord("bench", 0)
	rec.Seq = 0 // assigned by the append
	b.ReportAllocs()
	b.ResetTimer()
	start := cpuTime()
	var wg sync.WaitGroup
	work := make(chan struct{})
	for range appenders {
		wg.Go(func() {
			for range work {
				if _, err := s.AppendAudit(context.Background(), proto.CloneOf(rec)); err != nil {
					b.Error(err)
				}
			}
		})
	}
	for range b.N {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	// CPU per record tells the cost apart from fsync latency, which
	// dominates the wall time and varies with the disk and neighbours.
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
