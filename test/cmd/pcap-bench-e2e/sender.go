package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

// The paced sender is this program's `send` subcommand, run in the peer
// namespace. trafgen cannot pace: its --rate sends each second's packets
// in one burst at full speed and then idles, and its --gap sleeps with
// nanosleep, which tops out near 40 kpps. This sender writes the same
// 60-byte frame to an AF_PACKET socket and catches up with the rate every
// millisecond, so the traffic is smooth at that grain.

// runSend is `pcap-bench-e2e send -dev DEV -dst-mac MAC -pps N`: it sends
// until SIGINT or SIGTERM and then prints what it sent.
func runSend(args []string) error {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	dev := fs.String("dev", "", "network device to send on")
	dstMAC := fs.String("dst-mac", "", "destination MAC address")
	pps := fs.Float64("pps", 0, "packets per second")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dev == "" || *pps <= 0 {
		return errors.New("send: -dev and a positive -pps are required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	iface, err := net.InterfaceByName(*dev)
	if err != nil {
		return err
	}
	dst, err := net.ParseMAC(*dstMAC)
	if err != nil {
		return err
	}
	frame, err := udpFrame(iface.HardwareAddr, dst)
	if err != nil {
		return err
	}
	fd, err := packetSocket(iface.Index)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	start := time.Now()
	sent, failed, err := pace(ctx, *pps, func() error {
		_, err := unix.Write(fd, frame)
		return err
	})
	fmt.Printf("sent %d packets in %.6f s (%d writes refused: no buffer space)\n", sent, time.Since(start).Seconds(), failed)
	return err
}

// udpFrame is the frame trafgen sends too: Ethernet, IPv4 and UDP headers
// and 18 bytes of payload, 60 bytes.
func udpFrame(src, dst net.HardwareAddr) ([]byte, error) {
	eth := &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.ParseIP(peerIP), DstIP: net.ParseIP(appIP)}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 9}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		return nil, err
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, eth, ip, udp, gopacket.Payload(bytes.Repeat([]byte{'a'}, 18))); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// packetSocket is a send-only packet socket on the device that skips the
// qdisc, as trafgen's does.
func packetSocket(ifindex int) (int, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("packet socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("PACKET_QDISC_BYPASS: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind packet socket: %w", err)
	}
	return fd, nil
}

// maxBatch bounds the writes between two looks at the context, for a
// sender that has fallen behind its rate.
const maxBatch = 4096

// pace calls send pps times a second until ctx ends. Each time it wakes
// it sends what is due, at most a millisecond's worth late; a write the
// kernel refuses for lack of buffer space counts as failed, not sent.
func pace(ctx context.Context, pps float64, send func() error) (sent, failed uint64, err error) {
	start := time.Now()
	tick := min(time.Duration(float64(time.Second)/pps), time.Millisecond)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return sent, failed, nil
		case <-timer.C:
		}
		due := uint64(time.Since(start).Seconds() * pps)
		for n := 0; sent+failed < due && n < maxBatch; n++ {
			switch err := send(); {
			case errors.Is(err, unix.ENOBUFS):
				failed++
			case err != nil:
				return sent, failed, fmt.Errorf("send: %w", err)
			default:
				sent++
			}
		}
		if sent+failed < due {
			timer.Reset(0) // behind: go on at once
		} else {
			timer.Reset(tick)
		}
	}
}
