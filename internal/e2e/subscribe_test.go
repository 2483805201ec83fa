//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// TestSubscriberResumes: a client holding SG's gateway certificate follows
// NL's risk assessments (Exchange.Subscribe) while NL ingests them in
// batches, drops the stream after a random number of messages and resumes
// from the last cursor it received. In the end it has every record it is
// entitled to (bound for SG) exactly once, in increasing cursor order, and
// nothing else.
func TestSubscriberResumes(t *testing.T) {
	c := newCluster(t)
	rng := rand.New(rand.NewPCG(seed(t), 4))
	nl := c.nodes[NL]
	// Only NL: the subscriber is this test. (NL's deliverer retries its
	// alerts to the absent SG and CN meanwhile, which is fine.)
	nl.start()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const batches, perBatch = 6, 250
	type batch struct {
		decls []*blv1.Declaration
		risks []*blv1.RiskAssessment
	}
	var all []batch
	entitled := map[string]bool{}
	other := map[string]bool{}
	for b := range batches {
		var bt batch
		for i := range perBatch {
			dest := []string{"SG", "CN", "US"}[rng.IntN(3)]
			did, rid := fmt.Sprintf("NL-D-%d-%04d", b, i), fmt.Sprintf("NL-RA-%d-%04d", b, i)
			bt.decls = append(bt.decls, declaration(did, dest))
			bt.risks = append(bt.risks, risk(rid, did, rng.Float64(), "v1"))
			if dest == "SG" {
				entitled[rid] = true
			} else {
				other[rid] = true
			}
		}
		all = append(all, bt)
	}
	t.Logf("%d risk assessments in %d batches, %d entitled (bound for SG)", batches*perBatch, batches, len(entitled))

	var wg sync.WaitGroup
	ingestDone := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ingestDone)
		for i, bt := range all {
			// Declarations before the risk assessments about them.
			if err := tryImport(ctx, nl, bt.decls, nil); err != nil {
				t.Error(err)
				return
			}
			if err := tryImport(ctx, nl, nil, bt.risks); err != nil {
				t.Error(err)
				return
			}
			if i < len(all)-1 {
				time.Sleep(100*time.Millisecond + time.Duration(rand.Int64N(int64(400*time.Millisecond))))
			}
		}
	}()
	defer wg.Wait()

	ex := blv1.NewExchangeClient(c.dialAs(t, SG, NL))
	got := map[string]int{}
	var cursor uint64
	sessions, drops := 0, []int{}
	deadline := time.Now().Add(90 * time.Second)
	// session receives up to n messages (0: until idle for idle) from the
	// current cursor, then drops the stream.
	session := func(n int, idle time.Duration) {
		sessions++
		sctx, scancel := context.WithCancel(ctx)
		defer scancel()
		stream, err := ex.Subscribe(sctx, &blv1.SubscribeRequest{Dataset: "risk_assessment", Purpose: "risk-assessment", Cursor: cursor})
		if err != nil {
			t.Fatalf("subscribe from %d: %v", cursor, err)
		}
		type msg struct {
			m   *blv1.SubscribeResponse
			err error
		}
		ch := make(chan msg)
		go func() {
			for {
				m, err := stream.Recv()
				select {
				case ch <- msg{m, err}:
				case <-sctx.Done():
					return
				}
				if err != nil {
					return
				}
			}
		}()
		k := 0
		for n == 0 || k < n {
			var mm msg
			select {
			case mm = <-ch:
			case <-time.After(idle):
				drops = append(drops, k)
				return
			}
			if mm.err != nil {
				if status.Code(mm.err) == codes.Canceled || errors.Is(mm.err, context.Canceled) {
					return
				}
				t.Fatalf("subscription from cursor %d: %v", cursor, mm.err)
			}
			m := mm.m
			if m.GetCursor() <= cursor {
				t.Errorf("cursor %d after %d: not increasing", m.GetCursor(), cursor)
			}
			cursor = m.GetCursor()
			id := m.GetRiskAssessment().GetId()
			got[id]++
			if m.GetReceipt() == "" || m.GetRelease().GetGrantId() != "nl-to-sg-alerts" {
				t.Errorf("record %s: receipt %q, grant %q", id, m.GetReceipt(), m.GetRelease().GetGrantId())
			}
			k++
		}
		drops = append(drops, k)
	}
	for len(got) < len(entitled) && time.Now().Before(deadline) && !t.Failed() {
		session(1+rng.IntN(120), 3*time.Second)
	}
	<-ingestDone
	// Caught up: one more session must bring nothing new (the server polls
	// every second when idle).
	before := len(got)
	session(0, 2500*time.Millisecond)
	t.Logf("%d sessions, messages per session before the drop: %v; %d extra after catching up", sessions, drops, len(got)-before)

	for id, n := range got {
		if n != 1 {
			t.Errorf("record %s received %d times", id, n)
		}
		if !entitled[id] {
			t.Errorf("record %s received but not entitled (other: %v)", id, other[id])
		}
	}
	missing := 0
	for id := range entitled {
		if got[id] == 0 {
			missing++
			if missing <= 5 {
				t.Errorf("record %s (entitled) never received", id)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d entitled records never received", missing, len(entitled))
	}
}
