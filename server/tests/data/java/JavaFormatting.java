// Reference output for the Java formatting rules corral-server's admin/ module reproduces in
// four-letter-word answers, produced by the JDK itself (run on OpenJDK 17, the JVM the samples
// of ZooKeeper 3.8.0 in shared/ came from).
//
// Regenerate (from this directory):
//   javac -d /tmp/corral-java JavaFormatting.java && \
//   java -Duser.timezone=UTC -cp /tmp/corral-java JavaFormatting > java-formatting.txt
//
// Output lines:
//   double <IEEE bits, hex> <Double.toString>
//   avg <total> <count> <Double.toString of ZooKeeper's AvgMinMaxCounter.getAvg()>
//   date <epoch ms> <java.util.Date.toString() in UTC>
//   addr <literal> <port> <InetSocketAddress.toString()>
import java.math.BigDecimal;
import java.math.RoundingMode;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.util.Date;

public class JavaFormatting {
    public static void main(String[] args) throws Exception {
        double[] ds = {
            0.0, -0.0, 1.0, -1.0, 0.5, 0.1, 1.2345, 100.0, 9999999.0, 1.0E7, 12345678.9, 0.001,
            0.00099, 1.0E-4, 1.0E-5, 123456.789, 2.0 / 3.0, 1.0 / 3.0, 1e21, 1.7976931348623157E308,
            4.9E-324, Double.NaN, Double.POSITIVE_INFINITY, Double.NEGATIVE_INFINITY, 3.0E10,
            0.3333, 1234.5678, 5.0E-324, 2.2250738585072014E-308, 1.0E22, 1.0E23, 8.41E21,
        };
        for (double d : ds) {
            System.out.println("double " + Long.toHexString(Double.doubleToRawLongBits(d)) + " " + d);
        }
        long[][] avgs = {{0, 1}, {1, 3}, {2, 3}, {10, 4}, {1, 32}, {3, 32}, {5, 16}, {100001, 3},
                         {7, 1}, {123456789, 7}, {1, 7}, {1, 160000}, {1, 20000}, {3, 80000}};
        for (long[] a : avgs) {
            double avg = a[0] / (double) a[1];
            double rounded = new BigDecimal(avg).setScale(4, RoundingMode.HALF_UP).doubleValue();
            System.out.println("avg " + a[0] + " " + a[1] + " " + rounded);
        }
        long[] dates = {0L, 1668140213000L, 1795267020123L, 951782400000L, 4102444799999L,
                        -86400000L};
        for (long t : dates) {
            System.out.println("date " + t + " " + new Date(t));
        }
        String[][] addrs = {{"127.0.0.1", "56016"}, {"::1", "2181"}, {"2001:db8::1", "80"},
                            {"::ffff:10.0.0.1", "1"}, {"fe80::1:2:3:4", "65535"}, {"0.0.0.0", "0"},
                            {"::", "2181"}, {"2001:db8:0:0:1:0:0:1", "9"}};
        for (String[] a : addrs) {
            InetSocketAddress sa = new InetSocketAddress(InetAddress.getByName(a[0]),
                                                         Integer.parseInt(a[1]));
            System.out.println("addr " + a[0] + " " + a[1] + " " + sa);
        }
    }
}
