// The netpoll benchmarks' workloads on Go's own netpoller, for `cargo xtask bench`.
//
// netpoll/events_n{N}: N socketpairs, one goroutine blocked reading each; every round writes
// a byte to every pair and waits until every reader has consumed its byte (Go's side
// includes its scheduler, as a Go program would). netpoll/wake_latency: a goroutine blocked
// reading a socket; latency from the timestamped write to the reader running (median).
package main

import (
	"fmt"
	"net"
	"os"
	"sort"
	"sync/atomic"
	"syscall"
	"time"
)

func emit(bench string, value float64, unit string) {
	fmt.Printf("{\"bench\":\"%s\",\"implementation\":\"go\",\"value\":%.1f,\"unit\":\"%s\"}\n", bench, value, unit)
}

// pair returns a net.Conn (on Go's netpoller) and the raw fd of its peer.
func pair() (net.Conn, int) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		panic(err)
	}
	f := os.NewFile(uintptr(fds[0]), "a")
	c, err := net.FileConn(f)
	if err != nil {
		panic(err)
	}
	f.Close()
	return c, fds[1]
}

func events(n, rounds int) float64 {
	conns := make([]net.Conn, n)
	peers := make([]int, n)
	for i := range conns {
		conns[i], peers[i] = pair()
	}
	var left int64
	done := make(chan struct{})
	for i := range conns {
		go func(c net.Conn) {
			buf := make([]byte, 1)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
				if atomic.AddInt64(&left, -1) == 0 {
					done <- struct{}{}
				}
			}
		}(conns[i])
	}
	one := []byte{'x'}
	start := time.Now()
	for r := 0; r < rounds; r++ {
		atomic.StoreInt64(&left, int64(n))
		for _, p := range peers {
			if _, err := syscall.Write(p, one); err != nil {
				panic(err)
			}
		}
		<-done
	}
	el := time.Since(start)
	for i := range conns {
		conns[i].Close()
		syscall.Close(peers[i])
	}
	return float64(n*rounds) / el.Seconds()
}

func latency(samples int) float64 {
	c, p := pair()
	base := time.Now()
	var sent int64
	var ready int32
	out := make([]int64, 0, samples)
	fin := make(chan struct{})
	go func() {
		buf := make([]byte, 1)
		for i := 0; i < samples; i++ {
			if _, err := c.Read(buf); err != nil {
				panic(err)
			}
			out = append(out, int64(time.Since(base))-atomic.LoadInt64(&sent))
			atomic.StoreInt32(&ready, 1)
		}
		close(fin)
	}()
	one := []byte{'x'}
	for i := 0; i < samples; i++ {
		time.Sleep(50 * time.Microsecond)
		atomic.StoreInt64(&sent, int64(time.Since(base)))
		if _, err := syscall.Write(p, one); err != nil {
			panic(err)
		}
		for !atomic.CompareAndSwapInt32(&ready, 1, 0) {
			time.Sleep(time.Microsecond)
		}
	}
	<-fin
	c.Close()
	syscall.Close(p)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return float64(out[len(out)/2])
}

func main() {
	quick := false
	for _, a := range os.Args[1:] {
		if a == "--quick" {
			quick = true
		}
	}
	small, large, samples := 20000, 1000, 5000
	if quick {
		small, large, samples = 200, 20, 200
	}
	for _, c := range []struct{ n, rounds int }{{16, small}, {1024, large}} {
		events(c.n, c.rounds/10+1)
		emit(fmt.Sprintf("netpoll/events_n%d", c.n), events(c.n, c.rounds), "events/s")
	}
	emit("netpoll/wake_latency", latency(samples), "ns")
}
