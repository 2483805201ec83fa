package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/store/storetest"
)

// BenchmarkAppendAudit measures AppendAudit with concurrent appenders (group
// commit forms the batches); per op = one record appended and durable. The
// records are like a pull's provider record: ~1 KB with the policy input,
// and a fresh request ID as the gateways make them (audit.NewRequestID:
// time-ordered, so its index grows at the right edge; a fully random ID
// costs an index page per record, a constant one makes the benchmark
// wrong).
func BenchmarkAppendAudit(b *testing.B) {
	for _, appenders := range []int{16, 64} {
		b.Run(fmt.Sprintf("appenders=%d", appenders), func(b *testing.B) {
			s, err := Open(context.Background(), filepath.Join(b.TempDir(), "borderlink.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			tmpl := storetest.AuditRecord("bench", 0)
			tmpl.Seq = 0 // assigned by the append
			tmpl.PolicyInput = `{"action":"declaration.get","resource":{"attributes":` + strings.Repeat(`"x",`, 160) + `"x"}}`
			b.ReportAllocs()
			b.ResetTimer()
			start := cpuTime()
			var wg sync.WaitGroup
			work := make(chan struct{})
			for range appenders {
				wg.Go(func() {
					for range work {
						rec := proto.CloneOf(tmpl)
						rec.RequestId = audit.NewRequestID(time.Now())
						if _, err := s.AppendAudit(context.Background(), rec); err != nil {
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
			// dominates the wall time and varies with the disk and
			// neighbours.
			b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
