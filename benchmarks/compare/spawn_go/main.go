// Go's os/exec: N runs of /bin/true one after the other (Run), then N with up to C at once (goroutines, a semaphore
// channel). The peer of benchmarks/peers/spawn_coring.cpp (same arguments, same output).
//
//	go run benchmarks/compare/spawn_go/main.go [N=1000] [C=32]
package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"
)

func oneByOne(n int) {
	for i := 0; i < n; i++ {
		if err := exec.Command("/bin/true").Run(); err != nil {
			panic(err)
		}
	}
}

func atOnce(n, c int) {
	sem := make(chan struct{}, c)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			if err := exec.Command("/bin/true").Run(); err != nil {
				panic(err)
			}
			<-sem
		}()
	}
	wg.Wait()
}

func bestUs(n int, run func()) float64 {
	best := 1e30
	for k := 0; k < 3; k++ {
		t0 := time.Now()
		run()
		us := float64(time.Since(t0).Microseconds()) / float64(n)
		if us < best {
			best = us
		}
	}
	return best
}

func main() {
	n, c := 1000, 32
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) > 2 {
		c, _ = strconv.Atoi(os.Args[2])
	}
	seq := bestUs(n, func() { oneByOne(n) })
	par := bestUs(n, func() { atOnce(n, c) })
	fmt.Printf("go      spawn+wait one by one: %.1f us/child\n", seq)
	fmt.Printf("go      spawn+wait %d at once:  %.1f us/child\n", c, par)
}
