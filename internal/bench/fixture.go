package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	"github.com/borderlink/borderlink/internal/devca"
	"github.com/borderlink/borderlink/internal/gateway"
	"github.com/borderlink/borderlink/internal/gen"
	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/policy"
	"github.com/borderlink/borderlink/internal/release"
	"github.com/borderlink/borderlink/internal/store"
	"github.com/borderlink/borderlink/internal/store/sqlite"
	"github.com/borderlink/borderlink/policies"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

const (
	provider  = "nl.customs.example" // the gateway under test
	recipient = "sg.customs.example" // the partner calling it
	purpose   = "risk-assessment"
)

var serverLabels = pprof.Labels("side", "server")

// pki is one set of development certificates shared by the gateway and
// every baseline of a run: same keys, same handshakes.
type pki struct {
	bundles    *identity.Bundles
	nlCA, sgCA *devca.CA
	server     tls.Certificate // spiffe://nl.customs.example/gateway, IP SAN 127.0.0.1
	client     tls.Certificate // spiffe://sg.customs.example/gateway
}

func newPKI() (*pki, error) {
	now := time.Now()
	p := &pki{bundles: identity.NewBundles()}
	var err error
	if p.nlCA, err = devca.NewCA(provider, now); err != nil {
		return nil, err
	}
	if p.sgCA, err = devca.NewCA(recipient, now); err != nil {
		return nil, err
	}
	p.bundles.Add(provider, p.nlCA.Cert)
	p.bundles.Add(recipient, p.sgCA.Cert)
	if p.server, err = p.nlCA.IssueTLS(identity.GatewayID(provider).String(), devca.LeafOptions{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}); err != nil {
		return nil, err
	}
	if p.client, err = p.sgCA.IssueTLS(identity.GatewayID(recipient).String(), devca.LeafOptions{}); err != nil {
		return nil, err
	}
	return p, nil
}

// gatewayCreds are what a partner gateway dials the gateway with.
func (p *pki) gatewayCreds() credentials.TransportCredentials {
	return credentials.NewTLS(identity.ClientTLSConfig(identity.NewKeyPair(p.client), p.bundles, identity.GatewayID(provider)))
}

// bareServerTLS is plain stdlib mutual TLS 1.3 with the same certificates:
// the client must chain to sg's CA. No SPIFFE checks.
func (p *pki) bareServerTLS() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(p.sgCA.Cert)
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{p.server},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, SessionTicketsDisabled: true}
}

func (p *pki) bareCreds() credentials.TransportCredentials {
	pool := x509.NewCertPool()
	pool.AddCert(p.nlCA.Cert)
	return credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{p.client}, RootCAs: pool})
}

// dial opens a client connection from a load-generator goroutine, so the
// client transport goroutines carry the client profile label.
func dial(ctx context.Context, addr string, creds credentials.TransportCredentials) (*grpc.ClientConn, error) {
	var (
		cc  *grpc.ClientConn
		err error
	)
	pprof.Do(ctx, clientLabels, func(context.Context) {
		cc, err = grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err == nil {
			cc.Connect()
		}
	})
	return cc, err
}

// server is something listening on loopback that stop shuts down.
type server struct {
	addr string
	stop func()
}

// serveGateway starts a gateway for provider over st with engine, on a
// loopback port, signing with a key it generates.
func serveGateway(ctx context.Context, p *pki, st gateway.Store, engine *policy.Engine) (*server, error) {
	return serveSignedGateway(ctx, p, st, engine, gateway.AuditOptions{})
}

// serveSignedGateway is serveGateway with signer signing receipts and
// checkpoints (nil: a generated local key, as gateway.New does).
func serveSignedGateway(ctx context.Context, p *pki, st gateway.Store, engine *policy.Engine, ao gateway.AuditOptions) (*server, error) {
	pseud, err := release.NewPseudonymizer([]byte("borderlink-bench-pseudonym-key-0"))
	if err != nil {
		return nil, err
	}
	// New starts grpc-go's stream workers, which serve the calls and take
	// the profile labels of the goroutine that makes them.
	var g *gateway.Gateway
	pprof.Do(ctx, serverLabels, func(context.Context) {
		g, err = gateway.New(gateway.Options{
			Self: provider, KeyPair: identity.NewKeyPair(p.server), Bundles: p.bundles, Store: st,
			Policy: engine, Pseudonymizer: pseud, Logger: slog.New(slog.DiscardHandler),
			Limits: gateway.Limits{ShutdownGrace: 2 * time.Second}, Audit: ao,
		})
	})
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go pprof.Do(ctx, serverLabels, func(ctx context.Context) {
		defer close(done)
		if err := g.Serve(ctx, lis); err != nil && !errors.Is(err, net.ErrClosed) {
			slog.Error("bench: gateway stopped", "error", err)
		}
	})
	return &server{addr: lis.Addr().String(), stop: func() { cancel(); <-done }}, nil
}

// bareExchange is the baseline server: grpc-go with plain mTLS answering
// the Exchange API with no identity, policy, release or audit.
type bareExchange struct {
	blv1.UnimplementedExchangeServer
	responses map[string]*blv1.GetDeclarationResponse
	st        *sqlite.Store
}

// GetDeclaration echoes the bytes the gateway released for the same id.
func (b *bareExchange) GetDeclaration(_ context.Context, req *blv1.GetDeclarationRequest) (*blv1.GetDeclarationResponse, error) {
	return b.responses[req.GetId()], nil
}

// SearchDeclarations streams the same stored records, unfiltered.
func (b *bareExchange) SearchDeclarations(req *blv1.SearchDeclarationsRequest, stream blv1.Exchange_SearchDeclarationsServer) error {
	limit := int(req.GetLimit())
	n := 0
	err := b.st.SearchDeclarations(stream.Context(), store.DeclarationQuery{}, func(d *blv1.Declaration) error {
		if err := stream.Send(&blv1.SearchDeclarationsResponse{Declaration: d}); err != nil {
			return err
		}
		n++
		if limit > 0 && n >= limit {
			return store.ErrStop
		}
		return nil
	})
	return err
}

func serveBare(ctx context.Context, p *pki, impl blv1.ExchangeServer) (*server, error) {
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(p.bareServerTLS())))
	blv1.RegisterExchangeServer(s, impl)
	healthpb.RegisterHealthServer(s, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go pprof.Do(ctx, serverLabels, func(context.Context) {
		defer close(done)
		_ = s.Serve(lis) // returns nil after Stop
	})
	return &server{addr: lis.Addr().String(), stop: func() { s.Stop(); <-done }}, nil
}

// payload is a set of declarations of about one encoded size, all released
// to sg under the shipped nl-sg agreement.
type payload struct {
	name  string
	size  int // target encoded size, bytes
	decls []*blv1.Declaration
	ids   []string
	next  atomic.Uint64
}

func (p *payload) id() string { return p.ids[p.next.Add(1)%uint64(len(p.ids))] }

// meanSize is the mean encoded size of the declarations.
func (p *payload) meanSize() int {
	t := 0
	for _, d := range p.decls {
		t += proto.Size(d)
	}
	return t / max(1, len(p.decls))
}

// makePayload generates n declarations from seed and pads or trims their
// goods items until each encodes to about size bytes.
func makePayload(name string, size, n int, seed uint64) (*payload, error) {
	recs, err := gen.Generate(gen.Options{Domain: provider, Count: n, Seed: seed,
		Start: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), Partners: []string{"SG"}})
	if err != nil {
		return nil, err
	}
	p := &payload{name: name, size: size}
	for _, r := range recs {
		d := r.GetDeclaration()
		if d == nil {
			continue
		}
		d.DestinationCountry = "SG" // the shipped nl-sg grant's condition
		d.Id = fmt.Sprintf("%s-%s", d.GetId(), name)
		for len(d.GoodsItems) > 1 && proto.Size(d) > size {
			d.GoodsItems = d.GoodsItems[:len(d.GoodsItems)-1]
		}
		base := len(d.GoodsItems)
		for i := 0; proto.Size(d) < size; i++ {
			it := proto.CloneOf(d.GoodsItems[i%base])
			it.Sequence = uint32(len(d.GoodsItems) + 1)
			d.GoodsItems = append(d.GoodsItems, it)
		}
		p.decls = append(p.decls, d)
		p.ids = append(p.ids, d.GetId())
	}
	return p, nil
}

// pullFixture is a gateway and its echo baseline over the same store and
// payloads.
type pullFixture struct {
	pki      *pki
	st       *sqlite.Store
	appends  *appendTimer // wraps st for the gateway
	gw, bare *server
	payloads []*payload
	closers  []func()
}

func (f *pullFixture) close() {
	for i := len(f.closers) - 1; i >= 0; i-- {
		f.closers[i]()
	}
}

type payloadSpec struct {
	name string
	size int
}

var pullPayloads = []payloadSpec{{"1KB", 1024}, {"10KB", 10 * 1024}}

// newPullFixture builds the gateway (the policy set in policyFS, shipped
// agreements by default; SQLite file in dir) and the baseline server. With
// prime, the baseline's GetDeclaration returns exactly the bytes the
// gateway released for each id (one call per id at setup).
func newPullFixture(ctx context.Context, dir string, p *pki, specs []payloadSpec, perPayload int, prime bool, policyFS fs.FS) (*pullFixture, error) {
	return newSignedPullFixture(ctx, dir, p, specs, perPayload, prime, policyFS, gateway.AuditOptions{})
}

// newSignedPullFixture is newPullFixture with the gateway's receipts and
// checkpoints signed by signer (nil: a generated local key).
func newSignedPullFixture(ctx context.Context, dir string, p *pki, specs []payloadSpec, perPayload int, prime bool, policyFS fs.FS, ao gateway.AuditOptions) (_ *pullFixture, err error) {
	f := &pullFixture{pki: p}
	defer func() {
		if err != nil {
			f.close()
		}
	}()
	if policyFS == nil {
		policyFS = policies.FS
	}
	f.st, err = sqlite.Open(ctx, filepath.Join(dir, "gateway.db"))
	if err != nil {
		return nil, err
	}
	f.closers = append(f.closers, func() { f.st.Close() })
	for i, sp := range specs {
		pl, err := makePayload(sp.name, sp.size, perPayload, uint64(i+1))
		if err != nil {
			return nil, err
		}
		for chunk := range slices.Chunk(pl.decls, 500) {
			if err := f.st.PutRecords(ctx, chunk, nil); err != nil {
				return nil, err
			}
		}
		f.payloads = append(f.payloads, pl)
	}
	engine, err := policy.NewEngine(ctx, provider, policyFS, nil)
	if err != nil {
		return nil, err
	}
	f.appends = &appendTimer{Store: f.st}
	f.gw, err = serveSignedGateway(ctx, p, f.appends, engine, ao)
	if err != nil {
		return nil, err
	}
	f.closers = append(f.closers, f.gw.stop)

	impl := &bareExchange{responses: map[string]*blv1.GetDeclarationResponse{}, st: f.st}
	if prime {
		cc, err := dial(ctx, f.gw.addr, p.gatewayCreds())
		if err != nil {
			return nil, err
		}
		defer cc.Close()
		c := blv1.NewExchangeClient(cc)
		for _, pl := range f.payloads {
			for _, id := range pl.ids {
				resp, err := c.GetDeclaration(ctx, &blv1.GetDeclarationRequest{Id: id, Purpose: purpose})
				if err != nil {
					return nil, fmt.Errorf("bench: prime echo with %s: %w", id, err)
				}
				impl.responses[id] = resp
			}
		}
	}
	f.bare, err = serveBare(ctx, p, impl)
	if err != nil {
		return nil, err
	}
	f.closers = append(f.closers, f.bare.stop)
	return f, nil
}

// clientPool is a few client connections used round robin: one HTTP/2
// connection per partner is what a peer gateway keeps, but a handful keeps
// the client's single connection from being the bottleneck.
type clientPool struct {
	conns []*grpc.ClientConn
	next  atomic.Uint64
}

func newClientPool(ctx context.Context, addr string, creds credentials.TransportCredentials, n int) (*clientPool, error) {
	cp := &clientPool{}
	for range n {
		cc, err := dial(ctx, addr, creds)
		if err != nil {
			cp.close()
			return nil, err
		}
		cp.conns = append(cp.conns, cc)
	}
	return cp, nil
}

func (cp *clientPool) exchange() blv1.ExchangeClient {
	return blv1.NewExchangeClient(cp.conns[cp.next.Add(1)%uint64(len(cp.conns))])
}

func (cp *clientPool) close() {
	for _, cc := range cp.conns {
		cc.Close()
	}
}

// appendTimer is the gateway's store with the time each AppendAudit call
// takes recorded while on: how long an exchange waits for its audit record
// to be durable, which is the latency audit adds to the exchange (the
// answer leaves only after it). Embedding keeps every other method, so
// the gateway finds the same optional interfaces.
type appendTimer struct {
	*sqlite.Store
	mu      sync.Mutex
	on      bool
	floor   *journalFloor // while set, appends go to it instead (see perRun)
	samples []time.Duration
}

func (a *appendTimer) AppendAudit(ctx context.Context, rec *blv1.AuditRecord) (uint64, error) {
	a.mu.Lock()
	j := a.floor
	a.mu.Unlock()
	if j != nil {
		return a.appendJournaled(j, rec)
	}
	start := time.Now()
	seq, err := a.Store.AppendAudit(ctx, rec)
	a.add(time.Since(start))
	return seq, err
}

// add keeps d while recording.
func (a *appendTimer) add(d time.Duration) {
	a.mu.Lock()
	if a.on {
		a.samples = append(a.samples, d)
	}
	a.mu.Unlock()
}

// perRun wraps loop, an open loop of the gateway's exchanges, to run with
// the gateway's audit appends going to j (the store when j is nil) and
// timed, and to append each run's p99 of those waits (ms; 0 without any,
// so that runs pair by round) to *p99s.
func (a *appendTimer) perRun(j *journalFloor, loop func(context.Context) sample, p99s *[]float64) func(context.Context) sample {
	return func(ctx context.Context) sample {
		a.mu.Lock()
		a.floor, a.on, a.samples = j, true, nil
		a.mu.Unlock()
		s := loop(ctx)
		var p99 float64
		if ds := a.stop(); len(ds) > 0 {
			p99 = p99ms(ds)
		}
		*p99s = append(*p99s, p99)
		return s
	}
}

// stop sends appends to the store again, stops recording and hands over
// the samples, sorted, in one step: an append to the store after it is not
// the run's.
func (a *appendTimer) stop() []time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.samples
	a.floor, a.on, a.samples = nil, false, nil
	slices.Sort(out)
	return out
}
