package portmap

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/huin/goupnp/dcps/internetgateway2"
)

// igdClient is what the three WAN connection services of an Internet
// Gateway Device (WANIPConnection:1 and :2, WANPPPConnection:1) have in
// common for port mapping.
type igdClient interface {
	AddPortMappingCtx(ctx context.Context, remoteHost string, extPort uint16, proto string, intPort uint16, intClient string, enabled bool, desc string, lease uint32) error
	DeletePortMappingCtx(ctx context.Context, remoteHost string, extPort uint16, proto string) error
	GetExternalIPAddressCtx(ctx context.Context) (string, error)
}

// upnpGateway speaks UPnP IGD to one WAN connection service.
type upnpGateway struct {
	c        igdClient
	local    string // our address on the gateway's LAN: the InternalClient
	desc     string
	urn      string
	location string
}

// discoverUPnP searches (SSDP, at most 2 s, then the device description)
// for the WAN connection services, all three concurrently, and returns the
// first found in the order WANIPConnection:2, :1, WANPPPConnection:1.
func discoverUPnP(ctx context.Context, desc string) (gateway, error) {
	type found struct {
		gw  *upnpGateway
		err error
	}
	searches := []func(context.Context) found{
		func(ctx context.Context) found {
			cs, errs, err := internetgateway2.NewWANIPConnection2ClientsCtx(ctx)
			for _, c := range cs {
				return found{gw: &upnpGateway{c: c, local: c.LocalAddr().String(), urn: internetgateway2.URN_WANIPConnection_2, location: c.Location.String()}}
			}
			return found{err: errors.Join(append(errs, err)...)}
		},
		func(ctx context.Context) found {
			cs, errs, err := internetgateway2.NewWANIPConnection1ClientsCtx(ctx)
			for _, c := range cs {
				return found{gw: &upnpGateway{c: c, local: c.LocalAddr().String(), urn: internetgateway2.URN_WANIPConnection_1, location: c.Location.String()}}
			}
			return found{err: errors.Join(append(errs, err)...)}
		},
		func(ctx context.Context) found {
			cs, errs, err := internetgateway2.NewWANPPPConnection1ClientsCtx(ctx)
			for _, c := range cs {
				return found{gw: &upnpGateway{c: c, local: c.LocalAddr().String(), urn: internetgateway2.URN_WANPPPConnection_1, location: c.Location.String()}}
			}
			return found{err: errors.Join(append(errs, err)...)}
		},
	}
	results := make([]chan found, len(searches))
	for i, search := range searches {
		results[i] = make(chan found, 1)
		go func() { results[i] <- search(ctx) }()
	}
	var errs []error
	var gw *upnpGateway
	for _, ch := range results {
		f := <-ch // each search is bounded by ctx
		if f.gw != nil && gw == nil && f.gw.local != "<nil>" {
			gw = f.gw
		} else if f.err != nil {
			errs = append(errs, f.err)
		}
	}
	if gw == nil {
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		return nil, errors.New("no Internet Gateway Device answered the SSDP search")
	}
	gw.desc = desc
	return gw, nil
}

func (g *upnpGateway) method() Method { return UPnP }

func (g *upnpGateway) externalAddr(ctx context.Context) (netip.Addr, error) {
	s, err := g.c.GetExternalIPAddressCtx(ctx)
	if err != nil {
		return netip.Addr{}, err
	}
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("external address %q: %w", s, err)
	}
	return a.Unmap(), nil
}

// add asks for the external port ext (UPnP gives the port asked for or
// fails). A router that allows only permanent mappings (error 725,
// OnlyPermanentLeasesSupported) gets a permanent one, which Close removes.
func (g *upnpGateway) add(ctx context.Context, proto Protocol, port, ext int, lifetime time.Duration) (int, time.Duration, error) {
	lease := uint32(lifetime / time.Second)
	err := g.c.AddPortMappingCtx(ctx, "", uint16(ext), string(proto), uint16(port), g.local, true, g.desc, lease)
	if err != nil && strings.Contains(err.Error(), "725") {
		lease = 0
		err = g.c.AddPortMappingCtx(ctx, "", uint16(ext), string(proto), uint16(port), g.local, true, g.desc, lease)
	}
	if err != nil {
		return 0, 0, err
	}
	return ext, time.Duration(lease) * time.Second, nil
}

func (g *upnpGateway) remove(ctx context.Context, proto Protocol, _, ext int) error {
	return g.c.DeletePortMappingCtx(ctx, "", uint16(ext), string(proto))
}
