"""Differential test: the same randomized client traffic sent to Apache ZooKeeper 3.8 and to corral.

Usage: differential.py [--seed N] [--steps N] [--run-dir DIR] [--corral PATH]
                       [--allowlist FILE] [--only-probes]

Both servers are started fresh with the same zoo.cfg. Several client sessions (raw sockets, the
wire format written in zkwire.py) send a sequence of operations generated from the seed; the
run is lock-step: each step is sent to ZooKeeper, its replies read, then the same step is sent
to corral. Every frame a session receives (replies, watch notifications, connection responses,
the server closing the connection) is recorded per session in arrival order and compared with
the other server's, so a notification's position relative to replies is compared too.

What is masked, and why:
  * ctime/mtime: wall-clock times of two different processes.
  * session ids (in connect responses and ephemeralOwner): each server draws its own ids from
    its clock. They are replaced by the test's name for the session ("s2.1" = slot 2, second
    session), so an ephemeralOwner must still name the right session.
  * session passwords: derived from the session id.
  * zxids: compared after subtracting the difference between the two servers' zxids at the
    first reply of the run (both start empty, so that offset is expected to be 0, and is
    printed). Zero and negative zxids (nodes made at start-up, -1 in notifications) are
    compared as they are.
  * orders ZooKeeper takes from a Java hash set, which its API leaves unspecified: the names
    in getChildren/getChildren2/getEphemerals results and whoAmI's list are sorted; the
    notifications one closeSession causes (it deletes the session's ephemerals in hash-set
    order) are compared as a multiset, between two barriers of pings on every session.
  * the generator never lets an "auth" ACL expand to two or more digest ids (that expansion
    also comes out in hash-set order).
Nothing else is masked: error codes, reply zxids, every other Stat field, data, ACLs, multi
result shapes, notification type/state/path/zxid and their position among the replies,
negotiated timeouts, frame lengths of the connect responses, the server closing a connection,
and any bytes left over after a decoded body.

Known differences (reported corral bugs, and ZooKeeper 3.8.0 bugs corral does not copy) are
listed in known-differences.txt; each disables the one generator feature that triggers it, and
is re-checked by its probe in probes.py, which must still show the difference (so a fixed bug
makes the test fail until its entry is removed).

On a divergence it prints the seed, the step, both frames, the session's recent steps and
frames, and writes every frame (frames-<server>.txt) and both trees (tree-<server>.txt) to the
run directory. --only runs a subset of a seed's steps, to shrink a failure by hand.
"""

import argparse
import os
import random
import select
import struct
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import servers  # noqa: E402
from probes import PROBES  # noqa: E402
from zkwire import (ADD_WATCH, AUTH, CHECK, CHECK_WATCHES, CLOSE_SESSION, CREATE, CREATE2,
                    CREATE_CONTAINER, CREATE_TTL, Closed, Conn, DELETE, EXISTS, GET_ACL,
                    GET_ALL_CHILDREN_NUMBER, GET_CHILDREN, GET_CHILDREN2, GET_DATA, GET_EPHEMERALS,
                    MULTI, MULTI_READ, OP_NAMES, PING, REMOVE_WATCHES, Reader, SET_ACL, SET_DATA,
                    SET_WATCHES, SET_WATCHES2, SYNC, WHO_AM_I, XID_AUTH, XID_NOTIFICATION,
                    XID_PING, XID_SET_WATCHES, auth_body, create_body, decode_body, decode_event,
                    handshake, multi_body, path_body, path_int_body, path_version_body,
                    path_watch_body, set_acl_body, set_data_body, set_watches_body)  # noqa: E402
import zkwire  # noqa: E402

STEP_REPLY_TIMEOUT_S = 5.0
SESSION_TIMEOUT_MS = 30000
SLOTS = 4
PING_IDLE_STEPS = 40
RUN_LIMIT_S = 150  # well above a normal run (about 1 ms per step per server)

OPEN = [(31, "world", "anyone")]


def digest_of(user_pass):
    import base64
    import hashlib
    user = user_pass.split(":", 1)[0]
    return user + ":" + base64.b64encode(hashlib.sha1(user_pass.encode()).digest()).decode()


USERS = ["user1:pw1", "user2:pw2", "super:test"]

ACL_CHOICES = [
    ("open", OPEN),
    ("open", OPEN),
    ("open", OPEN),
    ("read-only", [(1, "world", "anyone")]),
    ("creator-all", [(31, "auth", "")]),
    ("digest-user1", [(31, "digest", digest_of("user1:pw1"))]),
    ("digest-user2-rw+world-r", [(3, "digest", digest_of("user2:pw2")), (1, "world", "anyone")]),
    ("digest-user1-cd", [(12, "digest", digest_of("user1:pw1")), (17, "world", "anyone")]),
    ("ip-localhost", [(31, "ip", "127.0.0.1")]),
    ("ip-other-net", [(31, "ip", "10.0.0.0/8"), (1, "world", "anyone")]),
    ("duplicates", [(31, "world", "anyone"), (31, "world", "anyone"), (1, "world", "anyone")]),
    ("empty", []),
    ("unknown-scheme", [(31, "foo", "bar")]),
    ("digest-no-colon", [(31, "digest", "nocolon")]),
    ("world-someone", [(31, "world", "someone")]),
    ("no-perms", [(0, "world", "anyone")]),
    ("auth-with-id", [(31, "auth", "whoever")]),
    ("ip-bad", [(31, "ip", "300.1.2.3")]),
]

NAMES = ["a", "b", "c"]
READ_OPS = {EXISTS, GET_DATA, GET_CHILDREN, GET_CHILDREN2, GET_ACL, SYNC, MULTI_READ,
            CHECK_WATCHES, GET_EPHEMERALS, GET_ALL_CHILDREN_NUMBER, WHO_AM_I}
# ACLs that deny READ to some of the test's sessions (all of which connect from 127.0.0.1).
UNREADABLE = {"creator-all", "digest-user1", "no-perms", "auth-with-id"}
SPECIAL_PATHS = ["/", "/zookeeper", "/zookeeper/config", "/zookeeper/quota", "d", "/d/",
                 "/d//a", "/d/./a", "/d/\u0001", "", "/d/a/../b", "/zookeeper/x"]


def valid_path(p):
    """ZooKeeper's PathUtils.validatePath, for the generator's paths."""
    if not p.startswith("/"):
        return False
    if p == "/":
        return True
    if p.endswith("/"):
        return False
    for part in p[1:].split("/"):
        if part in ("", ".", ".."):
            return False
    return not any(ord(ch) < 0x20 or 0x7f <= ord(ch) <= 0x9f for ch in p)


class Generator:
    """Produces steps from the seed. Learns created sequential names from ZooKeeper's replies.

    It keeps a conservative model of the watches each connection ("watcher") may hold: every
    path a watcher ever registered a watch on, by kind. The model serves only to keep
    allowlisted differences out of the traffic (see known-differences.txt).
    """

    def __init__(self, seed, disabled):
        self.rng = random.Random(seed)
        self.disabled = set(disabled)
        self.seq_paths = []
        self.created = []  # paths ZooKeeper reported created, most recent last
        # Paths (and sequential prefixes) ever given an ACL some session may not read.
        self.maybe_unreadable = set()
        self.next_wid = SLOTS
        self.wid = list(range(SLOTS))  # current watcher (connection) of each slot
        self.modes = {}  # (watcher, path) -> watch modes ever registered
        self.ids = {}  # watcher (connection) -> digest users it authenticated as
        self.watchers = {}  # path -> watchers that ever registered on it
        self.slot = 0

    def off(self, feature):
        return feature in self.disabled

    def new_watcher(self, slot):
        self.wid[slot] = self.next_wid
        self.next_wid += 1

    def note_watch(self, path, mode):
        """mode: "std" (getData/exists/getChildren), "pers" or "rec" (addWatch modes 0, 1)."""
        w = self.wid[self.slot]
        self.modes.setdefault((w, path), set()).add(mode)
        self.watchers.setdefault(path, set()).add(w)

    def may_watch(self, path, mode):
        # ZooKeeper 3.8.0 keeps one watch mode per connection and path: a second registration
        # in another mode replaces the first.
        if not self.off("one-watch-mode-per-path"):
            return True
        return self.modes.get((self.wid[self.slot], path), set()) <= {mode}

    def has_persistent(self, path):
        return bool(self.modes.get((self.wid[self.slot], path), set()) & {"pers", "rec"})

    def path(self, watched=False):
        r = self.rng.random()
        locked_ok = not (watched and self.off("watch-event-needs-read-acl"))
        if r < 0.03:
            return self.rng.choice(SPECIAL_PATHS)
        if r < 0.10:
            p = "/locked/" + "/".join(self.rng.choice(NAMES) for _ in range(self.rng.choice([1, 2])))
            if locked_ok:
                return p
        if r < 0.15 and self.seq_paths:
            p = self.rng.choice(self.seq_paths[-12:])
            if locked_ok or not p.startswith("/locked"):
                return p
        if r < 0.45 and self.created:
            p = self.rng.choice(self.created[-40:])
            if locked_ok or not p.startswith("/locked"):
                return p
        depth = self.rng.choice([1, 1, 2, 2, 2, 3])
        return "/d/" + "/".join(self.rng.choice(NAMES) for _ in range(depth))

    def path_where(self, ok, fallback):
        for _ in range(40):
            p = self.path(watched=True)
            if ok(p):
                return p
        return fallback

    def data(self):
        r = self.rng.random()
        if r < 0.08:
            return None
        return bytes(self.rng.randrange(256) for _ in range(self.rng.choice([0, 1, 3, 8, 20])))

    def acl(self, path):
        choice = self.acl_choice(path)
        if choice[0] in UNREADABLE:
            self.maybe_unreadable.add(path)
        return choice

    def acl_choice(self, path):
        choice = self.rng.choice(ACL_CHOICES)
        if choice[0] in ("creator-all", "auth-with-id") and len(self.ids.get(self.wid[self.slot], ())) > 1:
            # The "auth" scheme expands to the connection's digest ids in ZooKeeper's hash-set
            # order, which is unspecified: use it only where it expands to at most one id.
            choice = ACL_CHOICES[0]
        if (self.off("watch-event-needs-read-acl") and choice[0] in UNREADABLE
                and not path.startswith("/locked/")):
            # ZooKeeper drops watch events of nodes the watcher may not read; nodes that some
            # sessions may not read live under /locked, where nobody watches.
            choice = ACL_CHOICES[0]
        return choice

    def version(self):
        return self.rng.choice([-1, -1, -1, 0, 0, 1, 2, 5])

    def create_op(self, in_multi=False):
        rng = self.rng
        op = rng.choice([CREATE] * 5 + [CREATE2] * 5 + [CREATE_CONTAINER] + [CREATE_TTL] * 2)
        path = self.path()
        name, acl = self.acl(path)
        if in_multi and self.off("multi-create-opcode-by-flags"):
            # Only sub-ops whose opcode matches their flags (as the Java client sends them).
            flags = rng.choice([0, 0, 1, 1, 2, 3, 4, 5, 6, 7, -1])
            op = CREATE_CONTAINER if flags == 4 else CREATE_TTL if flags in (5, 6) else CREATE
            ttl = rng.choice([3_600_000, 0, -5, 1 << 41]) if op == CREATE_TTL else None
            return (op, create_body(path, self.data(), acl, flags, ttl),
                    f"{OP_NAMES[op]} {path!r} flags={flags} ttl={ttl} acl={name}")
        if op in (CREATE, CREATE2):
            rare = [4, 5, 6, 7, -1] if rng.random() < 0.2 else []
            flags = rng.choice([0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 3] + rare)
            return (op, create_body(path, self.data(), acl, flags),
                    f"{OP_NAMES[op]} {path!r} flags={flags} acl={name}")
        if op == CREATE_CONTAINER:
            flags = rng.choice([4, 4, 4, 0])
            return (op, create_body(path, self.data(), acl, flags),
                    f"createContainer {path!r} flags={flags} acl={name}")
        flags = rng.choice([5, 5, 6, 6, 0, 1])
        ttl = rng.choice([3_600_000, 3_600_000, 86_400_000, 0, -5, 1 << 41])
        if flags not in (5, 6) and ttl < 0:
            # ZooKeeper 3.8.0 accepts this, logs it, then fails to apply it: the server stops
            # (and so does every restart on that log). Only send it with an ACL that fails
            # validation before the txn is logged.
            if self.off("createTTL-non-ttl-flags"):
                ttl = 3_600_000
            else:
                name, acl = "empty", []
        return (op, create_body(path, self.data(), acl, flags, ttl),
                f"createTTL {path!r} flags={flags} ttl={ttl} acl={name}")

    def watch_request(self):
        rng = self.rng
        w = self.wid[self.slot]
        if rng.random() < 0.5:
            op = CHECK_WATCHES
            if self.off("checkWatches-any-session"):
                # ZooKeeper 3.8.0 answers for every session's watches: only ask about paths no
                # other watcher ever watched.
                p = self.path_where(lambda q: self.watchers.get(q, set()) <= {w}, "/d/unwatched")
            else:
                p = self.path()
            if self.off("checkWatches-invalid-path") and not valid_path(p):
                p = "/d/unwatched"
        else:
            op = REMOVE_WATCHES
            p = self.path()
        t = rng.choice([1, 2, 3])
        if t != 3 and self.off("watch-type-with-persistent") and self.has_persistent(p):
            t = 3
        return op, path_int_body(p, t), f"{OP_NAMES[op]} {p!r} type={t}"

    def request(self):
        """One plain request: (op, body, description)."""
        rng = self.rng
        kinds = (["create"] * 22 + ["delete"] * 10 + ["setData"] * 10 + ["exists"] * 7
                 + ["getData"] * 8 + ["getChildren"] * 5 + ["getChildren2"] * 5
                 + ["getACL"] * 4 + ["setACL"] * 4 + ["sync"] * 2 + ["multi"] * 8
                 + ["multiRead"] * 3 + ["watches"] * 4 + ["addWatch"] * 3
                 + ["getEphemerals"] * 2 + ["getAllChildrenNumber"] * 2 + ["whoAmI"] * 1)
        kind = rng.choice(kinds)
        if kind == "create":
            return self.create_op()
        if kind == "delete":
            p, v = self.path(), self.version()
            return DELETE, path_version_body(p, v), f"delete {p!r} v={v}"
        if kind == "setData":
            p, d, v = self.path(), self.data(), self.version()
            return (SET_DATA, set_data_body(p, d, v),
                    f"setData {p!r} len={None if d is None else len(d)} v={v}")
        if kind in ("exists", "getData", "getChildren", "getChildren2"):
            op = {"exists": EXISTS, "getData": GET_DATA, "getChildren": GET_CHILDREN,
                  "getChildren2": GET_CHILDREN2}[kind]
            w = rng.random() < 0.5
            p = self.path(watched=w)
            if op == EXISTS and self.off("exists-invalid-path") and not valid_path(p):
                p = "/d/a"
            if (op == EXISTS and self.off("exists-needs-read-acl")
                    and any(p.startswith(u) for u in self.maybe_unreadable)):
                # ZooKeeper 3.8.0 answers exists without checking READ; corral checks it.
                kind, op = "getData", GET_DATA
            if w and not self.may_watch(p, "std"):
                w = False
            if w:
                self.note_watch(p, "std")
            return op, path_watch_body(p, w), f"{kind} {p!r} watch={w}"
        if kind == "getACL":
            p = self.path()
            return GET_ACL, path_body(p), f"getACL {p!r}"
        if kind == "setACL":
            p, v = self.path(), self.version()
            name, acl = self.acl(p)
            return SET_ACL, set_acl_body(p, acl, v), f"setACL {p!r} acl={name} v={v}"
        if kind == "sync":
            p = self.path()
            return SYNC, path_body(p), f"sync {p!r}"
        if kind == "multi":
            ops, descs = [], []
            for _ in range(rng.choice([1, 2, 2, 3, 3, 4, 5])):
                subs = ["create", "create", "delete", "setData", "check"]
                if not self.off("multi-with-read-op"):
                    subs.append("read")
                sub = rng.choice(subs)
                if sub == "create":
                    op, body, d = self.create_op(in_multi=True)
                elif sub == "delete":
                    p, v = self.path(), self.version()
                    op, body, d = DELETE, path_version_body(p, v), f"delete {p!r} v={v}"
                elif sub == "setData":
                    p, v = self.path(), self.version()
                    op, body, d = SET_DATA, set_data_body(p, self.data(), v), f"setData {p!r} v={v}"
                elif sub == "check":
                    p, v = self.path(), self.version()
                    op, body, d = CHECK, path_version_body(p, v), f"check {p!r} v={v}"
                else:
                    p = self.path()
                    op, body, d = GET_DATA, path_watch_body(p, False), f"getData {p!r}"
                ops.append((op, body))
                descs.append(d)
            return MULTI, multi_body(ops), "multi [" + "; ".join(descs) + "]"
        if kind == "multiRead":
            ops, descs = [], []
            for _ in range(rng.choice([1, 2, 3])):
                op = rng.choice([GET_DATA, GET_CHILDREN])
                w = rng.random() < 0.3 and not self.off("multiRead-watch-flag")
                p = self.path(watched=w)
                w = w and self.may_watch(p, "std")
                if w:
                    self.note_watch(p, "std")
                ops.append((op, path_watch_body(p, w)))
                descs.append(f"{OP_NAMES[op]} {p!r} watch={w}")
            return MULTI_READ, multi_body(ops), "multiRead [" + "; ".join(descs) + "]"
        if kind == "watches":
            return self.watch_request()
        if kind == "addWatch":
            w = self.wid[self.slot]
            m = rng.choice([0, 1, 1])

            def ok(q):
                if self.off("addWatch-invalid-path") and not valid_path(q):
                    return False
                if m == 1 and q == "/" and self.off("watch-event-needs-read-acl"):
                    return False  # it would watch /locked
                return self.may_watch(q, mode)
            mode = "rec" if m == 1 else "pers"
            p = self.path_where(ok, "/d/persistent" if m == 0 else "/d/recursive")
            self.note_watch(p, mode)
            return ADD_WATCH, path_int_body(p, m), f"addWatch {p!r} mode={m}"
        if kind == "getEphemerals":
            p = rng.choice(["/", "", "/d", "/d/a", "/d/b/"])
            return GET_EPHEMERALS, path_body(p), f"getEphemerals {p!r}"
        if kind == "getAllChildrenNumber":
            p = rng.choice([self.path(), "/", "/d"])
            if p == "" and self.off("getAllChildrenNumber-empty-path"):
                p = "/"
            return GET_ALL_CHILDREN_NUMBER, path_body(p), f"getAllChildrenNumber {p!r}"
        return WHO_AM_I, b"", "whoAmI"

    def special(self):
        rng = self.rng
        slot = self.slot
        r = rng.random()
        if r < 0.25:
            self.new_watcher(slot)
            return ("close", rng.choice([SESSION_TIMEOUT_MS, SESSION_TIMEOUT_MS, 100_000]))
        if r < 0.55:
            self.new_watcher(slot)
            mode = rng.choice(["setWatches", "setWatches2", "none"])
            kinds = ("data", "exist", "child") + (("persistent", "recursive")
                                                  if mode == "setWatches2" else ())
            w = {k: [self.path(watched=True) for _ in range(rng.choice([0, 0, 1, 2]))]
                 for k in ("data", "exist", "child", "persistent", "recursive")}
            if mode == "none":
                return ("reconnect", mode, w)
            if self.off("watch-event-needs-read-acl"):
                w["recursive"] = [p for p in w["recursive"] if p != "/"]
            # A fresh connection: keep one mode per path, as on any connection.
            for k in kinds:
                m = {"persistent": "pers", "recursive": "rec"}.get(k, "std")
                w[k] = [p for p in w[k] if self.may_watch(p, m)]
                for p in w[k]:
                    self.note_watch(p, m)
            return ("reconnect", mode, w)
        if r < 0.85:
            users = USERS + ["user1:wrong", "user3:"]
            if not self.off("digest-auth-without-colon"):
                users.append("nocolon")
            user = rng.choice(users)
            self.ids.setdefault(self.wid[slot], set()).add(user.split(":")[0])
            return ("auth", "digest", user)
        self.new_watcher(slot)
        if r < 0.92:
            return ("auth", "foo", "bar")
        if r < 0.96:
            return ("badop",)
        return ("wrongpw",)

    def step(self):
        self.slot = slot = self.rng.randrange(SLOTS)
        if self.rng.random() < 0.05:
            return slot, [self.special()]
        n = 1 if self.rng.random() < 0.7 else self.rng.randrange(2, 5)
        reqs = []
        for _ in range(n):
            r = self.request()
            if (self.off("pipelined-write-after-setACL") and r[0] not in READ_OPS
                    and any(q[0] == SET_ACL for q in reqs)):
                continue
            reqs.append(r)
        return slot, [("req",) + r for r in reqs]


def describe(action):
    if action[0] == "req":
        return action[3]
    if action[0] == "reconnect":
        return f"reconnect ({action[1]}) {action[2] if action[1] != 'none' else ''}"
    return " ".join(str(a) for a in action)


# ---- one server's side of the run ------------------------------------------------------------

class Sess:
    def __init__(self, slot):
        self.slot = slot
        self.gen = -1
        self.conn = None
        self.session_id = 0
        self.passwd = b"\0" * 16
        self.xid = 0
        self.last_zxid = 0
        self.pending = []
        self.frames = []
        self.frame_steps = []  # the step during which each frame was read (not compared)
        self.compared = 0
        self.settled = 0

    def next_xid(self):
        self.xid += 1
        return self.xid


class Divergence(Exception):
    pass


class Side:
    def __init__(self, name, port):
        self.name = name
        self.port = port
        self.sess = [Sess(i) for i in range(SLOTS)]
        self.names = {}  # session id -> test's name for it
        self.zxid_offset = None  # added to this side's zxids
        self.step_no = 0

    # Normalisation ---------------------------------------------------------------------------
    def z(self, v):
        if v is None or v <= 0 or self.zxid_offset is None:
            return v
        return v + self.zxid_offset

    def owner(self, v):
        if v == 0:
            return 0
        return self.names.get(v, f"unknown-session-0x{v & 0xffffffffffffffff:x}")

    def stat(self, st):
        st = dict(st)
        del st["ctime"], st["mtime"]
        for k in ("czxid", "mzxid", "pzxid"):
            st[k] = self.z(st[k])
        st["ephemeralOwner"] = self.owner(st["ephemeralOwner"])
        return st

    def body(self, b):
        out = {}
        for k, v in b.items():
            if k == "stat":
                out[k] = self.stat(v)
            elif k in ("children", "clientInfo"):
                # Both are Java hash-set iteration orders in ZooKeeper: unspecified.
                out[k] = None if v is None else sorted(v)
            elif k == "data":
                out[k] = None if v is None else v.hex()
            elif k == "results":
                res = []
                for r in v:
                    r = list(r)
                    for i, x in enumerate(r):
                        if isinstance(x, dict):
                            r[i] = self.stat(x)
                        elif isinstance(x, bytes):
                            r[i] = x.hex()
                        elif isinstance(x, list):
                            r[i] = sorted(x)
                    res.append(tuple(r))
                out[k] = res
            else:
                out[k] = v
        return out

    # Frames ------------------------------------------------------------------------------------
    def record(self, s, frame):
        s.frames.append(frame)
        s.frame_steps.append(self.step_no)

    def take_frame(self, s, timeout_s):
        """Reads one frame of session s and records it; returns it (or ('eof',))."""
        try:
            raw = s.conn.read_frame(timeout_s)
        except Closed:
            f = ("eof",)
            self.record(s, f)
            return f
        r = Reader(raw)
        xid, zxid, err = r.int(), r.long(), r.int()
        if xid == XID_NOTIFICATION:
            ev = decode_event(r)
            f = ("event", self.z(zxid), ev["type"], ev["state"], ev["path"], r.rest().hex())
            self.record(s, f)
            return f
        op = None
        if s.pending and s.pending[0][0] == xid:
            op = s.pending.pop(0)[1]
        else:
            for i, (px, pop) in enumerate(s.pending):
                if px == xid:
                    op = pop
                    del s.pending[i]
                    break
        if zxid > 0:
            s.last_zxid = max(s.last_zxid, zxid)
        body = {}
        if err == 0 and op is not None:
            try:
                body = self.body(decode_body(op, r))
            except zkwire.Truncated as e:
                body = {"truncated": str(e)}
        f = ("reply", OP_NAMES.get(op, "unexpected-xid"), xid, self.z(zxid), err, body,
             r.rest().hex())
        self.record(s, f)
        return f

    def drain_until_replied(self, s):
        deadline = time.monotonic() + STEP_REPLY_TIMEOUT_S
        while s.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no reply to xid {s.pending[0][0]} "
                                   f"({OP_NAMES.get(s.pending[0][1])}) in {STEP_REPLY_TIMEOUT_S}s")
            f = self.take_frame(s, left)
            if f[0] == "eof":
                s.pending.clear()
                return
        s.settled = len(s.frames)

    def wait_eof(self, s):
        deadline = time.monotonic() + STEP_REPLY_TIMEOUT_S
        while time.monotonic() < deadline:
            f = self.take_frame(s, deadline - time.monotonic())
            if f[0] == "eof":
                s.settled = len(s.frames)
                return
        raise TimeoutError(f"{self.name}: server did not close slot {s.slot}'s connection")

    def poll_others(self, slot):
        conns = [s for s in self.sess if s.slot != slot and s.conn is not None and not s.conn.eof]
        ready, _, _ = select.select([s.conn for s in conns], [], [], 0)
        for s in conns:
            if s.conn in ready or s.conn.has_frame():
                s.conn.poll()
                while s.conn.has_frame():
                    self.take_frame(s, 1.0)
                if s.conn.eof:
                    self.record(s, ("eof",))
                    s.settled = len(s.frames)

    # Connections ---------------------------------------------------------------------------------
    def connect(self, s, timeout_ms, session_id=0, passwd=b"\0" * 16, name=None):
        if s.conn is not None:
            s.conn.close()
        s.conn = Conn(self.port)
        s.xid = 0
        s.pending = []
        resp = handshake(s.conn, s.last_zxid if session_id else 0, timeout_ms, session_id, passwd)
        if name is not None and resp["sessionId"] != 0:
            self.names[resp["sessionId"]] = name
        if resp["sessionId"] != 0:
            s.session_id, s.passwd = resp["sessionId"], resp["passwd"]
        f = ("connect", resp["protocolVersion"], resp["timeOut"], self.owner(resp["sessionId"]),
             len(resp["passwd"] or b""), resp["readOnly"], resp["extra"], resp["frameLength"])
        self.record(s, f)
        s.settled = len(s.frames)
        return resp

    def new_session(self, s, timeout_ms):
        s.gen += 1
        s.last_zxid = 0
        self.connect(s, timeout_ms, name=f"s{s.slot}.{s.gen}")

    def reconnect(self, s):
        self.connect(s, SESSION_TIMEOUT_MS, s.session_id, s.passwd)

    # Steps ---------------------------------------------------------------------------------------
    def run_step(self, slot, actions):
        s = self.sess[slot]
        if s.conn.eof:
            self.reconnect(s)
        if actions[0][0] == "req":
            # All requests of the step in one write: truly pipelined.
            out = []
            for a in actions:
                op, body = a[1], a[2]
                xid = XID_PING if op == PING else s.next_xid()
                s.pending.append((xid, op))
                payload = struct.pack(">ii", xid, op) + body
                out.append(struct.pack(">i", len(payload)) + payload)
            s.conn.sock.sendall(b"".join(out))
            self.drain_until_replied(s)
            if s.conn.eof:
                self.reconnect(s)
        else:
            self.special(s, actions[0])
        self.poll_others(slot)

    def ping_through(self, s):
        s.pending.append((XID_PING, PING))
        s.conn.send_request(XID_PING, PING)
        self.drain_until_replied(s)

    def special(self, s, a):
        kind = a[0]
        if kind == "close":
            xid = s.next_xid()
            s.pending.append((xid, CLOSE_SESSION))
            s.conn.send_request(xid, CLOSE_SESSION)
            self.drain_until_replied(s)
            if not s.conn.eof:
                self.wait_eof(s)
            self.new_session(s, a[1])
        elif kind == "reconnect":
            # Drop the connection without closing the session, then resume it, optionally
            # re-registering watches as a client does after a reconnect. A ping first, so that
            # every notification already sent on the old connection is read and recorded.
            self.ping_through(s)
            s.conn.close()
            self.reconnect(s)
            mode, w = a[1], a[2]
            if mode != "none":
                rel = s.last_zxid
                if mode == "setWatches":
                    body = set_watches_body(rel, w["data"], w["exist"], w["child"])
                    op = SET_WATCHES
                else:
                    body = set_watches_body(rel, w["data"], w["exist"], w["child"],
                                            w["persistent"], w["recursive"])
                    op = SET_WATCHES2
                s.pending.append((XID_SET_WATCHES, op))
                s.conn.send_request(XID_SET_WATCHES, op, body)
                self.drain_until_replied(s)
        elif kind == "auth":
            s.pending.append((XID_AUTH, AUTH))
            s.conn.send_request(XID_AUTH, AUTH, auth_body(a[1], a[2].encode()))
            self.drain_until_replied(s)
            last = s.frames[-1]
            if last[0] == "reply" and last[4] != 0 and not s.conn.eof:
                self.wait_eof(s)
            if s.conn.eof:
                self.reconnect(s)
        elif kind == "badop":
            xid = s.next_xid()
            s.pending.append((xid, 999))
            s.conn.send_request(xid, 999, b"")
            self.drain_until_replied(s)
            if not s.conn.eof:
                self.wait_eof(s)
            self.reconnect(s)
        elif kind == "wrongpw":
            self.ping_through(s)
            s.conn.close()
            wrong = bytes((b ^ 0x5A) for b in s.passwd)
            resp = self.connect(s, SESSION_TIMEOUT_MS, s.session_id, wrong)
            if resp["sessionId"] == 0 and not s.conn.eof:
                self.wait_eof(s)
            self.reconnect(s)
        else:
            raise ValueError(kind)


def fmt_frame(f):
    return repr(f)


class Run:
    def __init__(self, seed, zk_port, corral_port, disabled, log):
        self.seed = seed
        self.gen = Generator(seed, disabled)
        self.zk = Side("zookeeper", zk_port)
        self.co = Side("corral", corral_port)
        self.history = []  # (step number, slot, description)
        self.log = log
        self.idle = [0] * SLOTS
        self.only = None  # a set of step numbers to run (the others are generated, not sent)

    def both(self, fn):
        fn(self.zk)
        fn(self.co)

    def compare(self, step_no, final=False):
        for slot in range(SLOTS):
            a, b = self.zk.sess[slot], self.co.sess[slot]
            end = max(a.settled, b.settled) if final else min(a.settled, b.settled)
            if final:
                end = max(len(a.frames), len(b.frames))
            for i in range(a.compared, end):
                fa = a.frames[i] if i < len(a.frames) else ("nothing",)
                fb = b.frames[i] if i < len(b.frames) else ("nothing",)
                if fa != fb:
                    self.report(step_no, slot, i, fa, fb)
                    raise Divergence()
            a.compared = b.compared = max(a.compared, end)

    def report(self, step_no, slot, i, fa, fb):
        out = []
        out.append(f"DIVERGENCE (seed {self.seed}) at step {step_no}, session slot {slot}, "
                   f"frame #{i} of that slot")
        out.append(f"  zookeeper: {fmt_frame(fa)}")
        out.append(f"  corral:    {fmt_frame(fb)}")
        if isinstance(fa, tuple) and isinstance(fb, tuple) and len(fa) == len(fb):
            for k, (x, y) in enumerate(zip(fa, fb)):
                if x != y:
                    if isinstance(x, dict) and isinstance(y, dict):
                        for key in sorted(set(x) | set(y), key=str):
                            if x.get(key) != y.get(key):
                                out.append(f"    field {key}: zookeeper={x.get(key)!r} corral={y.get(key)!r}")
                    else:
                        out.append(f"    element {k}: zookeeper={x!r} corral={y!r}")
        out.append(f"  recent steps of slot {slot} (step: request):")
        mine = [h for h in self.history if h[1] == slot][-12:]
        for h in mine:
            out.append(f"    {h[0]:5d}: {h[2]}")
        out.append(f"  frames of slot {slot} around it (zookeeper | corral):")
        a, b = self.zk.sess[slot].frames, self.co.sess[slot].frames
        for j in range(max(0, i - 8), min(max(len(a), len(b)), i + 4)):
            mark = ">>" if j == i else "  "
            out.append(f"   {mark} #{j}: {fmt_frame(a[j]) if j < len(a) else '-'}")
            out.append(f"   {mark}      {fmt_frame(b[j]) if j < len(b) else '-'}")
        out.append("  all steps (every slot) just before:")
        for h in self.history[-10:]:
            out.append(f"    {h[0]:5d} slot {h[1]}: {h[2]}")
        text = "\n".join(out)
        print(text)
        self.log.write(text + "\n")

    def dump_traces(self, run_dir):
        """Every frame of every session, with the step it was read in, one file per server."""
        for side in (self.zk, self.co):
            with open(os.path.join(run_dir, f"frames-{side.name}.txt"), "w") as f:
                for s in side.sess:
                    f.write(f"== slot {s.slot}\n")
                    for i, (fr, st) in enumerate(zip(s.frames, s.frame_steps)):
                        f.write(f"#{i} step {st}: {fmt_frame(fr)}\n")

    def setup(self):
        for slot in range(SLOTS):
            self.both(lambda side: side.new_session(side.sess[slot], SESSION_TIMEOUT_MS))
        # The first reply fixes the zxid offset between the servers.
        self.both(lambda side: side.run_step(0, [("req", PING, b"", "ping")]))
        za = self.zk.sess[0].frames[-1][3]
        zb = self.co.sess[0].frames[-1][3]
        self.co.zxid_offset = za - zb
        self.zk.zxid_offset = 0
        # Renormalise corral's frames recorded so far (only connects and this ping have zxids).
        fb = self.co.sess[0].frames
        fb[-1] = fb[-1][:3] + (za,) + fb[-1][4:]
        self.log.write(f"first zxid: zookeeper 0x{za:x}, corral 0x{zb:x} (offset {za - zb})\n")
        for path in ("/d", "/locked"):
            body = create_body(path, b"root", OPEN, 0)
            self.both(lambda side: side.run_step(0, [("req", CREATE, body, f"create {path}")]))
        self.compare(0)
        return za - zb

    def step(self, n, slot, actions, compare=True):
        desc = " || ".join(describe(a) for a in actions)
        self.history.append((n, slot, desc))
        self.zk.step_no = self.co.step_no = n
        self.log.write(f"{n} slot {slot}: {desc}\n")
        self.both(lambda side: side.run_step(slot, actions))
        # Learn sequential names (from ZooKeeper's replies) for later steps.
        for f in self.zk.sess[slot].frames[-len(actions) - 2:]:
            if f[0] != "reply" or f[4] != 0:
                continue
            paths = [f[5].get("path")] + [r[2] for r in f[5].get("results", [])
                                          if r[0] in ("create", "create2")]
            for p in paths:
                if p and p.startswith("/") and f[1] != "sync":
                    self.gen.created.append(p)
                    if p[-10:].isdigit():
                        self.gen.seq_paths.append(p)
        if compare:
            self.compare(n)

    def close_step(self, n, slot, actions):
        """A closeSession, between two barriers (a ping on every session). The close deletes
        the session's ephemerals in one txn, in an order ZooKeeper leaves unspecified (Java
        HashSet order), so the notifications it causes are compared as a multiset: within the
        window between the barriers, each run of consecutive notifications is sorted."""
        for sl in range(SLOTS):
            self.step(n, sl, [("req", PING, b"", "ping (barrier before a close)")])
        start = {side.name: [len(s.frames) for s in side.sess] for side in (self.zk, self.co)}
        self.step(n, slot, actions, compare=False)
        for sl in range(SLOTS):
            self.step(n, sl, [("req", PING, b"", "ping (barrier after a close)")], compare=False)
        for side in (self.zk, self.co):
            for s in side.sess:
                f = s.frames
                i = start[side.name][s.slot]
                while i < len(f):
                    if f[i][0] != "event":
                        i += 1
                        continue
                    j = i
                    while j < len(f) and f[j][0] == "event":
                        j += 1
                    f[i:j] = sorted(f[i:j], key=repr)
                    i = j
        self.compare(n)

    def execute(self, steps):
        offset = self.setup()
        t0 = time.monotonic()
        for n in range(1, steps + 1):
            if time.monotonic() - t0 > RUN_LIMIT_S:
                raise TimeoutError(f"the run passed its limit of {RUN_LIMIT_S}s at step {n}")
            for slot in range(SLOTS):
                self.idle[slot] += 1
            # Keep idle sessions alive: a ping, deterministic by step count.
            for slot in range(SLOTS):
                if self.idle[slot] >= PING_IDLE_STEPS:
                    self.idle[slot] = 0
                    self.step(n, slot, [("req", PING, b"", "ping")])
            slot, actions = self.gen.step()
            if self.only is not None and n not in self.only:
                continue
            self.idle[slot] = 0
            if actions[0][0] == "close":
                self.close_step(n, slot, actions)
            else:
                self.step(n, slot, actions)
        # Final barrier: a ping on every session settles every notification sent before it.
        for slot in range(SLOTS):
            self.step(steps + 1, slot, [("req", PING, b"", "ping (final barrier)")])
        time.sleep(0.3)
        for side in (self.zk, self.co):
            side.poll_others(-1)
        self.compare(steps + 1, final=True)
        return offset

    def counts(self):
        frames = sum(len(s.frames) for s in self.zk.sess)
        events = sum(1 for s in self.zk.sess for f in s.frames if f[0] == "event")
        errors = sum(1 for s in self.zk.sess for f in s.frames if f[0] == "reply" and f[4] != 0)
        return frames, events, errors


def probe_frames(zk_port, co_port, steps, tag):
    """Runs one probe's steps in two fresh sessions on each server; returns both servers'
    frames, each labelled with its session."""
    sides = [Side("zookeeper", zk_port), Side("corral", co_port)]
    for side in sides:
        for slot in (0, 1):
            side.connect(side.sess[slot], SESSION_TIMEOUT_MS, name=f"{tag}.{slot}")
        # Session 0 is the superuser, so that whatever ACL the random run left on "/", the
        # probe can create its nodes; session 1 has no credentials.
        side.run_step(0, [("auth", "digest", "super:test")])
        side.run_step(0, [("req", PING, b"", "ping")])
    base = sides[0].sess[0].frames[-1][3]
    sides[0].zxid_offset = 0
    sides[1].zxid_offset = base - sides[1].sess[0].frames[-1][3]
    f = sides[1].sess[0].frames
    f[-1] = f[-1][:3] + (base,) + f[-1][4:]
    for slot, actions in steps:
        for side in sides:
            side.run_step(slot, actions)
    out = []
    for side in sides:
        for slot in (0, 1):
            side.run_step(slot, [("req", PING, b"", "ping")])
        frames = [(slot,) + f for slot in (0, 1) for f in side.sess[slot].frames]
        # Close the sessions (not just the sockets): a session left to expire would change
        # the servers' zxids at a time of its own during the random run.
        for slot in (0, 1):
            s = side.sess[slot]
            if s.conn.eof:
                side.reconnect(s)
            s.pending.append((s.next_xid(), CLOSE_SESSION))
            s.conn.send_request(s.pending[-1][0], CLOSE_SESSION)
            side.drain_until_replied(s)
            s.conn.close()
        out.append(frames)
    return out[0], out[1]


def print_probe(name, fz, fc):
    """The probe's steps, then both servers' frames as a diff ('-' ZooKeeper only, '+' corral
    only)."""
    import difflib
    print(f"probe {name}:")
    for sl, st in PROBES[name]:
        for a in st:
            print(f"    session {sl}: {describe(a)}")
    za = [fmt_frame(f) for f in fz]
    cb = [fmt_frame(f) for f in fc]
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=za, b=cb, autojunk=False).get_opcodes():
        if op == "equal":
            for line in za[i1:i2]:
                print(f"      {line}")
        else:
            for line in za[i1:i2]:
                print(f"    - {line}   (zookeeper only)")
            for line in cb[j1:j2]:
                print(f"    + {line}   (corral only)")


def check_probes(zk_port, co_port, allow):
    """Every allowlisted difference must still show in its probe."""
    ok = True
    for n, name in enumerate(sorted(allow)):
        if name not in PROBES:
            print(f"differential: allowlist entry {name!r} has no probe in probes.py")
            ok = False
            continue
        fz, fc = probe_frames(zk_port, co_port, PROBES[name], f"probe{n}")
        if fz == fc and "[zookeeper 3.8.0 race]" in allow[name]:
            print(f"differential: known difference {name!r} (a ZooKeeper race) did not show "
                  f"this time (allowlisted)")
        elif fz == fc:
            print_probe(name, fz, fc)
            print(f"differential: known difference {name!r} no longer reproduces: both servers "
                  f"answer its probe alike; remove it from known-differences.txt")
            ok = False
        else:
            print(f"differential: known difference {name!r} still reproduces (allowlisted)")
    return ok


def dump_tree(port, path_out):
    """Walks the whole tree as the superuser and writes path, Stat (times masked) and data."""
    side = Side("dump", port)
    s = side.sess[0]
    side.connect(s, SESSION_TIMEOUT_MS, name="dump")
    side.run_step(0, [("auth", "digest", "super:test")])
    side.zxid_offset = 0
    lines = []

    def call(op, body):
        side.run_step(0, [("req", op, body, "")])
        return s.frames[-1]

    def walk(p, depth):
        f = call(GET_CHILDREN2, path_watch_body(p, False))
        g = call(GET_DATA, path_watch_body(p, False))
        acl = call(GET_ACL, path_body(p))
        lines.append(f"{p} {g[5].get('stat')} data={g[5].get('data')} acl={acl[5].get('acl')}")
        if f[4] == 0 and depth < 30:
            for ch in f[5]["children"]:
                walk(p.rstrip("/") + "/" + ch, depth + 1)

    walk("/", 0)
    s.conn.close()
    with open(path_out, "w") as out:
        out.write("\n".join(lines) + "\n")


def read_allowlist(path):
    entries = {}
    if not path or not os.path.exists(path):
        return entries
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, _, reason = line.partition(":")
            entries[name.strip()] = reason.strip()
    return entries


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--run-dir", default=None)
    ap.add_argument("--corral", default=None)
    ap.add_argument("--only", default=None,
                    help="run only these steps, e.g. 7,9,50-60 (to shrink a failure by hand)")
    ap.add_argument("--probe", default=None, help="print a probe's frames (a name, or 'all')")
    ap.add_argument("--allowlist", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                        "known-differences.txt"))
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    here = os.path.dirname(os.path.abspath(__file__))
    run_dir = args.run_dir or os.path.join(here, "..", "..", "target", "clients-run", "differential")
    os.makedirs(run_dir, exist_ok=True)
    corral = args.corral or servers.corral_binary()
    allow = read_allowlist(args.allowlist)
    if args.probe:
        names = sorted(PROBES) if args.probe == "all" else [args.probe]
        with servers.Server("zookeeper", run_dir) as zk, \
                servers.Server("corral", run_dir, corral_bin=corral) as co:
            for n, name in enumerate(names):
                print_probe(name, *probe_frames(zk.port, co.port, PROBES[name], f"probe{n}"))
        return
    print(f"differential: seed {seed}, {args.steps} steps, {SLOTS} sessions"
          + (f"; allowlisted (generator features off): {', '.join(sorted(allow))}" if allow else ""))
    t0 = time.monotonic()
    log = open(os.path.join(run_dir, "steps.log"), "w")
    zk = co = None
    ok = False
    try:
        zk = servers.Server("zookeeper", run_dir)
        co = servers.Server("corral", run_dir, corral_bin=corral)
        run = Run(seed, zk.port, co.port, allow, log)
        if args.only:
            run.only = set()
            for part in args.only.split(","):
                lo, _, hi = part.partition("-")
                run.only.update(range(int(lo), int(hi or lo) + 1))
        try:
            offset = run.execute(args.steps)
            frames, events, errors = run.counts()
            print(f"differential: OK — {args.steps} steps, {frames} frames per server "
                  f"({events} notifications, {errors} error replies) identical; "
                  f"zxid offset {offset}; {time.monotonic() - t0:.1f}s")
            # The probes of the allowlisted differences, after the random run: they leave
            # different states behind on the two servers.
            ok = check_probes(zk.port, co.port, allow)
        except Divergence:
            run.dump_traces(run_dir)
            for srv in (zk, co):
                dump_tree(srv.port, os.path.join(run_dir, f"tree-{srv.kind}.txt"))
            print(f"differential: FAILED (seed {seed}); replay with: "
                  f"ci/clients/differential.py --seed {seed} --steps {args.steps}")
        except (TimeoutError, zkwire.Closed, OSError, ValueError) as e:
            traceback.print_exc()
            print(f"differential: FAILED (seed {seed}) at step {len(run.history)}: {e!r}")
            for h in run.history[-8:]:
                print(f"    {h[0]:5d} slot {h[1]}: {h[2]}")
    finally:
        for s in (co, zk):
            if s is not None:
                s.stop()
        log.close()
    print(f"differential: logs in {run_dir} (steps.log, frames-*.txt and tree-*.txt on failure, "
          f"zookeeper/server.log, corral/server.log)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
