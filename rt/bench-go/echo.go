// Echo benchmark in Go: the same workload as rt/examples/bench_echo.rs (100 connections x
// 20k round trips x 64 B over loopback, client and server goroutines in one process),
// printing the same JSON lines.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"sync"
	"time"
)

const size = 64

func emit(bench, unit string, value float64) {
	fmt.Printf("{\"bench\":\"%s\",\"implementation\":\"go\",\"value\":%.3f,\"unit\":\"%s\"}\n", bench, value, unit)
}

func main() {
	conns, rounds := 100, 20000
	for _, a := range os.Args[1:] {
		if a == "--quick" {
			conns, rounds = 10, 1000
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				buf := make([]byte, size)
				for {
					n, err := c.Read(buf)
					if err != nil || n == 0 {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}(c)
		}
	}()
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	ready.Add(conns)
	done.Add(conns)
	lats := make([][]uint32, conns)
	for i := 0; i < conns; i++ {
		go func(i int) {
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				panic(err)
			}
			msg := make([]byte, size)
			back := make([]byte, size)
			lat := make([]uint32, 0, rounds)
			ready.Done()
			<-start
			for r := 0; r < rounds; r++ {
				t := time.Now()
				if _, err := c.Write(msg); err != nil {
					panic(err)
				}
				if _, err := io.ReadFull(c, back); err != nil {
					panic(err)
				}
				lat = append(lat, uint32(time.Since(t).Nanoseconds()))
			}
			lats[i] = lat
			done.Done()
		}(i)
	}
	ready.Wait()
	t := time.Now()
	close(start)
	done.Wait()
	elapsed := time.Since(t).Seconds()
	all := make([]uint32, 0, conns*rounds)
	for _, l := range lats {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	p99 := float64(all[len(all)*99/100]) / 1e3
	emit("rt/echo/msgs-per-s", "msgs/s", float64(len(all))/elapsed)
	emit("rt/echo/p99", "us", p99)
}
