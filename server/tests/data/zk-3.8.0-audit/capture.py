#!/usr/bin/env python3
"""Drive a fixed sequence of client operations against a ZooKeeper server.

usage: capture.py HOST:PORT

Used (by capture.sh) to capture the audit-log lines Apache ZooKeeper 3.8.0
writes for these operations; see README.md.  Prints one line per step to
stdout ("step N: what -> outcome") so the audit lines can be matched to steps.

Client: kazoo 2.11.0.  kazoo has no container support, so step 5 sends a raw
createContainer request (opcode 19, CreateRequest with flags=4, answered by
a Create2Response) through kazoo's internal request queue -- the same wire
request the Java client sends for CreateMode.CONTAINER.
"""
import sys
import time

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError
from kazoo.protocol.serialization import Create2
from kazoo.security import OPEN_ACL_UNSAFE, make_digest_acl

TIMEOUT = 15  # seconds, for connecting and for every single request


class CreateContainer(Create2):
    """createContainer (OpCode 19); same body as create2, flags must be 4."""

    type = 19


def log(msg):
    print(msg, flush=True)


def create_container(client, path, data=b""):
    async_result = client.handler.async_result()
    client._call(CreateContainer(path, data, OPEN_ACL_UNSAFE, 4), async_result)
    new_path, _stat = async_result.get(timeout=TIMEOUT)
    return new_path


def main():
    hosts = sys.argv[1]

    a = KazooClient(hosts=hosts, timeout=TIMEOUT)
    a.start(timeout=TIMEOUT)
    log("session A: 0x%x" % a.client_id[0])

    # 1
    p = a.create("/audit", b"x", acl=OPEN_ACL_UNSAFE)
    log("step 1: create %s persistent data=b'x' open ACL -> ok" % p)
    # 2
    p = a.create("/audit/eph", ephemeral=True)
    log("step 2: create %s ephemeral -> ok" % p)
    # 3
    seq = a.create("/audit/seq-", sequence=True)
    log("step 3: create /audit/seq- persistent_sequential -> %s" % seq)
    # 4
    eseq = a.create("/audit/eseq-", ephemeral=True, sequence=True)
    log("step 4: create /audit/eseq- ephemeral_sequential -> %s" % eseq)
    # 5
    p = create_container(a, "/audit/cont")
    log("step 5: createContainer /audit/cont (raw opcode 19, flags=4) -> %s" % p)
    # 6
    try:
        a.create("/audit", b"x")
        log("step 6: create /audit again -> UNEXPECTED success")
    except NodeExistsError:
        log("step 6: create /audit again -> NodeExists")
    # 7
    a.set("/audit", b"y")
    log("step 7: setData /audit b'y' -> ok")
    # 8
    a.add_auth("digest", "bob:pw")
    log("step 8a: addAuth digest bob:pw -> ok")
    acl = make_digest_acl("bob", "pw", all=True)
    a.set_acls("/audit/cont", [acl])
    log("step 8b: setACL /audit/cont [%s:%s perms=%d] -> ok"
        % (acl.id.scheme, acl.id.id, acl.perms))
    # 9
    t = a.transaction()
    t.create("/audit/m1", b"m")
    t.set_data("/audit/m1", b"m2")
    t.delete("/audit/m1")
    res = t.commit()
    log("step 9: multi [create /audit/m1, setData /audit/m1, delete /audit/m1] -> %r"
        % (res,))
    # 10
    t = a.transaction()
    t.create("/audit/m2", b"m")
    t.delete("/nonexistent")
    res = t.commit()
    log("step 10: multi [create /audit/m2, delete /nonexistent] -> %s"
        % [type(r).__name__ if isinstance(r, Exception) else r for r in res])
    # 11
    a.delete(seq)
    log("step 11: delete %s -> ok" % seq)
    # 12
    b = KazooClient(hosts=hosts, timeout=TIMEOUT)
    b.start(timeout=TIMEOUT)
    log("session B: 0x%x" % b.client_id[0])
    p = b.create("/audit/b-eph", ephemeral=True)
    log("step 12: session B create %s ephemeral -> ok" % p)
    b.stop()
    b.close()
    log("step 12: session B closed (stop+close)")
    # 13
    a.stop()
    a.close()
    log("step 13: session A closed (stop+close)")
    time.sleep(2)
    log("done")


if __name__ == "__main__":
    main()
