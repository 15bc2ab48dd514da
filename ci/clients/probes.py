"""Fixed request sequences that show one known difference each (see known-differences.txt).

Each probe is a list of steps for one fresh session, in the differential test's step format. The
differential test runs the probe of every allowlisted difference against both servers after its
random run and requires the two servers' frames to still differ; `differential.py --probe NAME`
prints a probe's frames side by side.
"""

import base64
import hashlib

from zkwire import (ADD_WATCH, CHECK_WATCHES, CREATE, CREATE2, CREATE_CONTAINER, CREATE_TTL,
                    EXISTS, GET_ALL_CHILDREN_NUMBER, GET_CHILDREN, GET_DATA, MULTI, MULTI_READ,
                    REMOVE_WATCHES, SET_ACL, SET_DATA, create_body, multi_body, path_body,
                    path_int_body, path_watch_body, set_acl_body, set_data_body)

OPEN = [(31, "world", "anyone")]
# digest id of user1:pw1
DIGEST_USER1 = "user1:" + base64.b64encode(hashlib.sha1(b"user1:pw1").digest()).decode()


def req(op, body, desc, slot=0):
    return (slot, [("req", op, body, desc)])


PROBES = {
    "multi-with-read-op": [
        req(CREATE, create_body("/probe-mr", b"x", OPEN, 0), "create /probe-mr"),
        req(MULTI, multi_body([(GET_DATA, path_watch_body("/probe-mr", False))]),
            "multi [getData /probe-mr]"),
    ],
    "multi-create-opcode-by-flags": [
        req(CREATE, create_body("/probe-mc", b"", OPEN, 0), "create /probe-mc"),
        req(MULTI, multi_body([(CREATE2, create_body("/probe-mc/a", b"x", OPEN, 0))]),
            "multi [create2 /probe-mc/a flags=0]"),
        req(MULTI, multi_body([(CREATE, create_body("/probe-mc/b", b"x", OPEN, 4))]),
            "multi [create /probe-mc/b flags=4 (container)]"),
        req(MULTI, multi_body([(CREATE_CONTAINER, create_body("/probe-mc/c", b"x", OPEN, 0))]),
            "multi [createContainer /probe-mc/c flags=0]"),
        req(MULTI, multi_body([(CREATE_TTL, create_body("/probe-mc/d", b"x", OPEN, 0, 1000))]),
            "multi [createTTL /probe-mc/d flags=0 ttl=1000]"),
        req(MULTI, multi_body([(CREATE, create_body("/probe-mc/e", b"x", OPEN, 6))]),
            "multi [create /probe-mc/e flags=6 (persistent sequential with TTL)]"),
    ],
    "watch-event-needs-read-acl": [
        req(EXISTS, path_watch_body("/probe-ra", True), "exists /probe-ra watch=true", slot=1),
        req(CREATE, create_body("/probe-ra", b"x", [(31, "digest", DIGEST_USER1)], 0),
            "create /probe-ra acl=[digest user1 ALL] (session 1 may not read it)"),
        req(CREATE, create_body("/probe-rb", b"x", OPEN, 0), "create /probe-rb (open)"),
        req(GET_DATA, path_watch_body("/probe-rb", True), "getData /probe-rb watch=true", slot=1),
        req(SET_ACL, set_acl_body("/probe-rb", [(2, "world", "anyone")], -1),
            "setACL /probe-rb [world:anyone WRITE]"),
        req(SET_DATA, set_data_body("/probe-rb", b"y", -1), "setData /probe-rb"),
    ],
    # Not with a valid ACL and parent: ZooKeeper 3.8.0 would log the create and then stop,
    # unable to apply it (IllegalArgumentException "ttl must be positive" in SyncThread).
    "createTTL-non-ttl-flags": [
        req(CREATE_TTL, create_body("/probe-tn", b"x", [], 0, -5),
            "createTTL /probe-tn flags=0 ttl=-5 acl=[] (empty)"),
        req(CREATE_TTL, create_body("/probe-missing/tn", b"x", OPEN, 0, -5),
            "createTTL /probe-missing/tn flags=0 ttl=-5 (no parent)"),
    ],
    "multiRead-watch-flag": [
        req(CREATE, create_body("/probe-mw", b"x", OPEN, 0), "create /probe-mw"),
        req(MULTI_READ, multi_body([(GET_DATA, path_watch_body("/probe-mw", True)),
                                    (GET_CHILDREN, path_watch_body("/probe-mw", True))]),
            "multiRead [getData /probe-mw watch=true; getChildren /probe-mw watch=true]"),
        req(SET_DATA, set_data_body("/probe-mw", b"y", -1), "setData /probe-mw"),
        req(CREATE, create_body("/probe-mw/c", b"x", OPEN, 0), "create /probe-mw/c"),
    ],
    "getAllChildrenNumber-empty-path": [
        req(GET_ALL_CHILDREN_NUMBER, path_body("/"), "getAllChildrenNumber '/'"),
        req(GET_ALL_CHILDREN_NUMBER, path_body(""), "getAllChildrenNumber ''"),
    ],
    # Pipelined: the second setACL is prepared while the first is still outstanding.
    "pipelined-write-after-setACL": [
        req(CREATE, create_body("/probe-pa", b"x", OPEN, 0), "create /probe-pa", slot=1),
        (1, [("req", SET_ACL, set_acl_body("/probe-pa", [(1, "world", "anyone")], -1),
              "setACL /probe-pa [world:anyone READ] v=-1"),
             ("req", SET_ACL, set_acl_body("/probe-pa", OPEN, 0),
              "setACL /probe-pa open v=0 (pipelined; no ADMIN any more, wrong version)"),
             ("req", SET_DATA, set_data_body("/probe-pa", b"y", -1),
              "setData /probe-pa (pipelined; no WRITE any more)")]),
    ],
    "exists-invalid-path": [
        req(EXISTS, path_watch_body("d", False), "exists 'd'"),
        req(EXISTS, path_watch_body("", False), "exists ''"),
    ],
    "checkWatches-invalid-path": [
        req(CHECK_WATCHES, path_int_body("d", 3), "checkWatches 'd' type=3"),
    ],
    "watch-type-with-persistent": [
        req(CREATE, create_body("/probe-wp", b"x", OPEN, 0), "create /probe-wp"),
        req(ADD_WATCH, path_int_body("/probe-wp", 0), "addWatch /probe-wp mode=0 (persistent)"),
        req(CHECK_WATCHES, path_int_body("/probe-wp", 2), "checkWatches /probe-wp type=2 (data)"),
        req(REMOVE_WATCHES, path_int_body("/probe-wp", 1), "removeWatches /probe-wp type=1 (children)"),
        req(ADD_WATCH, path_int_body("/probe-wp", 1), "addWatch /probe-wp mode=1 (recursive)"),
        req(REMOVE_WATCHES, path_int_body("/probe-wp", 2), "removeWatches /probe-wp type=2 (data)"),
    ],
    "checkWatches-any-session": [
        req(CREATE, create_body("/probe-cw", b"x", OPEN, 0), "create /probe-cw"),
        req(GET_DATA, path_watch_body("/probe-cw", True), "getData /probe-cw watch=true"),
        req(CHECK_WATCHES, path_int_body("/probe-cw", 2),
            "checkWatches /probe-cw type=2 (from another session, without watches)", slot=1),
    ],
    "one-watch-mode-per-path": [
        req(CREATE, create_body("/probe-sp", b"x", OPEN, 0), "create /probe-sp"),
        req(ADD_WATCH, path_int_body("/probe-sp", 0), "addWatch /probe-sp mode=0 (persistent)"),
        req(GET_DATA, path_watch_body("/probe-sp", True), "getData /probe-sp watch=true"),
        req(SET_DATA, set_data_body("/probe-sp", b"1", -1), "setData /probe-sp (fires both)"),
        req(SET_DATA, set_data_body("/probe-sp", b"2", -1), "setData /probe-sp (persistent only)"),
        req(ADD_WATCH, path_int_body("/probe-sp", 1), "addWatch /probe-sp mode=1 (recursive)", slot=1),
        req(ADD_WATCH, path_int_body("/probe-sp", 0), "addWatch /probe-sp mode=0 (persistent)", slot=1),
        req(CREATE, create_body("/probe-sp/c", b"", OPEN, 0), "create /probe-sp/c"),
    ],
    "addWatch-invalid-path": [
        req(ADD_WATCH, path_int_body("", 1), "addWatch '' mode=1"),
        req(ADD_WATCH, path_int_body("/probe-aw/", 0), "addWatch '/probe-aw/' mode=0"),
    ],
    "exists-needs-read-acl": [
        req(CREATE, create_body("/probe-er", b"x", [(31, "digest", DIGEST_USER1)], 0),
            "create /probe-er acl=[digest user1 ALL]"),
        req(EXISTS, path_watch_body("/probe-er", False), "exists /probe-er (no READ)", slot=1),
        req(EXISTS, path_watch_body("/probe-er-missing", False), "exists /probe-er-missing",
            slot=1),
    ],
    "digest-auth-without-colon": [
        (0, [("auth", "digest", "nocolon")]),
    ],
}
