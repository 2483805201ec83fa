package release_test

import (
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/borderlink/borderlink/internal/release"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

// The property and fuzz tests share one oracle, checkApply, written without
// the package's code: coverage is string-prefix matching instead of a trie,
// and the expected Result is derived from the input's leaves.

// recordTypes are the record types a release is applied to.
var recordTypes = []proto.Message{&blv1.Declaration{}, &blv1.RiskAssessment{}, partsRecord.Interface()}

// garbagePaths name nothing; they must never release anything.
var garbagePaths = []string{
	"", ".", "*", "nope", "id.x", ".id", "id.", "Id", "importer.name.x", "importer..name", "importer.*",
	"acceptance_time.seconds", "assessed_time.nanos", "goods_items.hs_code.x", "indicators.code.x",
	"goods_items.0.hs_code", "importer.taxId",
}

func TestApplyProperties(t *testing.T) {
	p := newPseudonymizer(t)
	r := rand.NewChaCha8([32]byte{'b', 'o', 'r', 'd', 'e', 'r', 'l', 'i', 'n', 'k'})
	for i := range 2000 {
		data := make([]byte, 64+i%512)
		_, _ = r.Read(data)
		checkApply(t, p, data)
		if t.Failed() {
			t.Fatalf("case %d failed; fuzz input: %s", i, hex.EncodeToString(data))
		}
	}
}

func FuzzApply(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0})
	f.Add([]byte{1, 1, 4, 4, 4})
	f.Add([]byte("borderlink"))
	f.Add(slices.Repeat([]byte{0xff}, 256))
	seed := make([]byte, 512)
	_, _ = rand.NewChaCha8([32]byte{'s', 'e', 'e', 'd'}).Read(seed)
	f.Add(seed)
	p := newPseudonymizer(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		checkApply(t, p, data)
	})
}

// checkApply draws a record, rules and a recipient from data, applies the
// rules and checks every guarantee of the package against the output.
func checkApply(t *testing.T, p *release.Pseudonymizer, data []byte) {
	t.Helper()
	s := &byteSource{data: data}
	recipient := []string{sgGateway, nzGateway, "spiffe://agency.example/agency/health"}[s.intn(3)]
	msg := recordTypes[s.intn(len(recordTypes))].ProtoReflect().New()
	rules := genRules(s, validPaths(msg.Descriptor(), "", 0))
	genMessage(s, msg, 0)
	in := msg.Interface()
	before := snapshot(t, in)

	out, res, err := release.Apply(in, rules, recipient, p)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if !proto.Equal(in, before) {
		t.Fatalf("Apply modified its input")
	}
	// Subtrees released as they are are copied whole; the output must be
	// the one a copy field by field builds, to the byte and the path.
	slow, slowRes, err := release.ApplyFieldByField(in, rules, recipient, p)
	if err != nil {
		t.Fatalf("ApplyFieldByField: %v", err)
	}
	if !proto.Equal(out, slow) || !reflect.DeepEqual(res, slowRes) {
		t.Fatalf("Apply = %v, %+v; field by field = %v, %+v", out, res, slow, slowRes)
	}
	if d1, d2 := digest(t, out), digest(t, slow); d1 != d2 {
		t.Fatalf("Digest(Apply) = %s, Digest(field by field) = %s", d1, d2)
	}

	// What the input allows us to expect, from its leaves.
	inputValues := map[string]map[string]bool{}
	var wantFields, wantMasked, wantPseud []string
	walkLeaves(t, narrowed(in, rules.GoodsItems).ProtoReflect(), "", false, func(path string, fd protoreflect.FieldDescriptor, v protoreflect.Value) {
		if inputValues[path] == nil {
			inputValues[path] = map[string]bool{}
		}
		elems := elements(fd, v)
		for _, e := range elems {
			inputValues[path][e] = true
		}
		stringLeaf := fd.Kind() == protoreflect.StringKind && !fd.IsMap()
		switch {
		case !covered(rules.Fields, path) || covered(rules.Withhold, path):
		case covered(rules.Mask, path):
			if stringLeaf {
				wantFields, wantMasked = append(wantFields, path), append(wantMasked, path)
			}
		case covered(rules.Pseudonymize, path):
			if stringLeaf && slices.ContainsFunc(elems, func(e string) bool { return e != "" }) {
				wantFields, wantPseud = append(wantFields, path), append(wantPseud, path)
			}
		default:
			wantFields = append(wantFields, path)
		}
	})

	// What the output holds.
	var gotFields, gotMasked, gotPseud []string
	walkLeaves(t, out.ProtoReflect(), "", true, func(path string, fd protoreflect.FieldDescriptor, v protoreflect.Value) {
		gotFields = append(gotFields, path)
		if !covered(rules.Fields, path) {
			t.Errorf("output populates %s, which rules.Fields %q do not cover", path, rules.Fields)
		}
		if covered(rules.Withhold, path) {
			t.Errorf("output populates %s, which rules.Withhold %q withhold", path, rules.Withhold)
		}
		stringLeaf := fd.Kind() == protoreflect.StringKind && !fd.IsMap()
		elems := elements(fd, v)
		switch {
		case covered(rules.Mask, path):
			gotMasked = append(gotMasked, path)
			if !stringLeaf || slices.ContainsFunc(elems, func(e string) bool { return e != "***" }) {
				t.Errorf("masked %s (%v) = %q, want only \"***\" strings", path, fd.Kind(), elems)
			}
		case covered(rules.Pseudonymize, path):
			gotPseud = append(gotPseud, path)
			if !stringLeaf {
				t.Errorf("pseudonymised %s is a %v, want only strings", path, fd.Kind())
			}
			for _, e := range elems {
				if !strings.HasPrefix(e, "ps_") || !isPseudonymOf(p, recipient, e, inputValues[path]) {
					t.Errorf("pseudonymised %s = %q, want a ps_ pseudonym of an input value", path, e)
				}
			}
		default:
			for _, e := range elems {
				if !inputValues[path][e] {
					t.Errorf("released %s = %q, which the input does not hold there", path, e)
				}
			}
		}
	})

	for _, c := range []struct {
		what           string
		got, fromInput []string
		fromOutput     []string
	}{
		{"Fields", res.Fields, wantFields, gotFields},
		{"Masked", res.Masked, wantMasked, gotMasked},
		{"Pseudonymized", res.Pseudonymized, wantPseud, gotPseud},
	} {
		fromOutput := slices.Compact(slices.Sorted(slices.Values(c.fromOutput)))
		fromInput := slices.Compact(slices.Sorted(slices.Values(c.fromInput)))
		if !slices.Equal(c.got, fromOutput) {
			t.Errorf("Result.%s = %q, but the output populates %q", c.what, c.got, fromOutput)
		}
		if !slices.Equal(c.got, fromInput) {
			t.Errorf("Result.%s = %q, but the input and rules call for %q", c.what, c.got, fromInput)
		}
	}

	// The output shares no memory with the input: changing every part of
	// it that could alias (bytes in place, strings, nested messages, list
	// elements, map values) leaves the input as it was. slow, equal to
	// the output, stands in for it from here on.
	scribble(out.ProtoReflect())
	if !proto.Equal(in, before) {
		t.Fatalf("changing the release changed the input")
	}
	out = slow

	// Deterministic, and a release is a fixed point of its own allow-list.
	again, res2, err := release.Apply(in, rules, recipient, p)
	if err != nil || !proto.Equal(again, out) || !slices.Equal(res2.Fields, res.Fields) {
		t.Errorf("second Apply differs: %v, err %v", again, err)
	}
	twice, _, err := release.Apply(out, release.Rules{Fields: rules.Fields}, "", nil)
	if err != nil || !proto.Equal(twice, out) {
		t.Errorf("applying the allow-list to a release changed it: %v, err %v", twice, err)
	}
	d1, err1 := release.Digest(out)
	d2, err2 := release.Digest(again)
	if err1 != nil || err2 != nil || d1 != d2 {
		t.Errorf("Digest of equal releases: %q, %v and %q, %v", d1, err1, d2, err2)
	}
}

func digest(t *testing.T, m proto.Message) string {
	t.Helper()
	d, err := release.Digest(m)
	if err != nil {
		t.Fatalf("Digest: %v", err)
	}
	return d
}

// scribble changes every populated value of m in place, recursively.
func scribble(m protoreflect.Message) {
	var fds []protoreflect.FieldDescriptor
	m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		fds = append(fds, fd)
		return true
	})
	changed := func(fd protoreflect.FieldDescriptor, v protoreflect.Value) (protoreflect.Value, bool) {
		switch fd.Kind() {
		case protoreflect.BytesKind:
			for i, b := range v.Bytes() {
				v.Bytes()[i] = ^b
			}
			return v, false
		case protoreflect.StringKind:
			return protoreflect.ValueOfString(v.String() + "!"), true
		case protoreflect.MessageKind, protoreflect.GroupKind:
			scribble(v.Message())
		}
		return v, false
	}
	for _, fd := range fds {
		switch {
		case fd.IsList():
			l := m.Mutable(fd).List()
			for i := range l.Len() {
				if v, set := changed(fd, l.Get(i)); set {
					l.Set(i, v)
				}
			}
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			var keys []protoreflect.MapKey
			mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
				keys = append(keys, k)
				return true
			})
			for _, k := range keys {
				if v, set := changed(fd.MapValue(), mp.Get(k)); set {
					mp.Set(k, v)
				}
			}
		case fd.Message() != nil:
			scribble(m.Mutable(fd).Message())
		default:
			if v, set := changed(fd, m.Get(fd)); set {
				m.Set(fd, v)
			}
		}
	}
}

// covered reports whether one of rules covers path.
func covered(rules []string, path string) bool {
	for _, r := range rules {
		if path == r || strings.HasPrefix(path, r+".") {
			return true
		}
	}
	return false
}

func isPseudonymOf(p *release.Pseudonymizer, recipient, pseudonym string, values map[string]bool) bool {
	for v := range values {
		if p.Pseudonym(recipient, v) == pseudonym {
			return true
		}
	}
	return false
}

// traversed mirrors the package's rule: maps and google.protobuf messages are
// leaf values, other message fields are walked into.
func traversed(fd protoreflect.FieldDescriptor) bool {
	return fd.Message() != nil && !fd.IsMap() && fd.Message().ParentFile().Package() != "google.protobuf"
}

// validPaths lists every path that names a field of md, message fields
// included.
func validPaths(md protoreflect.MessageDescriptor, prefix string, depth int) []string {
	var out []string
	fds := md.Fields()
	for i := range fds.Len() {
		fd := fds.Get(i)
		path := join(prefix, string(fd.Name()))
		out = append(out, path)
		if traversed(fd) && depth < 6 {
			out = append(out, validPaths(fd.Message(), path, depth+1)...)
		}
	}
	return out
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// walkLeaves calls visit for every populated leaf of m. In an output
// (strict), it also fails on what a release must never hold: unknown fields
// and messages with nothing released in them.
func walkLeaves(t *testing.T, m protoreflect.Message, prefix string, strict bool, visit func(string, protoreflect.FieldDescriptor, protoreflect.Value)) {
	t.Helper()
	if strict && len(m.GetUnknown()) > 0 {
		t.Errorf("output message at %q carries unknown fields", prefix)
	}
	populated := false
	// Range, not the descriptor, so that extensions would be seen too.
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.IsExtension() {
			// No path names an extension: it must never be released.
			if strict {
				t.Errorf("output message at %q carries extension %s", prefix, fd.FullName())
			}
			return true
		}
		populated = true
		path := join(prefix, string(fd.Name()))
		switch {
		case !traversed(fd):
			visit(path, fd, v)
			if strict && fd.Message() != nil && !fd.IsMap() {
				ms := []protoreflect.Value{v}
				if fd.IsList() {
					ms = ms[:0]
					for i := range v.List().Len() {
						ms = append(ms, v.List().Get(i))
					}
				}
				for _, e := range ms {
					if len(e.Message().GetUnknown()) > 0 {
						t.Errorf("output %s carries unknown fields", path)
					}
				}
			}
		case fd.IsList():
			for i := range v.List().Len() {
				walkLeaves(t, v.List().Get(i).Message(), path, strict, visit)
			}
		default:
			walkLeaves(t, v.Message(), path, strict, visit)
		}
		return true
	})
	if strict && !populated && prefix != "" {
		t.Errorf("output holds an empty message at %s", prefix)
	}
}

// elements formats a leaf's value, one string per element of a list or map.
// Strings are given raw so that the "***" and "ps_" checks read them.
func elements(fd protoreflect.FieldDescriptor, v protoreflect.Value) []string {
	switch {
	case fd.IsList():
		var out []string
		for i := range v.List().Len() {
			out = append(out, format(fd, v.List().Get(i)))
		}
		return out
	case fd.IsMap():
		var out []string
		v.Map().Range(func(k protoreflect.MapKey, e protoreflect.Value) bool {
			out = append(out, k.String()+"="+format(fd.MapValue(), e))
			return true
		})
		return out
	default:
		return []string{format(fd, v)}
	}
}

// format prints one value; for messages only declared fields count, since a
// release legitimately drops unknown ones.
func format(fd protoreflect.FieldDescriptor, v protoreflect.Value) string {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return v.String()
	case protoreflect.BytesKind:
		return hex.EncodeToString(v.Bytes())
	case protoreflect.MessageKind, protoreflect.GroupKind:
		var b strings.Builder
		b.WriteString("{")
		fds := fd.Message().Fields()
		for i := range fds.Len() {
			f := fds.Get(i)
			if v.Message().Has(f) {
				fmt.Fprintf(&b, "%s:%q ", f.Name(), elements(f, v.Message().Get(f)))
			}
		}
		b.WriteString("}")
		return b.String()
	default:
		return fmt.Sprint(v.Interface())
	}
}

// byteSource turns fuzz bytes into choices. Once the bytes run out every
// choice is 0, which the generators read as "leave it out", so every input
// describes a finite record.
type byteSource struct{ data []byte }

func (s *byteSource) byte() byte {
	if len(s.data) == 0 {
		return 0
	}
	b := s.data[0]
	s.data = s.data[1:]
	return b
}

func (s *byteSource) intn(n int) int { return int(s.byte()) % n }

func (s *byteSource) uint64() uint64 {
	switch s.intn(3) {
	case 0:
		return 0
	case 1:
		return uint64(s.byte())
	default:
		var v uint64
		for range 8 {
			v = v<<8 | uint64(s.byte())
		}
		return v
	}
}

// genRules draws each set of rule paths from the valid paths plus garbage,
// each set with its own density so that sparse and dense rules both occur.
func genRules(s *byteSource, valid []string) release.Rules {
	candidates := append(slices.Clone(valid), garbagePaths...)
	pick := func() []string {
		density := s.intn(5) // chance of density/8 per path
		if density == 0 {
			return nil
		}
		var out []string
		for _, c := range candidates {
			if s.intn(8) < density {
				out = append(out, c)
			}
		}
		return out
	}
	r := release.Rules{Fields: pick(), Mask: pick(), Pseudonymize: pick(), Withhold: pick()}
	if s.intn(4) == 0 {
		r.GoodsItems.HSChapters = [][]string{{"85"}, {"85", "03"}, {"99"}}[s.intn(3)]
	}
	if s.intn(4) == 0 {
		r.GoodsItems.HSHeadings = [][]string{{"8504"}, {"0302"}}[s.intn(2)]
	}
	return r
}

// narrowed is what the rules' goods item filter leaves of a declaration's
// goods items (other records are left as they are).
func narrowed(in proto.Message, f release.ItemFilter) proto.Message {
	d, ok := in.(*blv1.Declaration)
	if !ok || len(f.HSChapters)+len(f.HSHeadings) == 0 {
		return in
	}
	prefixed := func(list []string, hs string, n int) bool {
		return len(list) == 0 || len(hs) >= n && slices.Contains(list, hs[:n])
	}
	c := proto.CloneOf(d)
	c.GoodsItems = slices.DeleteFunc(c.GoodsItems, func(it *blv1.GoodsItem) bool {
		return !prefixed(f.HSChapters, it.GetHsCode(), 2) || !prefixed(f.HSHeadings, it.GetHsCode(), 4)
	})
	return c
}

// genMessage populates a random subset of m's fields, recursively, with
// random repeated lengths, and sometimes unknown fields.
func genMessage(s *byteSource, m protoreflect.Message, depth int) {
	fds := m.Descriptor().Fields()
	for i := range fds.Len() {
		fd := fds.Get(i)
		if s.intn(4) == 0 {
			continue
		}
		switch {
		case fd.IsList():
			list := m.Mutable(fd).List()
			for range s.intn(4) {
				list.Append(genValue(s, fd, list.NewElement, depth))
			}
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for range s.intn(3) {
				k := genValue(s, fd.MapKey(), nil, depth).MapKey()
				mp.Set(k, genValue(s, fd.MapValue(), mp.NewValue, depth))
			}
		default:
			m.Set(fd, genValue(s, fd, func() protoreflect.Value { return m.NewField(fd) }, depth))
		}
	}
	if xd := secretExt.TypeDescriptor(); m.Descriptor() == xd.ContainingMessage() && s.intn(3) == 0 {
		m.Set(xd, protoreflect.ValueOfString("smuggled"))
	}
	if s.intn(8) == 7 {
		b := protowire.AppendTag(nil, 999, protowire.BytesType)
		m.SetUnknown(protowire.AppendString(b, "smuggled"))
	}
}

// stringPool makes equal values (and look-alikes of masks and pseudonyms)
// common, so linking and precedence get exercised.
var stringPool = []string{"", "NL123456789B01", "SG201912345K", "***", "ps_notapseudonym", "EUR", "850440", "Zürich ✓"}

func genValue(s *byteSource, fd protoreflect.FieldDescriptor, newMessage func() protoreflect.Value, depth int) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		v := newMessage()
		if depth < 6 {
			genMessage(s, v.Message(), depth+1)
		}
		return v
	case protoreflect.StringKind:
		if n := s.intn(12); n < len(stringPool) {
			return protoreflect.ValueOfString(stringPool[n])
		}
		b := make([]byte, s.intn(12))
		for i := range b {
			b[i] = "abcdefghijklmnopqrstuvwxyz0123456789-"[s.intn(37)]
		}
		return protoreflect.ValueOfString(string(b))
	case protoreflect.BytesKind:
		b := make([]byte, s.intn(6))
		for i := range b {
			b[i] = s.byte()
		}
		return protoreflect.ValueOfBytes(b)
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(s.intn(2) == 1)
	case protoreflect.EnumKind:
		values := fd.Enum().Values()
		if n := s.intn(values.Len() + 1); n < values.Len() {
			return protoreflect.ValueOfEnum(values.Get(n).Number())
		}
		return protoreflect.ValueOfEnum(99) // open enums carry unknown numbers
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(s.uint64()))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(s.uint64()))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(s.uint64()))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(s.uint64())
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(math.Float32frombits(uint32(s.uint64())))
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(math.Float64frombits(s.uint64()))
	default:
		panic(fmt.Sprintf("genValue: unhandled kind %v", fd.Kind()))
	}
}
