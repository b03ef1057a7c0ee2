#!/usr/bin/env python3
"""Reproducibility guard for the goldens (regen.sh runs it).

ipvsadm sorts services with libipvs' ipvs_cmp_services(), which compares
fwmarks and address words by int subtraction of u32 values. On a set where
that is not a consistent total order, the sorted listing depends on the order
the kernel dumped the services in: its hash-table order, which changes from
boot to boot. This lists every command output in the given goldens (default:
all *.golden next to this file) whose services are such a set. Dest lists are
not checked: the kernel gives them in a fixed order (newest first).
usage: check-order.py [FILE.golden...]
"""
import glob, ipaddress, itertools, os, re, sys

here = os.path.dirname(os.path.abspath(__file__))
ports = {}
for line in open(os.path.join(here, 'services')):
    f = line.split('#')[0].split()
    if len(f) >= 2:
        port, proto = f[1].split('/')
        for name in [f[0]] + f[2:]:
            ports.setdefault((name, proto), int(port))
PROTO = {'TCP': 6, 'UDP': 17, 'SCTP': 132, '-t': 6, '-u': 17, '--sctp-service': 132}
PNAME = {6: 'tcp', 17: 'udp', 132: 'sctp'}


def s32(x):
    x &= 0xffffffff
    return x - (1 << 32) if x >= (1 << 31) else x


def cmp(a, b):
    """ipvs_cmp_services on (fwmark, af, proto, addr words, port)"""
    r = s32(a[0] - b[0]) or a[1] - b[1] or a[2] - b[2]
    if r:
        return r
    for i in range(4 if a[1] == 10 else 1):
        r = s32(a[3][i] - b[3][i])
        if r:
            return r
    return a[4] - b[4]


def endpoint(text, proto):
    m = re.match(r'^(?:\[(.*)\]|([^:]*)):(.*)$', text)
    host, port = m.group(1) or m.group(2), m.group(3)
    ip = ipaddress.ip_address('127.0.0.1' if host == 'localhost' else host)
    port = int(port) if port.isdigit() else ports[(port, PNAME[proto])]
    if ip.version == 6:
        return 10, tuple(int.from_bytes(ip.packed[i:i + 4], 'big') for i in range(0, 16, 4)), port
    return 2, (int(ip), 0, 0, 0), port


def service(line):
    t = line.split()
    if not t:
        return None
    if t[0] == '-A' and len(t) > 2:  # -S format
        if t[1] == '-f':
            return int(t[2]) & 0xffffffff, 10 if t[3] == '-6' else 2, 6, (0,) * 4, 0
        if t[1] in PROTO:
            af, addr, port = endpoint(t[2], PROTO[t[1]])
            return 0, af, PROTO[t[1]], addr, port
    if t[0] == 'FWM' and len(t) > 2:  # -L format
        return int(t[1]) & 0xffffffff, 10 if t[2] == 'IPv6' else 2, 6, (0,) * 4, 0
    if t[0] in ('TCP', 'UDP', 'SCTP') and len(t) > 1:
        af, addr, port = endpoint(t[1], PROTO[t[0]])
        return 0, af, PROTO[t[0]], addr, port
    return None


bad = 0
for path in sys.argv[1:] or sorted(glob.glob(os.path.join(here, '*.golden'))):
    cmd, svcs = None, []
    for line in list(open(path)) + ['$ (end)\n']:
        line = line.rstrip('\n')
        if line.startswith('$ '):
            uniq = sorted(set(svcs))
            if cmd and '--nosort' not in cmd:
                clash = [p for p in itertools.combinations(uniq, 2)
                         if (cmp(*p) < 0) == (cmp(p[1], p[0]) < 0)]
                clash += [t for t in itertools.permutations(uniq, 3)
                          if cmp(t[0], t[1]) < 0 and cmp(t[1], t[2]) < 0 and cmp(t[0], t[2]) >= 0]
                if clash:
                    print(f'{os.path.basename(path)}: "{cmd}": order depends on the kernel hash: {clash[0]}')
                    bad += 1
            cmd, svcs = line[2:], []
            continue
        try:
            s = service(line)
        except (ValueError, KeyError, AttributeError, IndexError):
            s = None
        if s:
            svcs.append(s)
sys.exit(1 if bad else 0)
