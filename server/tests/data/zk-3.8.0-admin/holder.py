# usage: holder.py HOST:PORT TAG
# Opens one kazoo session, creates /admin-fixture tree (persistent), an ephemeral node,
# and leaves a data watch, a child watch and an exists-watch on a missing node; then
# sleeps until killed. Prints the session id.
import sys, time, logging
from kazoo.client import KazooClient
logging.basicConfig(level=logging.WARNING)
hosts, tag = sys.argv[1], sys.argv[2]
zk = KazooClient(hosts=hosts, timeout=30.0)
zk.start()
zk.ensure_path("/admin-fixture/app")
if not zk.exists("/admin-fixture/data"):
    zk.create("/admin-fixture/data", b"hello")
zk.create("/admin-fixture/app/eph-" + tag, b"e", ephemeral=True)
noop = lambda ev: None
zk.get("/admin-fixture/data", watch=noop)          # data watch
zk.get_children("/admin-fixture/app", watch=noop)  # child watch
zk.exists("/admin-fixture/missing-" + tag, watch=noop)  # exists watch on a missing node
sid = zk.client_id[0]
print("session 0x%x (%d) on %s" % (sid, sid, hosts), flush=True)
while True:
    time.sleep(3600)
