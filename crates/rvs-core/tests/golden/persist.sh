# Persistence: -p 30 (per client address), -p 30 -M 255.255.255.0 (per
# client /24), a persistent fwmark service (mark 2 = VIPs 10.0.2.1-40,
# marked by tc), and a quiesced persistent dest with
# expire_quiescent_template 0 then 1. lnc snapshots show the templates
# (state NONE, client port 0).
. /share/lib.sh
setup 3 80 81 82
fwmarks
ipv -A -t 10.0.0.1:80 -s rr -p 30
ipv -a -t 10.0.0.1:80 -r 10.2.1.2:80 -m -w 1
ipv -a -t 10.0.0.1:80 -r 10.2.2.2:80 -m -w 1
ipv -a -t 10.0.0.1:80 -r 10.2.3.2:80 -m -w 1
ipv -A -t 10.0.0.2:81 -s rr -p 30 -M 255.255.255.0
ipv -a -t 10.0.0.2:81 -r 10.2.1.2:81 -m -w 1
ipv -a -t 10.0.0.2:81 -r 10.2.2.2:81 -m -w 1
ipv -a -t 10.0.0.2:81 -r 10.2.3.2:81 -m -w 1
ipv -A -f 2 -s rr -p 30
ipv -a -f 2 -r 10.2.1.2:82 -m -w 1
ipv -a -f 2 -r 10.2.2.2:82 -m -w 1
ipv -a -f 2 -r 10.2.3.2:82 -m -w 1
rules
svc -t 10.0.0.1:80
for c in 1 2 1 3 2 4 1 1 3 5 2 4; do conn closed 10.1.1.$c 0 10.0.0.1 80; done
conn held 10.1.1.1 0 10.0.0.1 80
conn held 10.1.1.6 0 10.0.0.1 80
conn held 10.1.1.2 0 10.0.0.1 80
lnc
svc -t 10.0.0.2:81
for c in 1.1 2.1 1.2 3.1 2.2 1.3 3.2 2.3 1.4 3.3 1.5 2.4; do conn closed 10.1.$c 0 10.0.0.2 81; done
lnc
svc -f 2
for c in 7 7 8 7 8 9 9 8 7; do
	for v in 1 2; do conn closed 10.1.1.$c 0 10.0.2.$((c + v)) 82; done
done
lnc
# quiesce the dest that 10.1.1.1's template on 10.0.0.1:80 points to
svc -t 10.0.0.1:80
rs=$(ipvsadm -Lnc | awk '$4 == "10.1.1.1:0" && $5 == "10.0.0.1:80" { print $6 }')
cmd -e -t 10.0.0.1:80 -r $rs -m -w 0
conn closed 10.1.1.1 0 10.0.0.1 80
conn closed 10.1.1.7 0 10.0.0.1 80
vsctl expire_quiescent_template 1
conn closed 10.1.1.1 0 10.0.0.1 80
conn closed 10.1.1.1 0 10.0.0.1 80
lnc
closeall
