package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Recorded is one past decision as the audit trail keeps it: the policy
// input (attributes, never payload) and whether it was allowed.
type Recorded struct {
	Seq       uint64
	RequestID string
	Input     string
	Allowed   bool
}

// Change is a past decision that a proposed policy set would decide
// differently from the set in force, or differently from what was
// recorded at the time.
type Change struct {
	Seq       uint64   `json:"seq"`
	RequestID string   `json:"request_id"`
	Caller    string   `json:"caller"`
	Action    string   `json:"action"`
	Resource  string   `json:"resource"`
	Before    Decision `json:"before"`
	After     Decision `json:"after"`
	Added     []string `json:"fields_added,omitempty"`
	Removed   []string `json:"fields_removed,omitempty"`
	// ItemsAdded and ItemsRemoved name the goods items, by HS heading (or
	// chapter, for items coded to two digits only), whose release the
	// proposed set adds or removes: a narrower HS condition changes which
	// lines of a declaration leave, not which fields.
	ItemsAdded   []string `json:"goods_items_added,omitempty"`
	ItemsRemoved []string `json:"goods_items_removed,omitempty"`
	// Drifted is set when the set in force no longer decides as recorded
	// (the policy changed since): Before is then today's decision.
	Drifted bool `json:"drifted,omitempty"`
}

// Summary says in one line what changes.
func (c Change) Summary() string {
	var parts []string
	switch {
	case c.Before.Allow && !c.After.Allow:
		parts = append(parts, fmt.Sprintf("allow→deny (%s: %s)", c.After.Code, strings.Join(c.After.Reasons, "; ")))
	case !c.Before.Allow && c.After.Allow:
		parts = append(parts, fmt.Sprintf("deny→allow under %s/%s", c.After.Agreement, c.After.Grant))
	case c.Before.Agreement != c.After.Agreement || c.Before.Grant != c.After.Grant:
		parts = append(parts, fmt.Sprintf("agreement %s/%s→%s/%s", c.Before.Agreement, c.Before.Grant, c.After.Agreement, c.After.Grant))
	}
	if len(c.Added) > 0 {
		parts = append(parts, "fields added: "+strings.Join(c.Added, ", "))
	}
	if len(c.Removed) > 0 {
		parts = append(parts, "fields removed: "+strings.Join(c.Removed, ", "))
	}
	if len(c.ItemsAdded) > 0 {
		parts = append(parts, "goods items added: HS "+strings.Join(c.ItemsAdded, ", "))
	}
	if len(c.ItemsRemoved) > 0 {
		parts = append(parts, "goods items removed: HS "+strings.Join(c.ItemsRemoved, ", "))
	}
	if !slices.Equal(c.Before.Mask, c.After.Mask) || !slices.Equal(c.Before.Pseudonymize, c.After.Pseudonymize) {
		parts = append(parts, "masking/pseudonymisation changed")
	}
	if c.Before.Allow && c.After.Allow && !termsEqual(c.Before, c.After) {
		parts = append(parts, "obligations or limits changed")
	}
	if c.Drifted {
		parts = append(parts, "(the policy in force already decides differently from the record)")
	}
	return strings.Join(parts, "; ")
}

// Diff replays recorded decisions under current and proposed and returns
// those that would change, with the number replayed. each calls its
// argument once per recorded decision.
func Diff(ctx context.Context, current, proposed *Set, each func(func(Recorded) error) error) ([]Change, int, error) {
	var (
		out []Change
		n   int
	)
	err := each(func(r Recorded) error {
		var doc map[string]any
		if err := json.Unmarshal([]byte(r.Input), &doc); err != nil {
			return fmt.Errorf("record %d: stored policy input is not JSON: %w", r.Seq, err)
		}
		n++
		before, err := current.Decide(ctx, doc)
		if err != nil {
			return fmt.Errorf("record %d: current policy: %w", r.Seq, err)
		}
		after, err := proposed.Decide(ctx, doc)
		if err != nil {
			return fmt.Errorf("record %d: proposed policy: %w", r.Seq, err)
		}
		c := Change{Seq: r.Seq, RequestID: r.RequestID, Before: before, After: after, Drifted: before.Allow != r.Allowed}
		c.Caller, _ = lookup(doc, "caller", "id").(string)
		c.Action, _ = doc["action"].(string)
		c.Resource, _ = lookup(doc, "resource", "id").(string)
		if before.Allow || after.Allow {
			c.Added = minus(after.Fields, before.Fields)
			c.Removed = minus(before.Fields, after.Fields)
			items := itemGroups(doc)
			was, is := releasedItems(items, before), releasedItems(items, after)
			c.ItemsAdded, c.ItemsRemoved = minus(is, was), minus(was, is)
		}
		if before.Allow != after.Allow || r.Allowed != after.Allow || before.Agreement != after.Agreement || before.Grant != after.Grant ||
			len(c.Added) > 0 || len(c.Removed) > 0 || len(c.ItemsAdded) > 0 || len(c.ItemsRemoved) > 0 ||
			!slices.Equal(before.Mask, after.Mask) || !slices.Equal(before.Pseudonymize, after.Pseudonymize) ||
			(before.Allow && after.Allow && !termsEqual(before, after)) {
			out = append(out, c)
		}
		return nil
	})
	return out, n, err
}

// termsEqual compares what binds the recipient besides the fields.
func termsEqual(a, b Decision) bool {
	return a.Obligations.RetentionDays == b.Obligations.RetentionDays && a.Obligations.OnwardSharing == b.Obligations.OnwardSharing &&
		a.Obligations.Attribution == b.Obligations.Attribution && slices.Equal(a.Obligations.OnwardRecipients, b.Obligations.OnwardRecipients) &&
		a.MaxResults == b.MaxResults && a.RateLimit == b.RateLimit && slices.Equal(a.Withhold, b.Withhold)
}

// itemGroups are the goods items of the recorded resource as far as its
// policy input tells them apart: each HS heading, and each chapter no
// heading falls under (items coded to two or three digits). The input
// holds sets, so two items of one heading are one group; that is also the
// finest distinction an HS condition can make, except that an item coded
// to fewer than four digits in a chapter that also has four-digit items
// is not told apart from them. (A record whose input names no headings
// cannot meet a heading condition, so no allow it gets filters by
// heading.)
func itemGroups(doc map[string]any) []string {
	attrs, _ := lookup(doc, "resource", "attributes").(map[string]any)
	headings := stringList(attrs["hs_headings"])
	groups := slices.Clone(headings)
	for _, c := range stringList(attrs["hs_chapters"]) {
		if !slices.ContainsFunc(headings, func(h string) bool { return strings.HasPrefix(h, c) }) {
			groups = append(groups, c)
		}
	}
	slices.Sort(groups)
	return groups
}

// releasedItems are the groups a decision releases, by the rule of
// release.ItemFilter: an item is kept when its code is in every list the
// filter sets; a deny releases none.
func releasedItems(groups []string, d Decision) []string {
	if !d.Allow {
		return nil
	}
	var out []string
	for _, g := range groups {
		if inList(d.GoodsItems.HSChapters, g, 2) && inList(d.GoodsItems.HSHeadings, g, 4) {
			out = append(out, g)
		}
	}
	return out
}

func inList(list []string, hs string, n int) bool {
	return len(list) == 0 || len(hs) >= n && slices.Contains(list, hs[:n])
}

func stringList(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func lookup(doc map[string]any, keys ...string) any {
	var v any = doc
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
