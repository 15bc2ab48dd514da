// Reference values for corral-server's session/ids.rs, produced by the JDK itself.
//
// Regenerate (from this directory):
//   javac -d /tmp/corral-java JavaRandomPasswords.java && \
//   java -cp /tmp/corral-java JavaRandomPasswords > java-random-passwords.txt
//
// Output lines:
//   passwd <session id, 16 hex digits> <16-byte password, hex>
//       = new Random(sessionId ^ 0xB3415C00L).nextBytes(new byte[16]), as ZooKeeper's
//         ZooKeeperServer.generatePasswd does it.
//   ints <seed> <first five nextInt() values, decimal>
//   bytes <seed> <len> <nextBytes of that length, hex>   (lengths not a multiple of 4)
//   sid <server id> <elapsed ms> <initial session id, 16 hex digits>
//       = ((elapsed << 24) >>> 8) | (sid << 56), as SessionTrackerImpl.initializeNextSessionId.
import java.util.Random;

public class JavaRandomPasswords {
    static String hex(byte[] b) {
        StringBuilder sb = new StringBuilder();
        for (byte x : b) {
            sb.append(String.format("%02x", x & 0xff));
        }
        return sb.toString();
    }

    public static void main(String[] args) {
        long[] ids = {
            0L, 1L, -1L, 0x1000027887b0000L, 0x1000027887b0001L, 0x100000d21e00000L,
            0x300000d42930001L, 0x7fffffffffffffffL, 0x8000000000000000L, 0xB3415C00L,
            0xff00000000000000L, 0x123456789abcdefL, 0x0100018bcfe56800L,
        };
        for (long id : ids) {
            Random r = new Random(id ^ 0xB3415C00L);
            byte[] p = new byte[16];
            r.nextBytes(p);
            System.out.println("passwd " + String.format("%016x", id) + " " + hex(p));
        }
        long[] seeds = {0L, 42L, -42L, 0x5DEECE66DL, Long.MIN_VALUE};
        for (long s : seeds) {
            Random r = new Random(s);
            StringBuilder sb = new StringBuilder("ints " + s);
            for (int i = 0; i < 5; i++) {
                sb.append(' ').append(r.nextInt());
            }
            System.out.println(sb);
        }
        int[] lens = {0, 1, 3, 5, 7, 13};
        for (int len : lens) {
            Random r = new Random(12345L);
            byte[] b = new byte[len];
            r.nextBytes(b);
            System.out.println("bytes 12345 " + len + " " + hex(b));
        }
        long[][] sids = {{1, 0}, {1, 123456789L}, {3, 987654321098L}, {255, 1L}, {128, 0},
                         {2, 0xffffffffffL}, {1, 0x10000000000L}, {256, 77}};
        for (long[] s : sids) {
            long next = (s[1] << 24) >>> 8;
            next |= (s[0] << 56);
            System.out.println("sid " + s[0] + " " + s[1] + " " + String.format("%016x", next));
        }
    }
}
