# Facts about the oracle guest, as comments only (no events).
echo "# kernel $(cat /proc/sys/kernel/osrelease)"
echo "# $(ipvsadm --version)"
echo "# $(head -1 /proc/net/ip_vs)"
o=$(modprobe ip_vs_twos 2>&1); rc=$?; echo "# modprobe ip_vs_twos: $(echo $o) (exit $rc)"
o=$(ipvsadm -A -t 10.0.0.1:80 -s twos 2>&1); rc=$?; echo "# ipvsadm -A -t 10.0.0.1:80 -s twos: $(echo $o) (exit $rc)"
for b in iptables iptables-nft iptables-legacy nft ipset; do
	echo "# $b: $(command -v $b || echo absent)"
done
echo "# loaded ip_vs modules: $(grep -o '^ip_vs[a-z_]*' /proc/modules | sort | tr '\n' ' ')"
echo "# available scheduler modules: $(ls /lib/modules/*/kernel/net/netfilter/ipvs/ | tr '\n' ' ')"
echo "# default $(ipvsadm -L --timeout)"
echo "# $(dmesg | grep -o 'IPVS: Connection hash table configured.*' | head -1)"
echo "# /proc/uptime: $(cat /proc/uptime)"
for f in /proc/sys/net/ipv4/vs/*; do echo "# sysctl ${f##*/} = $(cat $f | tr '\t' ' ')"; done
