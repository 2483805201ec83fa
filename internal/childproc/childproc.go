// Package childproc holds what the programs that start helper processes
// (the demo's gateways, a Vault dev server) need so that none is left
// running when they die.
package childproc
