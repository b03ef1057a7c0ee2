# lblcr: locality-based, keyed on the packet's destination address. A fwmark
# service (mark 1 = any of the VIPs 10.0.1.1-40, marked by tc) lets one
# service see many destination addresses; the kernel keys on the VIP the
# client dialled (the packet is not yet NATed). 10.2.2.2 has -x 2. Then
# a plain single-VIP TCP service with held conns (the overload path).
. /share/lib.sh
setup 4 80 81
fwmarks
ipv -A -f 1 -s lblcr
ipv -a -f 1 -r 10.2.1.2:80 -m -w 2
ipv -a -f 1 -r 10.2.2.2:80 -m -w 1 -x 2
ipv -a -f 1 -r 10.2.3.2:80 -m -w 1
ipv -a -f 1 -r 10.2.4.2:80 -m -w 0
ipv -A -t 10.0.0.1:81 -s lblcr
ipv -a -t 10.0.0.1:81 -r 10.2.1.2:81 -m -w 2
ipv -a -t 10.0.0.1:81 -r 10.2.2.2:81 -m -w 1
ipv -a -t 10.0.0.1:81 -r 10.2.3.2:81 -m -w 1
rules
svc -f 1
# first contact with six VIPs, then the same VIPs from other clients
for v in 1 2 3 4 5 6; do conn closed 10.1.1.$v 0 10.0.1.$v 80; done
for v in 1 2 3 4 5 6; do conn closed 10.1.2.$v 0 10.0.1.$v 80; done
# held conns to one VIP pile up on its dest until it counts as overloaded
for i in 1 2 3 4 5 6 7; do conn held 10.1.3.$i 0 10.0.1.1 80; done
for i in 8 9 10 11; do conn held 10.1.3.$i 0 10.0.1.2 80; done
for v in 1 2 3 4 5 6; do conn closed 10.1.2.1$v 0 10.0.1.$v 80; done
cmd -e -f 1 -r 10.2.1.2:80 -m -w 0
for v in 1 2 3 4 5 6; do conn closed 10.1.2.2$v 0 10.0.1.$v 80; done
# lblcr drops the most loaded member of a set of more than one dest when the
# set was last modified more than lblcr_expiration seconds ago
vsctl lblcr_expiration 3
pause 4
for v in 1 2 3 4 5 6; do conn closed 10.1.2.3$v 0 10.0.1.$v 80; done
lnc
svc -t 10.0.0.1:81
for i in $(seq 41 50); do conn held 10.1.1.$i 0 10.0.0.1 81; done
closeall
