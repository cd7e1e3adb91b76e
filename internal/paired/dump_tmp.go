package paired

import (
	"fmt"
	"os"
)

var curName string

func dumpPairs(p Pair, n [2]int64, _, _ []float64, d [][2]sample) {
	path := os.Getenv("PAIRED_DUMP")
	if path == "" || len(d) < 50 {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "round %s %d %d %d\n", curName, p.Workers, n[0], n[1])
	for _, s := range d {
		fmt.Fprintf(f, "%d %d %d %d\n", s[0].wall, s[0].cpu, s[1].wall, s[1].cpu)
	}
}
