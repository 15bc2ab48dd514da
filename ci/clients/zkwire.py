"""ZooKeeper client wire format (jute), written from the protocol reference for these tests.

Only what the differential test needs: encoders for every client request the tests send, a
decoder for every reply body, and a blocking framed connection over a loopback socket. Replies
are decoded into plain Python values (dicts, lists, ints, bytes) so that two servers' answers
can be compared field by field.
"""

import socket
import struct
import time

# Opcodes (ZooDefs.OpCode).
CREATE, DELETE, EXISTS, GET_DATA, SET_DATA = 1, 2, 3, 4, 5
GET_ACL, SET_ACL, GET_CHILDREN, SYNC, PING = 6, 7, 8, 9, 11
GET_CHILDREN2, CHECK, MULTI, CREATE2 = 12, 13, 14, 15
CHECK_WATCHES, REMOVE_WATCHES, CREATE_CONTAINER, CREATE_TTL, MULTI_READ = 17, 18, 19, 21, 22
AUTH, SET_WATCHES, GET_EPHEMERALS, GET_ALL_CHILDREN_NUMBER = 100, 101, 103, 104
SET_WATCHES2, ADD_WATCH, WHO_AM_I, CLOSE_SESSION = 105, 106, 107, -11

OP_NAMES = {
    1: "create", 2: "delete", 3: "exists", 4: "getData", 5: "setData", 6: "getACL",
    7: "setACL", 8: "getChildren", 9: "sync", 11: "ping", 12: "getChildren2", 13: "check",
    14: "multi", 15: "create2", 17: "checkWatches", 18: "removeWatches",
    19: "createContainer", 21: "createTTL", 22: "multiRead", 100: "auth", 101: "setWatches",
    103: "getEphemerals", 104: "getAllChildrenNumber", 105: "setWatches2", 106: "addWatch",
    107: "whoAmI", -11: "closeSession", -1: "error",
}

XID_NOTIFICATION, XID_PING, XID_AUTH, XID_SET_WATCHES = -1, -2, -4, -8


class Writer:
    def __init__(self):
        self.parts = []

    def int(self, v):
        self.parts.append(struct.pack(">i", v))
        return self

    def long(self, v):
        self.parts.append(struct.pack(">q", v))
        return self

    def bool(self, v):
        self.parts.append(b"\x01" if v else b"\x00")
        return self

    def buf(self, b):
        if b is None:
            return self.int(-1)
        self.int(len(b))
        self.parts.append(bytes(b))
        return self

    def ustr(self, s):
        return self.buf(None if s is None else s.encode("utf-8"))

    def strs(self, items):
        if items is None:
            return self.int(-1)
        self.int(len(items))
        for s in items:
            self.ustr(s)
        return self

    def acls(self, acl):
        if acl is None:
            return self.int(-1)
        self.int(len(acl))
        for perms, scheme, ident in acl:
            self.int(perms).ustr(scheme).ustr(ident)
        return self

    def bytes(self):
        return b"".join(self.parts)


class Truncated(Exception):
    pass


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def _take(self, n):
        if self.pos + n > len(self.data):
            raise Truncated(f"need {n} bytes at {self.pos}, frame has {len(self.data)}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def int(self):
        return struct.unpack(">i", self._take(4))[0]

    def long(self):
        return struct.unpack(">q", self._take(8))[0]

    def bool(self):
        return self._take(1) != b"\x00"

    def buf(self):
        n = self.int()
        if n < 0:
            return None
        return self._take(n)

    def ustr(self):
        b = self.buf()
        return None if b is None else b.decode("utf-8", "replace")

    def strs(self):
        n = self.int()
        if n < 0:
            return None
        return [self.ustr() for _ in range(n)]

    def stat(self):
        keys = ("czxid", "mzxid", "ctime", "mtime", "version", "cversion", "aversion",
                "ephemeralOwner", "dataLength", "numChildren", "pzxid")
        vals = (self.long(), self.long(), self.long(), self.long(), self.int(), self.int(),
                self.int(), self.long(), self.int(), self.int(), self.long())
        return dict(zip(keys, vals))

    def acls(self):
        n = self.int()
        if n < 0:
            return None
        return [(self.int(), self.ustr(), self.ustr()) for _ in range(n)]

    def rest(self):
        b = self.data[self.pos:]
        self.pos = len(self.data)
        return b


# ---- request bodies -------------------------------------------------------------------------

def create_body(path, data, acl, flags, ttl=None):
    w = Writer().ustr(path).buf(data).acls(acl).int(flags)
    if ttl is not None:
        w.long(ttl)
    return w.bytes()


def path_version_body(path, version):
    return Writer().ustr(path).int(version).bytes()


def path_watch_body(path, watch):
    return Writer().ustr(path).bool(watch).bytes()


def path_body(path):
    return Writer().ustr(path).bytes()


def set_data_body(path, data, version):
    return Writer().ustr(path).buf(data).int(version).bytes()


def set_acl_body(path, acl, version):
    return Writer().ustr(path).acls(acl).int(version).bytes()


def path_int_body(path, v):
    return Writer().ustr(path).int(v).bytes()


def auth_body(scheme, auth):
    return Writer().int(0).ustr(scheme).buf(auth).bytes()


def set_watches_body(rel_zxid, data, exist, child, persistent=None, recursive=None):
    w = Writer().long(rel_zxid).strs(data).strs(exist).strs(child)
    if persistent is not None:
        w.strs(persistent).strs(recursive)
    return w.bytes()


def multi_body(ops):
    """ops: list of (opcode, body bytes)."""
    w = Writer()
    for op, body in ops:
        w.int(op).bool(False).int(-1)
        w.parts.append(body)
    w.int(-1).bool(True).int(-1)
    return w.bytes()


def connect_body(last_zxid, timeout_ms, session_id, passwd, read_only=False):
    return (Writer().int(0).long(last_zxid).int(timeout_ms).long(session_id).buf(passwd)
            .bool(read_only).bytes())


# ---- reply bodies ---------------------------------------------------------------------------

def decode_body(op, r):
    """Decodes the success body of a reply to `op`; returns a dict (may be empty)."""
    if op == CREATE:
        return {"path": r.ustr()}
    if op in (CREATE2, CREATE_CONTAINER, CREATE_TTL):
        return {"path": r.ustr(), "stat": r.stat()}
    if op in (EXISTS, SET_DATA, SET_ACL):
        return {"stat": r.stat()}
    if op == GET_DATA:
        return {"data": r.buf(), "stat": r.stat()}
    if op == GET_ACL:
        return {"acl": r.acls(), "stat": r.stat()}
    if op in (GET_CHILDREN, GET_EPHEMERALS):
        return {"children": r.strs()}
    if op == GET_CHILDREN2:
        return {"children": r.strs(), "stat": r.stat()}
    if op == SYNC:
        return {"path": r.ustr()}
    if op == GET_ALL_CHILDREN_NUMBER:
        return {"total": r.int()}
    if op == ADD_WATCH:
        return {"err": r.int()}
    if op == WHO_AM_I:
        n = r.int()
        return {"clientInfo": None if n < 0 else [(r.ustr(), r.ustr()) for _ in range(n)]}
    if op in (MULTI, MULTI_READ):
        results = []
        for _ in range(10000):
            rtype, done, err = r.int(), r.bool(), r.int()
            if done:
                results.append(("done", rtype, err))
                break
            if rtype == -1:
                results.append(("error", err, r.int()))
            elif rtype == CREATE:
                results.append(("create", err, r.ustr()))
            elif rtype == CREATE2:
                results.append(("create2", err, r.ustr(), r.stat()))
            elif rtype in (DELETE, CHECK):
                results.append((OP_NAMES[rtype], err))
            elif rtype == SET_DATA:
                results.append(("setData", err, r.stat()))
            elif rtype == GET_DATA:
                results.append(("getData", err, r.buf(), r.stat()))
            elif rtype == GET_CHILDREN:
                results.append(("getChildren", err, r.strs()))
            else:
                results.append(("unknown-type", rtype, err, r.rest().hex()))
                break
        return {"results": results}
    return {}


def decode_event(r):
    return {"type": r.int(), "state": r.int(), "path": r.ustr()}


# ---- connection -----------------------------------------------------------------------------

class Closed(Exception):
    pass


class Conn:
    """One TCP connection speaking the framed protocol; every wait is bounded."""

    def __init__(self, port, timeout_s=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False

    def send_frame(self, payload):
        self.sock.sendall(struct.pack(">i", len(payload)) + payload)

    def send_request(self, xid, op, body=b""):
        self.send_frame(struct.pack(">ii", xid, op) + body)

    def fileno(self):
        return self.sock.fileno()

    def _fill(self, deadline):
        if self.eof:
            raise Closed()
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no frame from the server in time")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        except socket.timeout:
            raise TimeoutError("no frame from the server in time")
        if not chunk:
            self.eof = True
            raise Closed()
        self.buf += chunk

    def has_frame(self):
        if len(self.buf) < 4:
            return False
        n = struct.unpack(">i", self.buf[:4])[0]
        return len(self.buf) >= 4 + n

    def read_frame(self, timeout_s=5.0):
        """Returns the next frame's payload; raises Closed at EOF, TimeoutError after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while len(self.buf) < 4:
            self._fill(deadline)
        n = struct.unpack(">i", self.buf[:4])[0]
        if n < 0 or n > 16 * 1024 * 1024:
            raise ValueError(f"bad frame length {n}")
        while len(self.buf) < 4 + n:
            self._fill(deadline)
        frame = self.buf[4:4 + n]
        self.buf = self.buf[4 + n:]
        return frame

    def poll(self):
        """Reads whatever is already available without blocking; returns False at EOF."""
        if self.eof:
            return False
        self.sock.setblocking(False)
        try:
            for _ in range(1000):
                try:
                    chunk = self.sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    break
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    self.eof = True
                    break
                self.buf += chunk
        finally:
            self.sock.setblocking(True)
        return not self.eof

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def handshake(conn, last_zxid, timeout_ms, session_id, passwd, read_only=False):
    conn.send_frame(connect_body(last_zxid, timeout_ms, session_id, passwd, read_only))
    frame = conn.read_frame()
    r = Reader(frame)
    resp = {"protocolVersion": r.int(), "timeOut": r.int(), "sessionId": r.long(),
            "passwd": r.buf()}
    rest = r.rest()
    resp["readOnly"] = None if not rest else rest[0]
    resp["extra"] = rest[1:].hex()
    resp["frameLength"] = len(frame)
    return resp
