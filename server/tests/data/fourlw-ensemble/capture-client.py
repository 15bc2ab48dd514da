import socket, struct, sys, time
def frame(p): return struct.pack(">i", len(p)) + p
def recv_frame(s):
    h=b""
    while len(h)<4:
        d=s.recv(4-len(h))
        if not d: raise EOFError
        h+=d
    (n,)=struct.unpack(">i",h); b=b""
    while len(b)<n: b+=s.recv(n-len(b))
    return b
def us(v): b=v.encode(); return struct.pack(">i",len(b))+b
def connect(port):
    s=socket.create_connection(("127.0.0.1",port))
    s.sendall(frame(struct.pack(">iqiq",0,0,30000,0)+struct.pack(">i",16)+b"\0"*16+b"\0"))
    r=recv_frame(s); proto,to,sid,pl=struct.unpack(">iiqi",r[:20]); return s,sid
ACL=struct.pack(">i",1)+struct.pack(">i",31)+us("world")+us("anyone")
def create(s,xid,path,data,flags=0):
    s.sendall(frame(struct.pack(">ii",xid,1)+us(path)+struct.pack(">i",len(data))+data+ACL+struct.pack(">i",flags)))
    r=recv_frame(s); return struct.unpack(">iqi",r[:16])
mode=sys.argv[1]; port=int(sys.argv[2])
s,sid=connect(port); print("session %016x"%(sid&0xffffffffffffffff), flush=True)
if mode=="create":
    for i,p in enumerate(sys.argv[3:]):
        print(p, create(s,i+1,p,b"data-"+p.encode()), flush=True)
    s.sendall(frame(struct.pack(">ii",99,-11))); print("close",struct.unpack(">iqi",recv_frame(s)[:16]))
elif mode=="hold":
    # exists watch on each path given
    for i,p in enumerate(sys.argv[3:]):
        s.sendall(frame(struct.pack(">ii",i+1,3)+us(p)+b"\x01")); print("exists",p,struct.unpack(">iqi",recv_frame(s)[:16]),flush=True)
    while True:
        time.sleep(5)
        s.sendall(frame(struct.pack(">ii",-2,11))); recv_frame(s)
