package release

import "google.golang.org/protobuf/proto"

// ApplyFieldByField is Apply without whole copies of subtrees released as
// they are: the tests hold Apply's output to it.
func ApplyFieldByField(msg proto.Message, rules Rules, recipient string, p *Pseudonymizer) (proto.Message, Result, error) {
	return apply(msg, rules, recipient, p, false)
}
