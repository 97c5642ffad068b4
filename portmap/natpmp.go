package portmap

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	natpmp "github.com/jackpal/go-nat-pmp"
)

// natpmpTimeout bounds one NAT-PMP request, retransmissions included
// (RFC 6886 starts at 250 ms and doubles).
const natpmpTimeout = 2 * time.Second

// natpmpGateway speaks NAT-PMP to the default gateway.
type natpmpGateway struct {
	c *natpmp.Client
}

// discoverNATPMP asks the default IPv4 gateway for its external address:
// a gateway that answers speaks NAT-PMP.
func discoverNATPMP(ctx context.Context, timeout time.Duration) (gateway, error) {
	gw, err := defaultGateway("/proc/net/route")
	if err != nil {
		return nil, err
	}
	g := &natpmpGateway{c: natpmp.NewClientWithTimeout(net.IP(gw.AsSlice()), min(timeout, natpmpTimeout))}
	if _, err := g.externalAddr(ctx); err != nil {
		return nil, fmt.Errorf("gateway %v: %w", gw, err)
	}
	return g, nil
}

func (g *natpmpGateway) method() Method { return NATPMP }

func (g *natpmpGateway) externalAddr(ctx context.Context) (netip.Addr, error) {
	r, err := withContext(ctx, g.c.GetExternalAddress)
	if err != nil {
		return netip.Addr{}, err
	}
	return netip.AddrFrom4(r.ExternalIPAddress), nil
}

func (g *natpmpGateway) add(ctx context.Context, proto Protocol, port, ext int, lifetime time.Duration) (int, time.Duration, error) {
	r, err := withContext(ctx, func() (*natpmp.AddPortMappingResult, error) {
		return g.c.AddPortMapping(strings.ToLower(string(proto)), port, ext, int(lifetime/time.Second))
	})
	if err != nil {
		return 0, 0, err
	}
	if r.MappedExternalPort == 0 || r.PortMappingLifetimeInSeconds == 0 {
		return 0, 0, errors.New("the gateway mapped nothing")
	}
	return int(r.MappedExternalPort), time.Duration(r.PortMappingLifetimeInSeconds) * time.Second, nil
}

// remove asks for a lifetime of 0, which deletes the mapping (RFC 6886
// 3.4; the suggested external port must be 0 then).
func (g *natpmpGateway) remove(ctx context.Context, proto Protocol, port, _ int) error {
	_, err := withContext(ctx, func() (*natpmp.AddPortMappingResult, error) {
		return g.c.AddPortMapping(strings.ToLower(string(proto)), port, 0, 0)
	})
	return err
}

// withContext runs a call of go-nat-pmp, which takes no context, and
// returns when it does or when ctx ends. The call is bounded by the
// client's timeout, so an abandoned one ends soon after.
func withContext[T any](ctx context.Context, call func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := call()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// defaultGateway reads the IPv4 default route's gateway from the kernel's
// routing table (Linux /proc/net/route).
func defaultGateway(routeFile string) (netip.Addr, error) {
	f, err := os.Open(routeFile)
	if err != nil {
		return netip.Addr{}, err
	}
	defer f.Close()
	return parseRoutes(f)
}

// parseRoutes finds the default route's gateway in a /proc/net/route
// table: addresses in hex, in the host's byte order (little-endian on the
// machines btfs runs on).
func parseRoutes(r io.Reader) (netip.Addr, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// Iface Destination Gateway Flags ...
		if len(fields) < 4 || fields[1] != "00000000" {
			continue
		}
		b, err := hex.DecodeString(fields[2])
		if err != nil || len(b) != 4 {
			continue
		}
		var a [4]byte
		binary.LittleEndian.PutUint32(a[:], binary.BigEndian.Uint32(b))
		if gw := netip.AddrFrom4(a); !gw.IsUnspecified() {
			return gw, nil
		}
	}
	if err := sc.Err(); err != nil {
		return netip.Addr{}, err
	}
	return netip.Addr{}, errors.New("no IPv4 default gateway")
}
