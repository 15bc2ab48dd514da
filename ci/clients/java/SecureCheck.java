import java.util.Collections;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;
import org.apache.zookeeper.data.ACL;
import org.apache.zookeeper.data.ClientInfo;
import org.apache.zookeeper.data.Id;

/**
 * The official Java client over TLS or SASL (configured by system properties, as its users
 * configure it): connects, creates a node only the given identity may use, reads it back,
 * and prints who the server says it is. Prints no times or session ids, so transcripts against
 * ZooKeeper and corral can be compared line for line. Exit 0 when every step worked.
 *
 * Usage: SecureCheck host:port scheme id
 */
public final class SecureCheck {
    public static void main(String[] args) throws Exception {
        String hosts = args[0];
        String scheme = args[1];
        String id = args[2];
        CountDownLatch connected = new CountDownLatch(1);
        CountDownLatch authenticated = new CountDownLatch(1);
        ZooKeeper zk = new ZooKeeper(hosts, 10_000, e -> {
            if (e.getState() == Watcher.Event.KeeperState.SyncConnected) {
                connected.countDown();
            }
            if (e.getState() == Watcher.Event.KeeperState.SaslAuthenticated) {
                authenticated.countDown();
            }
            if (e.getState() == Watcher.Event.KeeperState.AuthFailed) {
                System.out.println("FAIL authentication failed");
            }
        });
        int code = 0;
        int wait = Integer.getInteger("securecheck.wait", 30);
        try {
            if (!connected.await(wait, TimeUnit.SECONDS)) {
                System.out.println("FAIL no connection in " + wait + " s");
                System.exit(2);
            }
            if (scheme.equals("sasl") && !authenticated.await(wait, TimeUnit.SECONDS)) {
                System.out.println("FAIL no SASL authentication in " + wait + " s");
                System.exit(2);
            }
            List<ACL> acl = Collections.singletonList(new ACL(ZooDefs.Perms.ALL, new Id(scheme, id)));
            zk.create("/secure", "v".getBytes("UTF-8"), acl, CreateMode.PERSISTENT);
            System.out.println("ok create /secure with acl " + scheme + ":" + id);
            byte[] data = zk.getData("/secure", false, null);
            System.out.println("ok read /secure: " + new String(data, "UTF-8"));
            for (ClientInfo ci : zk.whoAmI()) {
                if (!ci.getAuthScheme().equals("ip")) {
                    System.out.println("whoami " + ci.getAuthScheme() + " " + ci.getUser());
                }
            }
            zk.delete("/secure", -1);
            System.out.println("ok delete /secure");
        } catch (KeeperException e) {
            System.out.println("FAIL " + e.code() + " " + e.getPath());
            code = 1;
        } finally {
            zk.close();
        }
        System.exit(code);
    }
}
