// HTTP hello-world benchmark in Go: wrk -t2 -c100 -d10s --latency against net/http in this
// process (the same workload as rt/examples/bench_http.rs), printing the same JSON lines.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

func emit(bench, unit string, value float64) {
	fmt.Printf("{\"bench\":\"%s\",\"implementation\":\"go\",\"value\":%.3f,\"unit\":\"%s\"}\n", bench, value, unit)
}

func micros(s string) (float64, bool) {
	for _, u := range []struct {
		suffix string
		scale  float64
	}{{"us", 1}, {"ms", 1e3}, {"s", 1e6}} {
		if strings.HasSuffix(s, u.suffix) {
			v, err := strconv.ParseFloat(strings.TrimSuffix(s, u.suffix), 64)
			return v * u.scale, err == nil
		}
	}
	return 0, false
}

func main() {
	conns, secs := "100", "10s"
	for _, a := range os.Args[1:] {
		if a == "--quick" {
			conns, secs = "10", "1s"
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	hello := []byte("Hello, World!")
	go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(hello)
	}))
	out, err := exec.Command("wrk", "-t2", "-c", conns, "-d", secs, "--latency", "http://"+l.Addr().String()+"/").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "http.go: cannot run wrk:", err)
		os.Exit(1)
	}
	var rps, p99 float64
	var haveRps, haveP99 bool
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "Requests/sec:" {
			rps, err = strconv.ParseFloat(f[1], 64)
			haveRps = err == nil
		}
		if len(f) >= 2 && f[0] == "99%" {
			p99, haveP99 = micros(f[1])
		}
	}
	if !haveRps || !haveP99 {
		fmt.Fprintln(os.Stderr, "http.go: could not read wrk's output:\n"+string(out))
		os.Exit(1)
	}
	emit("rt/http/requests-per-s", "req/s", rps)
	emit("rt/http/p99", "us", p99)
}
