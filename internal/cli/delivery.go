package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

func runPublish(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "publish", "publish [--purpose P] [client flags] FILE.json\n\nStores one risk assessment (protojson, as in an import line's \"risk_assessment\" object, or a whole {\"risk_assessment\": {...}} line) in your own gateway and queues it for every partner the agreements entitle to it (action alert.deliver). Prints one line per partner queued.")
	co := clientFlags(fs)
	purpose := fs.String("purpose", "", "purpose the alert is pushed for (default risk-assessment)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("publish: give exactly one file (use - for standard input)")
	}
	name := fs.Arg(0)
	var (
		b   []byte
		err error
	)
	if name == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	risk, err := parseRisk(b)
	if err != nil {
		return fmt.Errorf("publish %s: %w", name, err)
	}
	cc, err := dial(ctx, e, co)
	if err != nil {
		return err
	}
	defer cc.Close()
	resp, err := blv1.NewIngestClient(cc).PublishAlert(ctx, &blv1.PublishAlertRequest{RiskAssessment: risk, Purpose: *purpose})
	if err != nil {
		return err
	}
	if len(resp.GetQueued()) == 0 {
		fmt.Fprintf(e.stdout, "stored %s; no agreement entitles any partner to it, nothing queued\n", risk.GetId())
		return nil
	}
	for _, q := range resp.GetQueued() {
		fmt.Fprintf(e.stdout, "queued %s for %s under %s/%s (message %s)\n", risk.GetId(), q.GetRecipient(), q.GetAgreementId(), q.GetGrantId(), q.GetMessageId())
	}
	return nil
}

// parseRisk accepts a bare RiskAssessment or an IngestRecord holding one.
func parseRisk(b []byte) (*blv1.RiskAssessment, error) {
	strict := protojson.UnmarshalOptions{}
	rec := &blv1.IngestRecord{}
	if err := strict.Unmarshal(b, rec); err == nil && rec.GetRiskAssessment() != nil {
		return rec.GetRiskAssessment(), nil
	}
	risk := &blv1.RiskAssessment{}
	if err := strict.Unmarshal(b, risk); err != nil {
		return nil, fmt.Errorf("not a risk assessment: %w", err)
	}
	return risk, nil
}

const deliveryUsage = `delivery status [--partner DOMAIN] [--list N] [client flags]
       borderlink delivery retry [client flags] MESSAGE_ID
       borderlink delivery cancel [client flags] MESSAGE_ID`

func runDelivery(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		fmt.Fprintf(e.stderr, "Usage: borderlink %s\n", deliveryUsage)
		return usagef("delivery: name a subcommand: status, retry or cancel")
	}
	switch args[0] {
	case "status":
		return deliveryStatus(ctx, e, args[1:])
	case "retry", "cancel":
		return deliveryMove(ctx, e, args[0], args[1:])
	}
	return usagef("delivery: unknown subcommand %q: use status, retry or cancel", args[0])
}

func deliveryStatus(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "delivery status", "delivery status [--partner DOMAIN] [--list N] [client flags]\n\nShows the push queue towards each partner: pending entries, age of the oldest, delivered, refused, cancelled, retries since start, circuit breaker and last error. --list N also lists up to N undelivered entries, oldest first.")
	co := clientFlags(fs)
	partner := fs.String("partner", "", "only this partner (trust domain)")
	list := fs.Uint("list", 0, "also list up to N undelivered entries")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("delivery status takes no arguments")
	}
	cc, err := dial(ctx, e, co)
	if err != nil {
		return err
	}
	defer cc.Close()
	resp, err := blv1.NewAdminClient(cc).DeliveryStatus(ctx, &blv1.DeliveryStatusRequest{Partner: *partner, ListLimit: uint32(*list)})
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTNER\tPENDING\tOLDEST\tDELIVERED\tREFUSED\tCANCELLED\tRETRIES\tBREAKER\tLAST ERROR")
	for _, p := range resp.GetPartners() {
		oldest := "-"
		if p.GetOldestPendingAge() != nil {
			oldest = p.GetOldestPendingAge().AsDuration().Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", p.GetPartner(), p.GetPending(), oldest, p.GetDelivered(),
			p.GetRefused(), p.GetCancelled(), p.GetRetries(), p.GetBreaker(), p.GetLastError())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(resp.GetEntries()) > 0 {
		fmt.Fprintln(e.stdout)
		tw = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "MESSAGE ID\tPARTNER\tRECORD\tSTATE\tATTEMPTS\tCREATED\tLAST ERROR")
		for _, en := range resp.GetEntries() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", en.GetMessageId(), en.GetRecipient(), en.GetRecordId(),
				stateName(en.GetState()), en.GetAttempts(), en.GetCreatedTime().AsTime().Format(time.RFC3339), en.GetLastError())
		}
		return tw.Flush()
	}
	return nil
}

func stateName(s blv1.OutboxState) string {
	switch s {
	case blv1.OutboxState_OUTBOX_STATE_PENDING:
		return "pending"
	case blv1.OutboxState_OUTBOX_STATE_DELIVERED:
		return "delivered"
	case blv1.OutboxState_OUTBOX_STATE_REFUSED:
		return "refused"
	case blv1.OutboxState_OUTBOX_STATE_CANCELLED:
		return "cancelled"
	}
	return s.String()
}

func deliveryMove(ctx context.Context, e *env, what string, args []string) error {
	help := map[string]string{
		"retry":  "delivery retry [client flags] MESSAGE_ID\n\nMakes a pending or refused outbox entry due now (see delivery status --list).",
		"cancel": "delivery cancel [client flags] MESSAGE_ID\n\nStops a pending or refused outbox entry for good: it is not sent again (an attempt already under way may still complete, and is audited).",
	}
	fs := newFlagSet(e, "delivery "+what, help[what])
	co := clientFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("delivery %s: give exactly one message ID", what)
	}
	cc, err := dial(ctx, e, co)
	if err != nil {
		return err
	}
	defer cc.Close()
	admin := blv1.NewAdminClient(cc)
	id := fs.Arg(0)
	if what == "retry" {
		_, err = admin.RetryDelivery(ctx, &blv1.RetryDeliveryRequest{MessageId: id})
	} else {
		_, err = admin.CancelDelivery(ctx, &blv1.CancelDeliveryRequest{MessageId: id})
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: %s\n", id, map[string]string{"retry": "due now", "cancel": "cancelled"}[what])
	return nil
}

func runInbox(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "inbox", "inbox [--sender DOMAIN] [--since RFC3339] [--limit N] [--json] [client flags]\n\nLists the alerts partners pushed to your gateway, oldest first, with who sent them, under which agreement and until when they may be kept. Alerts past their retention are listed without their content.")
	co := clientFlags(fs)
	sender := fs.String("sender", "", "only alerts from this partner (trust domain)")
	since := fs.String("since", "", "only alerts received at or after this time (RFC 3339)")
	limit := fs.Uint("limit", 100, "at most this many (up to 1000)")
	asJSON := fs.Bool("json", false, "print each alert as one protojson line")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("inbox takes no arguments")
	}
	req := &blv1.ListReceivedAlertsRequest{Sender: *sender, Limit: uint32(*limit)}
	if *since != "" {
		t, err := time.Parse(time.RFC3339, *since)
		if err != nil {
			return usagef("inbox: --since %q: %v (e.g. 2026-11-30T00:00:00Z)", *since, err)
		}
		req.Since = timestamppb.New(t)
	}
	cc, err := dial(ctx, e, co)
	if err != nil {
		return err
	}
	defer cc.Close()
	resp, err := blv1.NewLocalClient(cc).ListReceivedAlerts(ctx, req)
	if err != nil {
		return err
	}
	if *asJSON {
		for _, a := range resp.GetAlerts() {
			if err := printJSON(e.stdout, a, false); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RECEIVED\tSENDER\tRISK ID\tSCORE\tLEVEL\tAGREEMENT\tKEEP UNTIL")
	for _, a := range resp.GetAlerts() {
		until := "-"
		if a.GetRetainUntil() != nil {
			until = a.GetRetainUntil().AsTime().Format("2006-01-02")
		}
		id, score, level := "(expired)", "-", "-"
		if r := a.GetAlert().GetRiskAssessment(); r != nil {
			id, score, level = r.GetId(), fmt.Sprintf("%.2f", r.GetScore()), r.GetLevel().String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.GetReceivedTime().AsTime().Format(time.RFC3339), a.GetSender(), id, score, level, a.GetAgreementId(), until)
	}
	return tw.Flush()
}
