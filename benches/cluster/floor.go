// floor-go: the Go floor of benches/cluster/run.sh. A net/http server (the stack gcnode's
// client API runs on) that answers every request with the same 1 KiB body and does nothing
// else. Standard library only; built by run.sh with `go build`.
//
// Usage: floor-go [-addr 127.0.0.1:8098] [-size 1024]
package main

import (
	"bytes"
	"flag"
	"log"
	"net/http"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8098", "listen address")
	size := flag.Int("size", 1024, "body size in bytes")
	flag.Parse()
	body := bytes.Repeat([]byte{'x'}, *size)
	log.Fatal(http.ListenAndServe(*addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(body)
	})))
}
