package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/borderlink/borderlink/internal/client"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// clientFlags are the flags of every command that calls the own gateway.
func clientFlags(fs *flag.FlagSet) *client.Options {
	o := &client.Options{}
	fs.StringVar(&o.Address, "gateway", "", "own gateway address host:port (env "+client.EnvAddress+")")
	fs.StringVar(&o.CertFile, "cert", "", "your certificate, a system SPIFFE ID of your domain (env "+client.EnvCert+")")
	fs.StringVar(&o.KeyFile, "key", "", "your private key (env "+client.EnvKey+")")
	fs.StringVar(&o.BundleFile, "bundle", "", "CA bundle of your own trust domain (env "+client.EnvBundle+")")
	return o
}

func dial(ctx context.Context, e *env, o *client.Options) (*grpc.ClientConn, error) {
	opts := *o
	fill := func(v *string, name string) {
		if *v == "" {
			*v = e.getenv(name)
		}
	}
	fill(&opts.Address, client.EnvAddress)
	fill(&opts.CertFile, client.EnvCert)
	fill(&opts.KeyFile, client.EnvKey)
	fill(&opts.BundleFile, client.EnvBundle)
	cc, _, err := client.Dial(ctx, opts)
	if errors.Is(err, client.ErrMissingOption) {
		return nil, usagef("%v", err)
	}
	return cc, err
}

const queryUsage = `query declaration --peer DOMAIN --purpose P ID
       borderlink query risk --peer DOMAIN --purpose P ID
       borderlink query search --peer DOMAIN --purpose P [--hs-chapter 85,84] [--export-country NL] [--destination-country SG] [--after RFC3339] [--before RFC3339] [--limit N]`

func runQuery(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(e.stderr, "Usage: borderlink %s\n", queryUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return flag.ErrHelp
		}
		return usagef("query: name what to ask for: declaration, search or risk")
	}
	what := args[0]
	fs := newFlagSet(e, "query "+what, queryUsage+"\n\nPrints the release as protojson on stdout; on refusal prints the gRPC code and reason on stderr and exits 3 (denied), 4 (not found) or 1.")
	co := clientFlags(fs)
	peer := fs.String("peer", "", "partner trust domain to ask, e.g. sg.customs.example")
	purpose := fs.String("purpose", "", "purpose of the request, as named in the agreement, e.g. risk-assessment")
	chapters := fs.String("hs-chapter", "", "search: comma-separated two-digit HS chapters")
	exportCountry := fs.String("export-country", "", "search: country of export (ISO 3166-1 alpha-2)")
	destCountry := fs.String("destination-country", "", "search: country of destination (ISO 3166-1 alpha-2)")
	after := fs.String("after", "", "search: accepted at or after this RFC 3339 time")
	before := fs.String("before", "", "search: accepted before this RFC 3339 time")
	limit := fs.Uint("limit", 0, "search: maximum results (0 = your gateway's limits.search_default; the partner may cap it further)")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if *peer == "" || *purpose == "" {
		return usagef("query %s: --peer and --purpose are required", what)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	switch what {
	case "declaration", "risk":
		if fs.NArg() != 1 {
			return usagef("query %s: give exactly one record ID", what)
		}
		cc, err := dial(ctx, e, co)
		if err != nil {
			return err
		}
		defer cc.Close()
		lc := blv1.NewLocalClient(cc)
		var resp proto.Message
		if what == "declaration" {
			resp, err = lc.GetPartnerDeclaration(ctx, &blv1.GetPartnerDeclarationRequest{Partner: *peer, Id: fs.Arg(0), Purpose: *purpose})
		} else {
			resp, err = lc.GetPartnerRiskAssessment(ctx, &blv1.GetPartnerRiskAssessmentRequest{Partner: *peer, Id: fs.Arg(0), Purpose: *purpose})
		}
		if err != nil {
			return err
		}
		return printJSON(e.stdout, resp, true)
	case "search":
		if fs.NArg() != 0 {
			return usagef("query search: unexpected argument %q", fs.Arg(0))
		}
		filter := &blv1.DeclarationFilter{ExportCountry: *exportCountry, DestinationCountry: *destCountry}
		if *chapters != "" {
			filter.HsChapters = strings.Split(*chapters, ",")
		}
		for _, t := range []struct {
			flag string
			val  string
			dst  **timestamppb.Timestamp
		}{{"--after", *after, &filter.AcceptedAfter}, {"--before", *before, &filter.AcceptedBefore}} {
			if t.val == "" {
				continue
			}
			ts, err := time.Parse(time.RFC3339, t.val)
			if err != nil {
				return usagef("query search: %s %q is not an RFC 3339 time like 2026-11-01T00:00:00Z", t.flag, t.val)
			}
			*t.dst = timestamppb.New(ts)
		}
		cc, err := dial(ctx, e, co)
		if err != nil {
			return err
		}
		defer cc.Close()
		stream, err := blv1.NewLocalClient(cc).SearchPartnerDeclarations(ctx, &blv1.SearchPartnerDeclarationsRequest{
			Partner: *peer, Filter: filter, Purpose: *purpose, Limit: uint32(*limit),
		})
		if err != nil {
			return err
		}
		for {
			item, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			if err := printJSON(e.stdout, item, false); err != nil {
				return err
			}
		}
	}
	return usagef("query: unknown kind %q: use declaration, search or risk", what)
}

// printJSON writes protojson with the .proto field names, so the output
// uses the same paths as agreements and audit records.
func printJSON(w io.Writer, m proto.Message, indent bool) error {
	opts := protojson.MarshalOptions{UseProtoNames: true}
	if indent {
		opts.Multiline = true
		opts.Indent = "  "
	}
	b, err := opts.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
