// Package storetest is the contract suite that every store.Store
// implementation runs: call Run from the implementation's tests with a
// function that opens a fresh, empty store.
package storetest
