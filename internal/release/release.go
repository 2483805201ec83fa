// Package release applies a policy decision to a record message: it builds a
// new message of the same type that carries only what the decision releases,
// with the fields it names masked or pseudonymised.
//
// Guarantee: nothing outside the allow-list (Rules.Fields) is ever populated
// in the output. The package fails closed everywhere else too:
//
//   - The output is built from an empty message, field by field; a field is
//     copied only when an allow-list path covers it. Nothing is copied and then
//     removed, so a field the code does not understand stays out. A message
//     field released as it is (nothing masked, pseudonymised or withheld in
//     it) is copied in one deep copy only after its whole subtree has been
//     inspected and holds nothing the field-by-field copy would leave out;
//     otherwise it too is copied field by field.
//   - Unknown fields (bytes the type does not describe) and extensions are
//     never copied.
//   - A masked or pseudonymised field that is not a string (number, bool,
//     enum, bytes, message value, map) cannot be transformed without leaking
//     something, so it is dropped: not released and not listed.
//   - Masking replaces a string, and each element of a repeated string, with
//     "***" whatever its length. Pseudonymising replaces it with
//     Pseudonymizer.Pseudonym; an empty string has no pseudonym (it would be
//     a recognisable constant), so it stays unpopulated and is left out of a
//     repeated field. Mask beats pseudonymise when both cover a field.
//   - Mask and Pseudonymize paths only transform what Fields releases; on
//     their own they release nothing.
//   - Paths that name nothing (typos, paths through a leaf) are ignored; they
//     can only fail to release. CheckPaths is where they are reported.
//   - Messages with no released field are left unset, and elements of
//     repeated message fields with no released field are left out, so the
//     output does not reveal that a party or a goods item exists unless
//     something in it is released.
//
// Field paths are proto field names joined by dots ("importer.tax_id",
// "goods_items.hs_code"). Repeated message fields are traversed element-wise
// and paths never mention indexes. A path naming a message field covers its
// whole subtree.
//
// Messages declared in the google.protobuf package (Timestamp, Duration,
// wrappers, Struct, Any, ...) and map fields are leaf values: the path
// "acceptance_time" releases the whole Timestamp and is listed as
// "acceptance_time"; "acceptance_time.seconds" names nothing. Masking or
// pseudonymising such a value drops it.
//
// Apply, CheckPaths and Digest are pure functions; a Pseudonymizer is
// immutable. All of them are safe for concurrent use.
package release

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// maskValue replaces every masked string. It is fixed so that the length of
// the original value does not leak.
const maskValue = "***"

// Rules is the part of a policy decision the release needs. Paths are proto
// field names joined by dots, e.g. "importer.tax_id", "goods_items.hs_code";
// repeated message fields are traversed element-wise (the path does not
// mention indexes); a path naming a message field covers its whole subtree.
type Rules struct {
	Fields       []string // allow-list; a field is released only if covered by one of these
	Mask         []string // released fields under these paths are masked
	Pseudonymize []string // released fields under these paths are replaced by a pseudonym
	// Withhold removes these paths and their subtrees even where Fields
	// covers them (national rules): "importer.tax_id" withheld under a
	// released "importer" releases the rest of the importer.
	Withhold []string
	// GoodsItems keeps, in a declaration, only the goods items whose
	// hs_code starts with one of HSChapters (if set) and with one of
	// HSHeadings (if set); a grant limited to food does not release the
	// electronics lines of a mixed consignment. Other messages ignore it.
	GoodsItems ItemFilter
}

// ItemFilter selects goods items by HS code prefix; empty lists select all.
type ItemFilter struct {
	HSChapters []string
	HSHeadings []string
}

func (f ItemFilter) keeps(hs string) bool {
	return matchesPrefix(f.HSChapters, hs, 2) && matchesPrefix(f.HSHeadings, hs, 4)
}

func matchesPrefix(list []string, hs string, n int) bool {
	if len(list) == 0 {
		return true
	}
	return len(hs) >= n && slices.Contains(list, hs[:n])
}

// narrowGoodsItems returns msg, or a copy of it without the goods items
// the filter drops (messages without a goods_items list of items with an
// hs_code are returned as they are).
func narrowGoodsItems(msg proto.Message, f ItemFilter) proto.Message {
	if len(f.HSChapters) == 0 && len(f.HSHeadings) == 0 {
		return msg
	}
	fd := msg.ProtoReflect().Descriptor().Fields().ByName("goods_items")
	if fd == nil || !fd.IsList() || fd.Message() == nil {
		return msg
	}
	hs := fd.Message().Fields().ByName("hs_code")
	if hs == nil || hs.Kind() != protoreflect.StringKind {
		return msg
	}
	c := proto.Clone(msg).ProtoReflect()
	if !c.Has(fd) {
		return c.Interface()
	}
	l := c.Mutable(fd).List()
	kept := 0
	for i := range l.Len() {
		if it := l.Get(i); f.keeps(it.Message().Get(hs).String()) {
			l.Set(kept, it)
			kept++
		}
	}
	l.Truncate(kept)
	if kept == 0 {
		c.Clear(fd)
	}
	return c.Interface()
}

// Result lists the populated leaf paths of the released message: sorted,
// deduplicated and index-free (e.g. "goods_items.hs_code"). Masked and
// Pseudonymized are subsets of Fields. A slice is nil when it has no paths.
type Result struct {
	Fields        []string
	Masked        []string
	Pseudonymized []string
}

// Apply returns a new message of the same type containing only what rules
// release; msg is not modified and the output shares no memory with it.
//
// recipient is the caller's SPIFFE ID and scopes pseudonyms. p may be nil only
// if rules.Pseudonymize is empty; otherwise Apply returns an error rather than
// releasing values in clear. For the same reason recipient must not be empty
// when rules.Pseudonymize is not: pseudonyms for "" would be shared by every
// caller whose identity got lost on the way.
func Apply(msg proto.Message, rules Rules, recipient string, p *Pseudonymizer) (proto.Message, Result, error) {
	return apply(msg, rules, recipient, p, true)
}

// apply is Apply; whole=false copies every subtree field by field, which
// the tests compare the whole copies against.
func apply(msg proto.Message, rules Rules, recipient string, p *Pseudonymizer, whole bool) (proto.Message, Result, error) {
	if msg == nil {
		return nil, Result{}, errors.New("release: apply: nil message")
	}
	if !msg.ProtoReflect().IsValid() {
		return nil, Result{}, fmt.Errorf("release: apply %s: nil message", msg.ProtoReflect().Descriptor().FullName())
	}
	src := narrowGoodsItems(msg, rules.GoodsItems).ProtoReflect()
	name := src.Descriptor().FullName()
	w := walker{
		at:   &pathNode{released: -1},
		path: make([]byte, 0, 64), // the deepest path of the shipped types fits
	}
	if len(rules.Pseudonymize) > 0 {
		if p == nil {
			return nil, Result{}, fmt.Errorf("release: apply %s: rules pseudonymise %d paths but no pseudonymizer was given", name, len(rules.Pseudonymize))
		}
		if recipient == "" {
			return nil, Result{}, fmt.Errorf("release: apply %s: rules pseudonymise %d paths but the recipient is empty", name, len(rules.Pseudonymize))
		}
		w.pseudonym = p.forRecipient(recipient)
	}

	w.whole = whole
	dst := src.New()
	w.message(src, dst,
		cursor{n: newTrie(rules.Fields)},
		cursor{n: newTrie(rules.Mask)},
		cursor{n: newTrie(rules.Pseudonymize)},
		cursor{n: newTrie(rules.Withhold)})
	return dst.Interface(), w.result(), nil
}

// trie holds rule paths segment by segment, so that walking a message costs
// one map lookup per field and rule set, whatever the number of paths.
type trie struct {
	children map[string]*trie
	// terminal is set when a path ends here: it covers this field's subtree.
	terminal bool
}

// newTrie splits paths on dots without cleaning them up: "", "a..b" or "a."
// contain an empty segment, which matches no field name, so a malformed path
// releases nothing instead of being guessed at.
func newTrie(paths []string) *trie {
	root := &trie{}
	for _, path := range paths {
		n := root
		for seg := range strings.SplitSeq(path, ".") {
			c := n.children[seg]
			if c == nil {
				if n.children == nil {
					n.children = map[string]*trie{}
				}
				c = &trie{}
				n.children[seg] = c
			}
			n = c
		}
		n.terminal = true
	}
	return root
}

// cursor is a position in a trie while walking a message: covered when a rule
// path ends at this field or above it; n is non-nil while rule paths continue
// below this field.
type cursor struct {
	n       *trie
	covered bool
}

func (c cursor) child(name protoreflect.Name) cursor {
	if c.covered {
		return cursor{covered: true}
	}
	if c.n == nil {
		return cursor{}
	}
	n := c.n.children[string(name)]
	return cursor{n: n, covered: n != nil && n.terminal}
}

// live reports whether some rule path reaches this field or its subtree.
func (c cursor) live() bool { return c.covered || c.n != nil }

type walker struct {
	pseudonym func(string) string // nil when the rules pseudonymise nothing
	// at is the node of the field being walked in a tree of the paths
	// walked so far, and path its dotted path, kept in one buffer. A leaf
	// released in every goods item is the same path each time: finding it
	// by field index, not by hashing its name, and copying its name only
	// the first time, is what keeps the walk's cost per list element low.
	at   *pathNode
	path []byte
	// released lists each leaf path released, once, however many list
	// elements released it.
	released []releasedPath
	// whole lets a subtree released as it is be copied in one deep copy
	// (see wholeField).
	whole bool
}

// pathNode is one field path walked; kids are indexed by the field's
// index in its message.
type pathNode struct {
	kids     []*pathNode
	released int // index in walker.released, or -1
}

// releasedPath says how a leaf path was released.
type releasedPath struct {
	path                  string
	masked, pseudonymized bool
}

// mark is where enter found the walk, to return to in leave.
type mark struct {
	at *pathNode
	n  int
}

// enter moves the walk into field fd of the message at the current path.
func (w *walker) enter(fd protoreflect.FieldDescriptor) mark {
	m := mark{at: w.at, n: len(w.path)}
	if m.n > 0 {
		w.path = append(w.path, '.')
	}
	w.path = append(w.path, fd.Name()...)
	i := fd.Index()
	if i >= len(w.at.kids) {
		w.at.kids = append(w.at.kids, make([]*pathNode, i+1-len(w.at.kids))...)
	}
	k := w.at.kids[i]
	if k == nil {
		k = &pathNode{released: -1}
		w.at.kids[i] = k
	}
	w.at = k
	return m
}

func (w *walker) leave(m mark) { w.at, w.path = m.at, w.path[:m.n] }

// note records that the leaf field being walked was released as masked and
// pseudonymized say.
func (w *walker) note(masked, pseudonymized bool) {
	i := w.at.released
	if i < 0 {
		i = len(w.released)
		w.at.released = i
		w.released = append(w.released, releasedPath{path: string(w.path)})
	}
	r := &w.released[i]
	r.masked = r.masked || masked
	r.pseudonymized = r.pseudonymized || pseudonymized
}

// result lists the paths noted, each list sorted.
func (w *walker) result() Result {
	var r Result
	for _, p := range w.released {
		r.Fields = append(r.Fields, p.path)
		if p.masked {
			r.Masked = append(r.Masked, p.path)
		}
		if p.pseudonymized {
			r.Pseudonymized = append(r.Pseudonymized, p.path)
		}
	}
	slices.Sort(r.Fields)
	slices.Sort(r.Masked)
	slices.Sort(r.Pseudonymized)
	return r
}

// message copies the released part of src into dst, which must be empty, and
// reports whether it populated anything.
func (w *walker) message(src, dst protoreflect.Message, allow, mask, pseud, withhold cursor) bool {
	populated := false
	// Iterating the descriptor rather than src.Range keeps extensions and
	// unknown fields out: only fields the type declares can be released.
	fds := src.Descriptor().Fields()
	for i := range fds.Len() {
		fd := fds.Get(i)
		a := allow.child(fd.Name())
		wh := withhold.child(fd.Name())
		if !a.live() || wh.covered || !src.Has(fd) {
			continue
		}
		if w.field(src, dst, fd, a, mask.child(fd.Name()), pseud.child(fd.Name()), wh) {
			populated = true
		}
	}
	return populated
}

// field releases the part of src's field fd that the cursors, already
// moved to fd, cover into dst, and reports whether it populated anything.
func (w *walker) field(src, dst protoreflect.Message, fd protoreflect.FieldDescriptor, a, m, ps, wh cursor) bool {
	defer w.leave(w.enter(fd))
	if w.whole && a.covered && !m.live() && !ps.live() && !wh.live() && isTraversed(fd) {
		if populated, done := w.wholeField(src, dst, fd); done {
			return populated
		}
	}
	switch {
	case isTraversed(fd) && fd.IsList():
		srcList := src.Get(fd).List()
		out := dst.NewField(fd)
		dstList := out.List()
		for j := range srcList.Len() {
			el := dstList.NewElement()
			if w.message(srcList.Get(j).Message(), el.Message(), a, m, ps, wh) {
				dstList.Append(el)
			}
		}
		if dstList.Len() == 0 {
			return false
		}
		dst.Set(fd, out)
		return true
	case isTraversed(fd):
		out := dst.NewField(fd)
		if !w.message(src.Get(fd).Message(), out.Message(), a, m, ps, wh) {
			return false
		}
		dst.Set(fd, out)
		return true
	case !a.covered:
		// A rule path continues below a leaf ("importer.name.x"): it
		// names nothing, so it releases nothing.
		return false
	default:
		return w.leaf(src, dst, fd, m.covered, ps.covered)
	}
}

// wholeField releases src's message field fd, which the rules release
// as it is (covered, nothing masked, pseudonymised or withheld beneath it),
// with one deep copy instead of field by field: in a 10 KB declaration
// that is most of the walk (its goods items), and a copy through
// protoreflect boxes every value it sets.
//
// The copy must be exactly what the field-by-field walk would build, so
// it is made only when that is plain from the subtree: no unknown fields
// and no message type with extension ranges anywhere in it (those stay
// behind), and no message in it that the walk would leave out for having
// nothing released (an empty goods item, an empty nested message). The
// subtree is inspected first, noting its populated leaves; done is false
// when it does not qualify, and the caller then walks it field by field
// (which notes the same leaves again). The copy is made by merging a
// message that holds only fd, aliasing src's value, into dst, whose fd is
// still unset.
func (w *walker) wholeField(src, dst protoreflect.Message, fd protoreflect.FieldDescriptor) (populated, done bool) {
	v := src.Get(fd)
	if fd.IsList() {
		l := v.List()
		for i := range l.Len() {
			if !w.plain(l.Get(i).Message()) {
				return false, false
			}
		}
	} else if !w.plain(v.Message()) {
		return false, false
	}
	only := src.New()
	only.Set(fd, v)
	proto.Merge(dst.Interface(), only.Interface())
	return true, true
}

// plain reports whether m qualifies for a whole copy (see wholeField):
// it has something released and nothing that the field-by-field walk
// would drop. It notes the populated leaves on the way.
func (w *walker) plain(m protoreflect.Message) bool {
	if !clean(m) {
		return false
	}
	populated := false
	fds := m.Descriptor().Fields()
	for i := range fds.Len() {
		fd := fds.Get(i)
		if !m.Has(fd) {
			continue
		}
		at := w.enter(fd)
		ok := true
		switch {
		case isTraversed(fd) && fd.IsList():
			l := m.Get(fd).List()
			for j := 0; ok && j < l.Len(); j++ {
				ok = w.plain(l.Get(j).Message())
			}
		case isTraversed(fd):
			ok = w.plain(m.Get(fd).Message())
		default:
			if ok = cleanValue(fd, m.Get(fd)); ok {
				w.note(false, false)
			}
		}
		w.leave(at)
		if !ok {
			return false
		}
		populated = true
	}
	return populated
}

// clean reports whether m itself holds nothing a copy of its declared
// fields would leave behind: unknown fields, or extensions, which only a
// type with extension ranges can have.
func clean(m protoreflect.Message) bool {
	return len(m.GetUnknown()) == 0 && m.Descriptor().ExtensionRanges().Len() == 0
}

// cleanValue reports whether the message values in a leaf field's value
// (a google.protobuf message, a map's message values, recursively) are
// all clean. Scalars are.
func cleanValue(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
	switch {
	case fd.IsMap():
		if k := fd.MapValue().Kind(); k != protoreflect.MessageKind && k != protoreflect.GroupKind {
			return true
		}
		ok := true
		v.Map().Range(func(_ protoreflect.MapKey, e protoreflect.Value) bool {
			ok = cleanMessage(e.Message())
			return ok
		})
		return ok
	case fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind:
		return true
	case fd.IsList():
		l := v.List()
		for i := range l.Len() {
			if !cleanMessage(l.Get(i).Message()) {
				return false
			}
		}
		return true
	default:
		return cleanMessage(v.Message())
	}
}

// cleanMessage reports whether m and every message in it are clean.
func cleanMessage(m protoreflect.Message) bool {
	if !clean(m) {
		return false
	}
	ok := true
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		ok = cleanValue(fd, v)
		return ok
	})
	return ok
}

// leaf releases one covered leaf field of src into dst, transformed as the
// rules say, and reports whether it did.
func (w *walker) leaf(src, dst protoreflect.Message, fd protoreflect.FieldDescriptor, masked, pseudonymized bool) bool {
	v := src.Get(fd)
	stringLeaf := fd.Kind() == protoreflect.StringKind && !fd.IsMap()
	var ok bool
	switch {
	case masked: // mask beats pseudonymise: it gives away less
		if !stringLeaf {
			return false
		}
		v, ok = mapStrings(dst, fd, v, func(string) (string, bool) { return maskValue, true })
	case pseudonymized:
		if !stringLeaf {
			return false
		}
		v, ok = mapStrings(dst, fd, v, func(s string) (string, bool) {
			// A pseudonym of "" would be a recognisable constant; an empty
			// value stays unpopulated (and leaves a repeated field).
			if s == "" {
				return "", false
			}
			return w.pseudonym(s), true
		})
	default:
		v, ok = copyValue(dst, fd, v), true
	}
	if !ok {
		return false
	}
	dst.Set(fd, v)
	w.note(masked, pseudonymized && !masked)
	return true
}

// mapStrings applies f to a string field's value, or to each element of a
// repeated string field, keeping only the results f accepts. It reports
// whether anything is left.
func mapStrings(dst protoreflect.Message, fd protoreflect.FieldDescriptor, v protoreflect.Value, f func(string) (string, bool)) (protoreflect.Value, bool) {
	if !fd.IsList() {
		s, ok := f(v.String())
		return protoreflect.ValueOfString(s), ok
	}
	out := dst.NewField(fd)
	list, src := out.List(), v.List()
	for i := range src.Len() {
		if s, ok := f(src.Get(i).String()); ok {
			list.Append(protoreflect.ValueOfString(s))
		}
	}
	return out, list.Len() > 0
}

// copyValue deep-copies a field value for dst: the output must not alias the
// input (a caller mutating the release must not change the stored record),
// and unknown fields inside message values must not travel along.
func copyValue(dst protoreflect.Message, fd protoreflect.FieldDescriptor, v protoreflect.Value) protoreflect.Value {
	switch {
	case fd.IsList():
		out := dst.NewField(fd)
		list, src := out.List(), v.List()
		for i := range src.Len() {
			list.Append(copySingular(fd, src.Get(i), list.NewElement))
		}
		return out
	case fd.IsMap():
		out := dst.NewField(fd)
		m := out.Map()
		v.Map().Range(func(k protoreflect.MapKey, e protoreflect.Value) bool {
			m.Set(k, copySingular(fd.MapValue(), e, m.NewValue))
			return true
		})
		return out
	default:
		return copySingular(fd, v, func() protoreflect.Value { return dst.NewField(fd) })
	}
}

// copySingular copies one scalar or message value; newMessage makes the empty
// message a message value is copied into.
func copySingular(fd protoreflect.FieldDescriptor, v protoreflect.Value, newMessage func() protoreflect.Value) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes(bytes.Clone(v.Bytes()))
	case protoreflect.MessageKind, protoreflect.GroupKind:
		out := newMessage()
		copyKnown(v.Message(), out.Message())
		return out
	default:
		return v
	}
}

// copyKnown copies every declared field of src into dst, leaving unknown
// fields and extensions behind.
func copyKnown(src, dst protoreflect.Message) {
	fds := src.Descriptor().Fields()
	for i := range fds.Len() {
		fd := fds.Get(i)
		if src.Has(fd) {
			dst.Set(fd, copyValue(dst, fd, src.Get(fd)))
		}
	}
}

// isTraversed reports whether paths continue into the field's message type.
// Maps and google.protobuf messages are leaf values (see the package doc).
func isTraversed(fd protoreflect.FieldDescriptor) bool {
	if fd.IsMap() {
		return false
	}
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return !isWellKnown(fd.Message())
	default:
		return false
	}
}

func isWellKnown(md protoreflect.MessageDescriptor) bool {
	f := md.ParentFile()
	return f != nil && f.Package() == "google.protobuf"
}
