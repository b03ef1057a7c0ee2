#!/bin/bash
# Re-creates the iptables dumps of this directory with the real iptables
# (Debian bookworm's iptables 1.8.9: nf_tables and legacy back ends), inside a
# fresh network namespace that is deleted afterwards. Needs root and
# `apt-get install -y iptables`. The *.expected files are NOT generated: they
# are written by hand from what iptables does with each rule, and the
# `handwritten.txt` dump is written by hand too (forms iptables 1.8.9 no longer
# prints or refuses to create). After re-running, check that the line numbers
# in the *.expected files still hold (only the date comments change).
set -euo pipefail
cd "$(dirname "$0")"
ns="rvs-ipt-$$"
ip netns add "$ns"
trap 'ip netns del "$ns"' EXIT
in_ns() { ip netns exec "$ns" "$@"; }

# 1. The classic LVS recipe: http+https of one VIP share mark 6666, smtp of a
#    second VIP has a hex mark (iptables-nft).
in_ns iptables -t mangle -A PREROUTING -d 192.168.1.10 -p tcp -m multiport --dports 80,443 -j MARK --set-mark 6666
in_ns iptables -t mangle -A PREROUTING -d 192.168.1.11 -p tcp --dport 25 -j MARK --set-mark 0x1b
in_ns iptables-save > lvs-classic.save
in_ns iptables -t mangle -F

# 2. The same with iptables-legacy, saved with counters (-c).
in_ns iptables-legacy -t mangle -A PREROUTING -d 192.168.1.10 -p tcp -m multiport --dports 80,443 -j MARK --set-mark 6666
in_ns iptables-legacy -t mangle -A PREROUTING -d 192.168.1.11 -p tcp --dport 25 -j MARK --set-mark 0x1b
in_ns iptables-legacy-save -c > lvs-classic-legacy.save
in_ns iptables-legacy -t mangle -F

# 3. IPv6 (ip6tables-save): a rule without -d is ::/0 (the header says IPv6).
in_ns ip6tables -t mangle -A PREROUTING -d 2001:db8::10 -p tcp -m multiport --dports 80,443 -j MARK --set-mark 6666
in_ns ip6tables -t mangle -A PREROUTING -d 2001:db8:1::/64 -p udp --dport 5000:5010 -j MARK --set-mark 7
in_ns ip6tables -t mangle -A PREROUTING -p sctp --dport 9 -j MARK --set-mark 8
in_ns ip6tables -t mangle -A PREROUTING -d 2001:db8:2::/ffff:ffff:ffff:ffff:: -p tcp --dport 443 -j MARK --set-mark 9
in_ns ip6tables-save > ip6.save

# 4. A real-ish server: filter (stateful INPUT, ssh, web, docker-like
#    forwarding), nat (masquerade, a port forward), mangle (LVS marks with
#    comments, a libvirt-like CHECKSUM rule, a TCPMSS clamp) and raw (notrack).
in_ns iptables -P INPUT DROP
in_ns iptables -A INPUT -i lo -j ACCEPT
in_ns iptables -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
in_ns iptables -A INPUT -p tcp --dport 22 -m comment --comment "ssh from anywhere" -j ACCEPT
in_ns iptables -A INPUT -d 203.0.113.10 -p tcp -m multiport --dports 80,443 -j ACCEPT
in_ns iptables -A INPUT -p icmp --icmp-type echo-request -j ACCEPT
in_ns iptables -N DOCKER-USER
in_ns iptables -A FORWARD -j DOCKER-USER
in_ns iptables -A DOCKER-USER -j RETURN
in_ns iptables -t nat -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
in_ns iptables -t nat -A PREROUTING -d 203.0.113.10 -p tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
in_ns iptables -t mangle -A PREROUTING -d 203.0.113.10 -p tcp -m multiport --dports 80,443 -m comment --comment "LVS web: FWM 1" -j MARK --set-mark 1
in_ns iptables -t mangle -A PREROUTING -d 203.0.113.10 -p udp --dport 443 -m comment --comment "LVS web: QUIC" -j MARK --set-mark 1
in_ns iptables -t mangle -A PREROUTING -d 203.0.113.20 -m comment --comment "LVS: everything to .20" -j MARK --set-mark 2
in_ns iptables -t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu
in_ns iptables -t mangle -A POSTROUTING -o virbr0 -p udp --dport 68 -j CHECKSUM --checksum-fill
in_ns iptables -t raw -A PREROUTING -d 203.0.113.10 -p udp --dport 53 -j CT --notrack
in_ns iptables-save > server.save

# 5. `iptables -t mangle -S` (no table header; taken as mangle), with a user
#    chain and a jump to it.
in_ns iptables -t mangle -F
in_ns iptables -t mangle -N LVS
in_ns iptables -t mangle -A PREROUTING -d 10.20.0.1 -p tcp -m multiport --dports 80,443 -j MARK --set-mark 100
in_ns iptables -t mangle -A PREROUTING -j LVS
in_ns iptables -t mangle -A LVS -d 10.20.0.2 -p tcp --dport 80 -j MARK --set-mark 101
in_ns iptables -t mangle -A PREROUTING -d 10.20.0.0/16 -p udp -m multiport --dports 53,123,5000:5100 -j MARK --set-mark 102
in_ns iptables -t mangle -S > mangle-S.txt

# 6. `ip6tables -t mangle -S -v` (counters as `-c P B`): no header, so the
#    family comes from the -d addresses.
in_ns ip6tables -t mangle -F
in_ns ip6tables -t mangle -A PREROUTING -d 2001:db8::20 -p tcp --dport 80 -j MARK --set-mark 20
in_ns ip6tables -t mangle -A PREROUTING -p udp --dport 4789 -j MARK --set-mark 21
in_ns ip6tables -t mangle -S -v > mangle6-S-v.txt

# 7. Refusals: one rule of each kind that must not be translated, between
#    rules that are.
in_ns iptables -t mangle -F
in_ns iptables -t mangle -F LVS
in_ns iptables -t mangle -X LVS
m() { in_ns iptables -t mangle "$@"; }
m -N VIPS
m -A PREROUTING -d 192.0.2.100 -p tcp -m multiport --dports 80,443 -j MARK --set-mark 100
m -A PREROUTING ! -d 192.0.2.1 -p tcp --dport 80 -j MARK --set-mark 1
m -A PREROUTING -s 10.0.0.0/8 -d 192.0.2.2 -p tcp --dport 80 -j MARK --set-mark 2
m -A PREROUTING -i eth0 -d 192.0.2.3 -p tcp --dport 80 -j MARK --set-mark 3
m -A PREROUTING -d 192.0.2.4 -p udp --sport 53 -j MARK --set-mark 4
m -A PREROUTING -d 192.0.2.5 -p tcp -m multiport --sports 1000:2000 -j MARK --set-mark 5
m -A PREROUTING -d 192.0.2.6 -p tcp --dport 80 -j MARK --set-xmark 0x5/0xff
m -A PREROUTING -d 192.0.2.7 -p tcp --dport 80 -j MARK --or-mark 0x100
m -A PREROUTING -d 192.0.2.8 -p tcp --dport 80 -m state --state NEW -j MARK --set-mark 8
m -A PREROUTING -d 192.0.2.9 -p tcp --dport 80 -m conntrack --ctstate NEW -j MARK --set-mark 9
m -A PREROUTING -d 192.0.2.10 -p tcp --dport 80 -m mark --mark 0x1 -j MARK --set-mark 10
m -A PREROUTING -m addrtype --dst-type LOCAL -p tcp --dport 8443 -j MARK --set-mark 11
m -A PREROUTING -j CONNMARK --restore-mark
m -A OUTPUT -d 192.0.2.12 -p tcp --dport 80 -j MARK --set-mark 12
m -A PREROUTING -j VIPS
m -A VIPS -d 192.0.2.13 -p tcp --dport 80 -j MARK --set-mark 13
m -A PREROUTING -d 192.0.2.14 -p tcp --dport 80 -j MARK --set-mark 0
m -A PREROUTING -d 192.0.2.0/24 -p tcp --dport 443 -j MARK --set-mark 15
m -A PREROUTING -d 192.0.2.100 -p tcp -m multiport --dports 80,443 -j MARK --set-mark 100
m -A PREROUTING -d 192.0.2.16 -p icmp -j MARK --set-mark 16
m -A PREROUTING -s 10.0.0.0/8 -j RETURN
m -A PREROUTING -p tcp --dport 22 -j TOS --set-tos 0x10
m -A PREROUTING -f -d 192.0.2.17 -j MARK --set-mark 17
m -A PREROUTING -d 192.0.2.18 -p tcp --syn --dport 80 -j MARK --set-mark 18
m -A PREROUTING -d 10.0.0.0/255.0.255.0 -p tcp --dport 80 -j MARK --set-mark 19
m -A PREROUTING -d 192.0.2.20 -p tcp --dport 0 -j MARK --set-mark 20
m -A PREROUTING -d 192.0.2.21 -p tcp --dport 8000:8010 -j MARK --set-mark 21
m -A PREROUTING -d 192.0.2.22 -p tcp -j MARK --set-mark 22
in_ns iptables-save -t mangle > refusals.save
