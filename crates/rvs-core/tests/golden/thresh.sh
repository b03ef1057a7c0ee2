# Upper and lower connection thresholds (-x 4 -y 2) on a wlc service: the
# dest 10.2.1.2 (weight 10) takes held conns until its 4th sets OVERLOAD;
# wlc then sends new conns to 10.2.2.2 (weight 1). Its held conns are then
# aborted one by one (the client sends RST: the entry goes to CLOSE for
# 10 s instead of TIME_WAIT for 120 s); a conn counts until its entry is
# freed, and the flag clears only when the total drops below -y.
. /share/lib.sh
setup 2 80
ipv -A -t 10.0.0.1:80 -s wlc
ipv -a -t 10.0.0.1:80 -r 10.2.2.2:80 -m -w 1
ipv -a -t 10.0.0.1:80 -r 10.2.1.2:80 -m -w 10 -x 4 -y 2
rules
svc -t 10.0.0.1:80
for c in 1 2 3 4 5 6; do conn held 10.1.1.$c $((40000 + c)) 10.0.0.1 80; done
lnc
# 10.2.1.2 holds 4 conns (10.1.1.1, .3, .4, .5 if wlc went as expected)
for c in 1 3 4; do
	habort 10.1.1.$c:$((40000 + c))
	[ $c = 1 ] && lnc
	pause 12
	counts
	conn held 10.1.1.$((c + 6)) $((40006 + c)) 10.0.0.1 80
done
lnc
closeall
