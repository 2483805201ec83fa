package gateway

import (
	"strings"
	"testing"

	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/store"
)

func TestOnwardRefusal(t *testing.T) {
	id := func(s string) identity.ID {
		t.Helper()
		v, err := identity.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	cnGW := id("spiffe://cn.customs.example/gateway")
	cnAgency := id("spiffe://cn.customs.example/agency/police")
	nlGW := id("spiffe://nl.customs.example/gateway")
	for _, tc := range []struct {
		name, obligations string
		who               identity.ID
		refused           string // substring of the refusal; "" = allowed
	}{
		{"not allowed", `{"onward_sharing":false}`, cnGW, "does not allow sharing it onward"},
		{"allowed to anyone", `{"onward_sharing":true}`, cnGW, ""},
		{"listed domain", `{"onward_sharing":true,"onward_recipients":["cn.customs.example"]}`, cnGW, ""},
		{"domain does not cover an agency", `{"onward_sharing":true,"onward_recipients":["cn.customs.example"]}`, cnAgency, "only with cn.customs.example"},
		{"listed agency", `{"onward_sharing":true,"onward_recipients":["spiffe://cn.customs.example/agency/police"]}`, cnAgency, ""},
		{"not listed", `{"onward_sharing":true,"onward_recipients":["us.customs.example"]}`, cnGW, "only with us.customs.example"},
		{"back to the origin", `{"onward_sharing":false}`, nlGW, ""},
		{"unreadable obligations", `{`, cnGW, "cannot read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := onwardRefusal(store.InboxEntry{Sender: "nl.customs.example", MessageID: "m", Agreement: "a", Obligations: tc.obligations}, tc.who)
			if (tc.refused == "") != (got == "") || !strings.Contains(got, tc.refused) {
				t.Errorf("onwardRefusal = %q, want refusal containing %q", got, tc.refused)
			}
		})
	}
}
