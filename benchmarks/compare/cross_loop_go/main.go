// Cross-thread round trips and one-way messages between two goroutines (GOMAXPROCS=2), the peer of
// benchmarks/peers/cross_loop_coring.cpp: an unbuffered request channel and a reply channel, and a buffered channel
// (1024) one way. Prints microseconds per round trip (median of 5) and nanoseconds per one-way message.
package main

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"time"
)

func roundTrip(n int) float64 {
	req := make(chan int)
	rep := make(chan int)
	go func() {
		for x := range req {
			rep <- x
		}
	}()
	for k := 0; k < 1000; k++ {
		req <- k
		<-rep
	}
	t0 := time.Now()
	sum := 0
	for k := 0; k < n; k++ {
		req <- k
		sum += <-rep
	}
	d := time.Since(t0)
	close(req)
	if sum < 0 {
		fmt.Println()
	}
	return float64(d.Microseconds()) / float64(n)
}

func oneWay(m int) float64 {
	ch := make(chan uint64, 1024)
	done := make(chan uint64)
	go func() {
		var got uint64
		for range ch {
			got++
		}
		done <- got
	}()
	t0 := time.Now()
	for k := 0; k < m; k++ {
		ch <- uint64(k)
	}
	close(ch)
	<-done
	return float64(time.Since(t0).Nanoseconds()) / float64(m)
}

func median(v []float64) float64 {
	sort.Float64s(v)
	return v[len(v)/2]
}

func main() {
	runtime.GOMAXPROCS(2)
	n, m := 20000, 200000
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) > 2 {
		m, _ = strconv.Atoi(os.Args[2])
	}
	var rt, ow []float64
	for i := 0; i < 5; i++ {
		rt = append(rt, roundTrip(n))
	}
	for i := 0; i < 3; i++ {
		ow = append(ow, oneWay(m))
	}
	fmt.Printf("go channels (GOMAXPROCS=2): round trip %.2f us, one-way %.0f ns/message\n", median(rt), median(ow))
}
