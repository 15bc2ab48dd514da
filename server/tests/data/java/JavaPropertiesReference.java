// Reference output for corral-server's zoo.cfg parser (config.rs), produced by the JDK's own
// java.util.Properties.load(InputStream) - the call ZooKeeper's QuorumPeerConfig.parse makes.
//
// Regenerate (from this directory):
//   javac -d /tmp/corral-java JavaPropertiesReference.java && \
//   java -cp /tmp/corral-java JavaPropertiesReference properties-edge-cases.properties \
//     > properties-edge-cases.expected
//
// One line per property, sorted by key: <key>\t<value>, with '\\', tab, CR, LF, FF and every
// character outside printable ASCII written as a \\uXXXX escape so the file stays one entry
// per line.
import java.io.FileInputStream;
import java.util.Properties;
import java.util.TreeMap;

public class JavaPropertiesReference {
    static String show(String s) {
        StringBuilder sb = new StringBuilder();
        for (char c : s.toCharArray()) {
            if (c == '\\' || c < 0x20 || c > 0x7e) {
                sb.append(String.format("\\u%04x", (int) c));
            } else {
                sb.append(c);
            }
        }
        return sb.toString();
    }

    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        try (FileInputStream in = new FileInputStream(args[0])) {
            p.load(in);
        }
        TreeMap<String, String> sorted = new TreeMap<>();
        for (String k : p.stringPropertyNames()) {
            sorted.put(k, p.getProperty(k));
        }
        for (var e : sorted.entrySet()) {
            System.out.println(show(e.getKey()) + "\t" + show(e.getValue()));
        }
    }
}
