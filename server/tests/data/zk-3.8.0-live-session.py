# Captures zk-3.8.0-live-session.txt: four-letter words of Apache ZooKeeper 3.8.0 (Debian
# 3.8.0-11+deb12u2, NIO connection factory, JVM time zone UTC) while one client session is open,
# owns an ephemeral node and has two watches. server/tests/fourlw_samples.rs reproduces every
# answer from the values in it, and checks the session password against session/ids.rs.
#
# Run against a fresh standalone server with `4lw.commands.whitelist=*` and `clientPort=21999`
# (started with java -Duser.timezone=UTC ... ZooKeeperServerMain zoo.cfg), then
#   python3 zk-3.8.0-live-session.py > zk-3.8.0-live-session.txt
import socket, struct, time, sys

PORT = 21999

def frame(payload):
    return struct.pack(">i", len(payload)) + payload

def recv_frame(s):
    hdr = b""
    while len(hdr) < 4:
        hdr += s.recv(4 - len(hdr))
    (n,) = struct.unpack(">i", hdr)
    body = b""
    while len(body) < n:
        body += s.recv(n - len(body))
    return body

def ustring(v):
    b = v.encode()
    return struct.pack(">i", len(b)) + b

def four(word):
    s = socket.create_connection(("127.0.0.1", PORT))
    s.sendall(word)
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
    return out

s = socket.create_connection(("127.0.0.1", PORT))
req = struct.pack(">iqiq", 0, 0, 30000, 0) + struct.pack(">i", 16) + b"\0" * 16 + b"\0"
s.sendall(frame(req))
resp = recv_frame(s)
proto, timeout, sid, plen = struct.unpack(">iiqi", resp[:20])
passwd = resp[20:20 + plen]
print("session %016x %s timeout %d" % (sid & 0xffffffffffffffff, passwd.hex(), timeout))
# create /eph ephemeral (opcode 1), ACL world:anyone ALL
acl = struct.pack(">i", 1) + struct.pack(">i", 31) + ustring("world") + ustring("anyone")
create = struct.pack(">ii", 1, 1) + ustring("/eph") + struct.pack(">i", 1) + b"x" + acl + struct.pack(">i", 1)
s.sendall(frame(create))
r = recv_frame(s)
print("create reply xid/zxid/err", struct.unpack(">iqi", r[:16]))
# getData /eph with watch (opcode 4)
s.sendall(frame(struct.pack(">ii", 2, 4) + ustring("/eph") + b"\x01"))
r = recv_frame(s)
print("getData reply xid/zxid/err", struct.unpack(">iqi", r[:16]))
# exists /zookeeper with watch (opcode 3)
s.sendall(frame(struct.pack(">ii", 3, 3) + ustring("/zookeeper") + b"\x01"))
r = recv_frame(s)
print("exists reply", struct.unpack(">iqi", r[:16]))
time.sleep(0.3)
for w in [b"cons", b"stat", b"dump", b"wchs", b"wchc", b"wchp"]:
    out = four(w)
    print("===== %s %r" % (w.decode(), out))
