// Command build builds the Dendrite the Matrix adapter's tests run against,
// unless this machine has it already: `make test` calls it before the
// tests, so that the build does not compete with them for the CPU.
package main

import (
	"fmt"
	"log"

	"github.com/stagebot/stagebot/bot/matrix/dendritetest"
)

func main() {
	log.SetFlags(0)
	dir, err := dendritetest.Build(log.Printf)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("Dendrite %s for the Matrix tests: %s\n", dendritetest.Version, dir)
}
