"""Starting and stopping the two servers under test: Apache ZooKeeper 3.8 and corral.

Both get the same zoo.cfg (apart from dataDir and clientPort), a fresh data directory, a free
loopback port, and a log file under the run directory. Each is stopped by its own PID.
"""

import os
import random
import signal
import socket
import subprocess
import time

ZK_CLASSPATH = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar"
ZK_MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
# Password "test", as kazoo's harness uses.
SUPER_DIGEST = "super:D/InIHSb7yEEbrWz8b9l71RjZJU="

REAPER_INTERVAL_MS = 3_600_000

_taken = set()


def free_port():
    """A loopback port nobody listens on now (probed by binding it), not handed out before."""
    rng = random.Random(os.getpid() ^ int(time.time() * 1000))
    for _ in range(200):
        port = rng.randrange(20000, 40000)
        if port in _taken:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _taken.add(port)
        return port
    raise RuntimeError("no free loopback port found in 200 tries")


def write_config(path, data_dir, port, extra=()):
    lines = [
        "tickTime=2000",
        f"dataDir={data_dir}",
        f"clientPort={port}",
        "clientPortAddress=127.0.0.1",
        "maxClientCnxns=0",
        "4lw.commands.whitelist=*",
        "extendedTypesEnabled=true",
        "admin.enableServer=false",
        "forceSync=no",
        f"DigestAuthenticationProvider.superDigest={SUPER_DIGEST}",
    ]
    lines += list(extra)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


class Server:
    def __init__(self, kind, root, corral_bin=None, extra_config=(), props=(), classpath=None):
        self.kind = kind
        self.dir = os.path.join(root, kind)
        os.makedirs(self.dir, exist_ok=True)
        data = os.path.join(self.dir, "data")
        if os.path.exists(data):
            subprocess.run(["rm", "-rf", data], check=True)
        os.makedirs(data)
        self.port = free_port()
        self.cfg = os.path.join(self.dir, "zoo.cfg")
        write_config(self.cfg, data, self.port, extra_config)
        self.log_path = os.path.join(self.dir, "server.log")
        log = open(self.log_path, "wb")
        # The container/TTL reaper runs on its own clock (every 60 s by default) in both
        # servers; an hour keeps it out of the tests' deterministic sequences. It is a bare
        # system property in ZooKeeper, not a zoo.cfg key.
        reaper = f"znode.container.checkIntervalMs={REAPER_INTERVAL_MS}"
        # props: more system properties (name=value), given to both kinds the same way.
        if kind == "zookeeper":
            argv = ["java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                    "-D" + reaper] + ["-D" + p for p in props] + [
                    "-cp", classpath or ZK_CLASSPATH, ZK_MAIN, self.cfg]
        else:
            argv = [corral_bin, "-D", reaper]
            for p in props:
                argv += ["-D", p]
            argv.append(self.cfg)
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir,
                                     env=env, start_new_session=True)
        log.close()
        self.wait_ready()

    def wait_ready(self, limit_s=30.0):
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode} at start; "
                                   f"see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    # srvr answers "not currently serving" until the server takes sessions.
                    s.sendall(b"srvr")
                    s.settimeout(2)
                    if s.recv(64).startswith(b"Zookeeper version:"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.kind} not serving on port {self.port} after {limit_s}s; "
                           f"see {self.log_path}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def corral_binary():
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.join(here, "..", "..", "target", "release", "corral")
    return os.path.abspath(os.environ.get("CORRAL_BIN", default))
