package policy

import (
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// breadth counts the leaf fields of md that a field list releases, so that
// "the narrower release wins" compares what is released, not how the list
// is written: "importer" counts every leaf of a Party, "importer.name" one.
// Messages from google.protobuf (timestamps) count as one leaf, as the
// release treats them.
func breadth(md protoreflect.MessageDescriptor, paths []string) int {
	return countLeaves(md, "", paths, false, 0)
}

func countLeaves(md protoreflect.MessageDescriptor, prefix string, paths []string, covered bool, depth int) int {
	if depth > 16 { // recursive schemas: count no deeper
		return 0
	}
	n := 0
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		p := string(fd.Name())
		if prefix != "" {
			p = prefix + "." + p
		}
		c := covered || pathListed(paths, p)
		if fd.Message() != nil && !fd.IsMap() && !strings.HasPrefix(string(fd.Message().FullName()), "google.protobuf.") {
			if c || pathPrefixListed(paths, p) {
				n += countLeaves(fd.Message(), p, paths, c, depth+1)
			}
			continue
		}
		if c {
			n++
		}
	}
	return n
}

func pathListed(paths []string, p string) bool {
	for _, x := range paths {
		if x == p {
			return true
		}
	}
	return false
}

func pathPrefixListed(paths []string, p string) bool {
	for _, x := range paths {
		if strings.HasPrefix(x, p+".") {
			return true
		}
	}
	return false
}
