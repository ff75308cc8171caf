// Command tcprelay is the smallest byte-forwarding proxy there is: each
// accepted TCP connection is joined to a new connection to the upstream with
// io.Copy in both directions. Between two *net.TCPConn on Linux io.Copy uses
// splice(2), so the bytes never enter user space: this is the physical limit
// any proxy in bench/compare is measured against.
//
// Usage: tcprelay -listen 127.0.0.1:0 -upstream 127.0.0.1:PORT
//
// It prints "listening HOST:PORT" on stdout once it accepts connections and
// runs until killed.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to accept clients on (host:port)")
	upstream := flag.String("upstream", "", "address to forward each connection to (host:port, required)")
	flag.Parse()
	if *upstream == "" {
		fmt.Fprintln(os.Stderr, "tcprelay: missing -upstream: want host:port of the server to forward to")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("tcprelay: listen %s: %v", *listen, err)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			// Out of descriptors (each connection takes six: two sockets
			// and a splice pipe per direction): wait for some to close.
			log.Printf("tcprelay: accept on %s: %v", ln.Addr(), err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go relay(c.(*net.TCPConn), *upstream)
	}
}

// relay joins client to a new upstream connection until both directions
// have ended. Each direction half-closes its destination when its source
// ends, so a FIN travels through like it would without the relay.
func relay(client *net.TCPConn, upstream string) {
	defer client.Close()
	uc, err := net.Dial("tcp", upstream)
	if err != nil {
		log.Printf("tcprelay: dial upstream %s: %v", upstream, err)
		return
	}
	up := uc.(*net.TCPConn)
	defer up.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(up, client)
		_ = up.CloseWrite()
	}()
	_, _ = io.Copy(client, up)
	_ = client.CloseWrite()
	<-done
}
