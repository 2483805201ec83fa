package release_test

import (
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	_ "google.golang.org/protobuf/types/known/timestamppb" // the test file imports timestamp.proto
)

// partsFile declares a record type with what the shipped record types do
// not have but a release must handle: maps (of scalars and of messages),
// repeated and nested google.protobuf messages, lists of messages inside a
// released subtree, proto2 presence, and a type with extension ranges
// and an extension.
const partsFile = `
name: "releasetest/parts.proto"
package: "borderlink.releasetest"
dependency: "google/protobuf/timestamp.proto"
syntax: "proto2"
message_type {
  name: "Rec"
  field { name: "id" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
  field { name: "part" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".borderlink.releasetest.Part" }
  field { name: "parts" number: 3 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".borderlink.releasetest.Part" }
}
message_type {
  name: "Part"
  field { name: "name" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
  field { name: "tags" number: 2 label: LABEL_REPEATED type: TYPE_STRING }
  field { name: "by_key" number: 3 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".borderlink.releasetest.Part.ByKeyEntry" }
  field { name: "counts" number: 4 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".borderlink.releasetest.Part.CountsEntry" }
  field { name: "times" number: 5 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".google.protobuf.Timestamp" }
  field { name: "when" number: 6 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".google.protobuf.Timestamp" }
  field { name: "nested" number: 7 label: LABEL_REPEATED type: TYPE_MESSAGE type_name: ".borderlink.releasetest.Part" }
  field { name: "ext" number: 8 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".borderlink.releasetest.Ext" }
  field { name: "blob" number: 9 label: LABEL_OPTIONAL type: TYPE_BYTES }
  nested_type {
    name: "ByKeyEntry"
    field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
    field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE type_name: ".borderlink.releasetest.Ext" }
    options { map_entry: true }
  }
  nested_type {
    name: "CountsEntry"
    field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
    field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_INT64 }
    options { map_entry: true }
  }
}
message_type {
  name: "Ext"
  field { name: "note" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
  extension_range { start: 100 end: 200 }
}
extension { name: "secret" number: 100 label: LABEL_OPTIONAL type: TYPE_STRING extendee: ".borderlink.releasetest.Ext" }
`

// partsRecord is an empty Rec, and secretExt the extension of Ext.
var partsRecord, secretExt, partsTypes = func() (protoreflect.Message, protoreflect.ExtensionType, *protoregistry.Types) {
	var fdp descriptorpb.FileDescriptorProto
	if err := prototext.Unmarshal([]byte(partsFile), &fdp); err != nil {
		panic(err)
	}
	fd, err := protodesc.NewFile(&fdp, protoregistry.GlobalFiles)
	if err != nil {
		panic(err)
	}
	ext := dynamicpb.NewExtensionType(fd.Extensions().Get(0))
	types := new(protoregistry.Types)
	if err := types.RegisterExtension(ext); err != nil {
		panic(err)
	}
	return dynamicpb.NewMessage(fd.Messages().ByName("Rec")), ext, types
}()
