package release

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// PathError reports a rule path that names no field. CheckPaths returns one
// per bad path (joined with errors.Join); use errors.As to inspect the first.
type PathError struct {
	Path    string                // the path as given
	Segment string                // the first segment that does not resolve
	Message protoreflect.FullName // the message Segment was looked up in
	// Reason says why Segment does not resolve.
	Reason string
	// Suggestion is the closest existing path, or "" when nothing is close.
	Suggestion string
}

func (e *PathError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "release: path %q: segment %q: %s", e.Path, e.Segment, e.Reason)
	if e.Suggestion != "" {
		fmt.Fprintf(&b, " (did you mean %q?)", e.Suggestion)
	}
	return b.String()
}

// CheckPaths reports the paths that do not name a field of md, as Apply
// resolves them: each error names the path and its first unknown segment and
// suggests the closest existing path. Apply ignores such paths (they cannot
// widen a release); CheckPaths exists so that `policy check` and agreement
// validation can tell the author before a release silently comes out empty.
func CheckPaths(md protoreflect.MessageDescriptor, paths []string) error {
	if md == nil {
		return errors.New("release: check paths: nil message descriptor")
	}
	var errs []error
	for _, path := range paths {
		if err := checkPath(md, path); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func checkPath(root protoreflect.MessageDescriptor, path string) *PathError {
	segs := strings.Split(path, ".")
	md := root
	for i, seg := range segs {
		if md == nil {
			// The previous segment was a leaf: nothing can follow it.
			prev := strings.Join(segs[:i], ".")
			return &PathError{
				Path:       path,
				Segment:    seg,
				Reason:     fmt.Sprintf("%q is a leaf value, paths end there", prev),
				Suggestion: prev,
			}
		}
		perr := &PathError{Path: path, Segment: seg, Message: md.FullName()}
		if path == "" {
			perr.Reason = "empty path"
			return perr
		}
		if seg == "" {
			perr.Reason = "empty segment"
			if fixed := dropEmpty(segs); fixed != path && resolves(root, fixed) {
				perr.Suggestion = fixed
			}
			return perr
		}
		fd := md.Fields().ByName(protoreflect.Name(seg))
		if fd == nil {
			perr.Reason = fmt.Sprintf("no such field in %s", md.FullName())
			if name := closestField(md, seg); name != "" {
				perr.Suggestion = suggest(root, segs, i, name)
			}
			return perr
		}
		md = nil
		if isTraversed(fd) {
			md = fd.Message()
		}
	}
	return nil
}

// suggest replaces segs[i] with name and keeps the rest of the path if the
// result resolves, else cuts the path after name.
func suggest(root protoreflect.MessageDescriptor, segs []string, i int, name string) string {
	fixed := append(append(append([]string(nil), segs[:i]...), name), segs[i+1:]...)
	if full := strings.Join(fixed, "."); resolves(root, full) {
		return full
	}
	return strings.Join(fixed[:i+1], ".")
}

func resolves(md protoreflect.MessageDescriptor, path string) bool {
	return path != "" && checkPath(md, path) == nil
}

func dropEmpty(segs []string) string {
	var kept []string
	for _, s := range segs {
		if s != "" {
			kept = append(kept, s)
		}
	}
	return strings.Join(kept, ".")
}

// closestField returns the field name of md nearest to seg, or "" when none
// is near enough to be a plausible typo. A JSON name ("taxId") or a case
// slip maps to its field at once.
func closestField(md protoreflect.MessageDescriptor, seg string) string {
	norm := func(s string) string { return strings.ReplaceAll(strings.ToLower(s), "_", "") }
	best, bestDist := "", -1
	fds := md.Fields()
	for i := range fds.Len() {
		fd := fds.Get(i)
		name := string(fd.Name())
		if norm(seg) == norm(name) || seg == fd.JSONName() {
			return name
		}
		d := editDistance(strings.ToLower(seg), name)
		if d*3 <= max(len(seg), len(name)) && (bestDist < 0 || d < bestDist) {
			best, bestDist = name, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance: Levenshtein plus
// transposition of adjacent bytes, the commonest typo in a field name.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// Digest returns the lowercase hex SHA-256 of msg's deterministic protobuf
// encoding (proto.MarshalOptions{Deterministic: true}): the digest both
// gateways record in their audit trail for a release.
func Digest(msg proto.Message) (string, error) {
	if msg == nil {
		return "", errors.New("release: digest: nil message")
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return "", fmt.Errorf("release: digest %s: %w", msg.ProtoReflect().Descriptor().FullName(), err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}
