"""pytest plugin: run kazoo's own test suite against corral instead of Java ZooKeeper.

kazoo's harness (kazoo.testing.common.ManagedZooKeeper.run) writes a zoo.cfg and then starts
    java -cp ... [-Dname=value ...] org.apache.zookeeper.server.quorum.QuorumPeerMain zoo.cfg
through subprocess.Popen. This plugin gives kazoo.testing.common a Popen that turns that command
into
    corral --system-property name=value ... zoo.cfg
for the very same config file, so that everything else in the harness (ports, data dirs,
restarts, session expiry tricks) is kazoo's own. Java system properties the harness passes, such
as the superDigest, become corral config keys (`zookeeper.K` -> `K`, as ZooKeeper itself maps
zoo.cfg keys to system properties).

Use: CORRAL_BIN=/path/to/corral pytest -p corral_kazoo --pyargs kazoo.tests
(with this directory on PYTHONPATH). Without CORRAL_BIN the plugin does nothing, so the same
command runs the suite against Apache ZooKeeper for comparison. With CORRAL_MYIDS (a comma-
separated list of server ids, e.g. "1") only those servers of kazoo's ensemble run corral and
the others Apache ZooKeeper itself: a mixed ensemble.
"""

import os
import subprocess
import types

_MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"


def _corral_argv(args, corral):
    props = [a[2:] for a in args if isinstance(a, str) and a.startswith("-D")]
    argv = [corral]
    for p in props:
        argv += ["--system-property", p]
    argv.append(args[-1])
    return argv


def _myid(cfg_path):
    """The myid of the server a zoo.cfg belongs to (kazoo writes it in the dataDir)."""
    with open(cfg_path) as f:
        for line in f:
            if line.startswith("dataDir="):
                with open(os.path.join(line.split("=", 1)[1].strip(), "myid")) as m:
                    return m.read().strip()
    return None


def pytest_configure(config):
    # The harness needs a version to pick its 3.5+ settings, and a cluster size: standalone.
    os.environ.setdefault("ZOOKEEPER_VERSION", "3.8.0")
    os.environ.setdefault("ZOOKEEPER_CLUSTER_SIZE", "1")
    os.environ.setdefault("ZOOKEEPER_CLASSPATH", "/usr/share/java/zookeeper.jar")
    corral = os.environ.get("CORRAL_BIN")
    if not corral:
        return
    import kazoo.testing.common as common

    real_popen = subprocess.Popen
    only = os.environ.get("CORRAL_MYIDS")
    only = None if only is None else {x.strip() for x in only.split(",") if x.strip()}

    def popen(args=None, *a, **kw):
        if (
            isinstance(args, (list, tuple))
            and args
            and args[0] == "java"
            and _MAIN in args
            and (only is None or _myid(args[-1]) in only)
        ):
            argv = _corral_argv(list(args), corral)
            workdir = os.path.dirname(args[-1])
            # CORRAL_LOG_DIR keeps every server's log after kazoo removes its directories.
            logdir = os.environ.get("CORRAL_LOG_DIR") or workdir
            name = "corral.log" if logdir == workdir else "corral-%s.log" % _myid(args[-1])
            log = open(os.path.join(logdir, name), "ab")
            log.write(b"==== started: %s\n" % " ".join(argv).encode())
            log.flush()
            env = dict(os.environ)
            env.setdefault("RUST_LOG", "info")
            return real_popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        return real_popen(args, *a, **kw)

    # Each test's start is marked in every corral log kept in CORRAL_LOG_DIR, so that a failure
    # can be matched with what the servers said meanwhile (ci/kazoo/check_junit.py prints it).
    global _LOG_DIR
    _LOG_DIR = os.environ.get("CORRAL_LOG_DIR")

    shim = types.SimpleNamespace(**{k: getattr(subprocess, k) for k in dir(subprocess) if not k.startswith("__")})
    shim.Popen = popen
    common.subprocess = shim


_LOG_DIR = None


def pytest_runtest_setup(item):
    if not _LOG_DIR or not os.path.isdir(_LOG_DIR):
        return
    cls = getattr(item, "cls", None)
    name = "%s::%s" % (cls.__name__ if cls else item.module.__name__, item.name)
    for entry in sorted(os.listdir(_LOG_DIR)):
        if entry.startswith("corral") and entry.endswith(".log"):
            with open(os.path.join(_LOG_DIR, entry), "ab") as log:
                log.write(b"==== test: %s\n" % name.encode())
