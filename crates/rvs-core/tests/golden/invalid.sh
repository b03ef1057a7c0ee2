# Persistence (-p 30) and a deleted dest, with expire_quiescent_template 0
# (the default, set explicitly): the template of a client whose dest was
# deleted is invalidated in place (ports 65535) at that client's next conn,
# which gets a new template and a new dest. First for a template with no
# live conn, then for one that controls a held conn.
. /share/lib.sh
setup 3 80
vsctl expire_quiescent_template 0
ipv -A -t 10.0.0.1:80 -s rr -p 30
ipv -a -t 10.0.0.1:80 -r 10.2.1.2:80 -m -w 1
ipv -a -t 10.0.0.1:80 -r 10.2.2.2:80 -m -w 1
ipv -a -t 10.0.0.1:80 -r 10.2.3.2:80 -m -w 1
rules
svc -t 10.0.0.1:80
conn closed 10.1.1.1 0 10.0.0.1 80
conn held 10.1.1.2 40002 10.0.0.1 80
conn closed 10.1.1.3 0 10.0.0.1 80
lnc
# delete the dest of 10.1.1.1's template
rs=$(ipvsadm -Lnc | awk '$4 == "10.1.1.1:0" { print $6 }')
cmd -d -t 10.0.0.1:80 -r $rs
lnc
conn closed 10.1.1.1 0 10.0.0.1 80
lnc
conn closed 10.1.1.1 0 10.0.0.1 80
# delete the dest of 10.1.1.2's template (it controls the held conn)
rs=$(ipvsadm -Lnc | awk '$4 == "10.1.1.2:0" { print $6 }')
cmd -d -t 10.0.0.1:80 -r $rs
lnc
conn closed 10.1.1.2 0 10.0.0.1 80
lnc
closeall
