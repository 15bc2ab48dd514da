"""The official Java client over TLS and SASL, against Apache ZooKeeper and against corral.

Usage: java_secure.py [--run-dir DIR] [--corral PATH]

Both servers get the same zoo.cfg: a TLS-only secureClientPort with JKS stores (server
certificate X.509 v3, CA in the truststore), the SASL provider, and a JAAS file with
DIGEST-MD5 users. ci/clients/java/SecureCheck.java (compiled with javac) then runs, configured
by system properties as its users configure it, in each scenario:

  tls-pkcs12    TLS with a PKCS12 client keystore (the client's certificate is X.509 v1),
                a node with ACL x509:CN=client created, read and deleted
  tls-pem       the same with PEM client key and trust stores
  sasl-digest   SASL DIGEST-MD5 from a JAAS Client section, ACL sasl:jaasuser
  sasl-wrong    the same with a wrong password: must fail against both
  tls-untrusted a self-signed client certificate: no session against either

and then, with a KDC started by ci/kdc.sh and both servers' JAAS Server section naming the
JDK's Krb5LoginModule (a keytab for zookeeper/127.0.0.1@CORRAL.TEST):

  sasl-kerberos                the client logs in from its keytab, ACL sasl:client@CORRAL.TEST
  sasl-kerberos-other-service  a ticket for another service: must fail against both

A scenario's transcript must be the same against both servers, and pass (or, for sasl-wrong
and tls-untrusted, fail) against both. The key material is server/src/tls/testdata (made by its make.sh).
"""

import argparse
import glob
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import servers  # noqa: E402

JAR = "/usr/share/java/zookeeper.jar"
PW = "apassword"
REALM = "CORRAL.TEST"


def netty_classpath():
    names = ["all", "buffer", "codec", "common", "handler", "resolver", "transport",
             "transport-native-unix-common", "transport-native-epoll"]
    jars = []
    for n in names:
        jars += sorted(glob.glob(f"/usr/share/java/netty-{n}.jar"))
    return ":".join(jars)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.abspath(os.path.join(here, "..", ".."))
    td = os.path.join(root, "server", "src", "tls", "testdata")
    ap = argparse.ArgumentParser()
    ap.add_argument("--run-dir", default=os.path.join(root, "target", "clients-run", "java-secure"))
    ap.add_argument("--corral", default=None)
    args = ap.parse_args()
    run_dir = os.path.abspath(args.run_dir)
    classes = os.path.join(run_dir, "classes")
    os.makedirs(classes, exist_ok=True)
    corral = args.corral or servers.corral_binary()
    netty = netty_classpath()
    cp = f"{JAR}:/usr/share/java/slf4j-simple.jar:{netty}"
    c = subprocess.run(["javac", "-Xlint:all,-path", "-Werror", "-cp", JAR, "-d", classes,
                        os.path.join(here, "java", "SecureCheck.java")],
                       capture_output=True, text=True, timeout=120)
    if c.returncode != 0:
        print("java-secure: javac failed:\n" + c.stdout + c.stderr)
        sys.exit(1)

    server_jaas = os.path.join(run_dir, "server-jaas.conf")
    with open(server_jaas, "w") as f:
        f.write('Server {\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n'
                '  user_super="super_secret"\n  user_jaasuser="jaas_password";\n};\n')

    def client_jaas(pw):
        p = os.path.join(run_dir, f"client-jaas-{pw}.conf")
        with open(p, "w") as f:
            f.write('Client {\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n'
                    f'  username="jaasuser"\n  password="{pw}";\n}};\n')
        return p

    # The rogue client's PEM keystore: its key and self-signed certificate in one file.
    rogue = os.path.join(run_dir, "rogue.pem")
    with open(f"{td}/rogue-key.pem") as k, open(f"{td}/rogue-cert.pem") as c2, open(rogue, "w") as f:
        f.write(k.read() + c2.read())
    tls_client = ["-Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty",
                  "-Dzookeeper.client.secure=true"]
    scenarios = [
        ("tls-pkcs12", True, "x509", "CN=client", True, tls_client + [
            f"-Dzookeeper.ssl.keyStore.location={td}/client-keystore.p12",
            f"-Dzookeeper.ssl.keyStore.password={PW}",
            f"-Dzookeeper.ssl.trustStore.location={td}/truststore.jks",
            f"-Dzookeeper.ssl.trustStore.password={PW}"]),
        ("tls-pem", True, "x509", "CN=client", True, tls_client + [
            f"-Dzookeeper.ssl.keyStore.location={td}/client-keystore.pem",
            f"-Dzookeeper.ssl.trustStore.location={td}/truststore.pem"]),
        ("sasl-digest", False, "sasl", "jaasuser", True,
         [f"-Djava.security.auth.login.config={client_jaas('jaas_password')}"]),
        ("sasl-wrong", False, "sasl", "jaasuser", False,
         [f"-Djava.security.auth.login.config={client_jaas('wrong')}"]),
        ("tls-untrusted", True, "x509", "CN=client", False, tls_client + [
            f"-Dzookeeper.ssl.keyStore.location={rogue}",
            f"-Dzookeeper.ssl.trustStore.location={td}/truststore.pem"]),
    ]

    extra = [
        "secureClientPort={secure}",
        "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
        f"ssl.keyStore.location={td}/keystore.jks",
        f"ssl.keyStore.password={PW}",
        f"ssl.trustStore.location={td}/truststore.jks",
        f"ssl.trustStore.password={PW}",
        "authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
    ]
    # Kerberos: a second pair of servers (a server offers one SASL mechanism, chosen by its JAAS
    # Server section), with a KDC started here.
    runs = [(server_jaas, [], scenarios)]
    kdc = os.path.join(run_dir, "kdc")
    subprocess.run(["bash", "-c", f"[ -f {kdc}/kdc.pid ] && kill $(cat {kdc}/kdc.pid); rm -rf {kdc}"])
    k = subprocess.run(["bash", os.path.join(root, "ci", "kdc.sh"), kdc, REALM,
                        "client:client.keytab", "zookeeper/127.0.0.1:server.keytab",
                        "other/127.0.0.1:other.keytab"], capture_output=True, text=True, timeout=120)
    if k.returncode == 3 and os.environ.get("CORRAL_REQUIRE_KERBEROS") != "1":
        print("java-secure: SKIPPED Kerberos: " + k.stderr.strip())
    elif k.returncode != 0:
        print("java-secure: the KDC did not start:\n" + k.stdout + k.stderr)
        sys.exit(1)
    else:
        krb5 = [f"java.security.krb5.conf={kdc}/krb5.conf"]
        kerberos_jaas = os.path.join(run_dir, "server-jaas-kerberos.conf")
        with open(kerberos_jaas, "w") as f:
            f.write("Server {\n  com.sun.security.auth.module.Krb5LoginModule required\n"
                    f'  useKeyTab=true\n  keyTab="{kdc}/server.keytab"\n  storeKey=true\n'
                    f'  useTicketCache=false\n  principal="zookeeper/127.0.0.1@{REALM}";\n}};\n')
        client_jaas_krb = os.path.join(run_dir, "client-jaas-kerberos.conf")
        with open(client_jaas_krb, "w") as f:
            f.write("Client {\n  com.sun.security.auth.module.Krb5LoginModule required\n"
                    f'  useKeyTab=true\n  keyTab="{kdc}/client.keytab"\n  storeKey=true\n'
                    f'  useTicketCache=false\n  principal="client@{REALM}";\n}};\n')
        krb_client = [f"-Djava.security.auth.login.config={client_jaas_krb}",
                      f"-Djava.security.krb5.conf={kdc}/krb5.conf",
                      # The client would ask for zookeeper/localhost (the address's reverse name).
                      f"-Dzookeeper.server.principal=zookeeper/127.0.0.1@{REALM}"]
        runs.append((kerberos_jaas, krb5, [
            ("sasl-kerberos", False, "sasl", f"client@{REALM}", True, krb_client),
            # A ticket for another service: the server cannot read it.
            ("sasl-kerberos-other-service", False, "sasl", f"client@{REALM}", False,
             krb_client[:-1] + [f"-Dzookeeper.server.principal=other/127.0.0.1@{REALM}"]),
        ]))
    scenarios = [sc for _, _, scs in runs for sc in scs]
    results = {}
    ok = True
    for kind, (jaas, more_props, run_scenarios) in [(k, r) for r in runs for k in ("zookeeper", "corral")]:
        secure = servers.free_port()
        cfg = [e.replace("{secure}", str(secure)) for e in extra]
        with servers.Server(kind, run_dir, corral_bin=corral, extra_config=cfg,
                            props=[f"java.security.auth.login.config={jaas}"] + more_props,
                            classpath=f"{servers.ZK_CLASSPATH}:{netty}") as srv:
            for name, tls, scheme, ident, should_pass, props in run_scenarios:
                port = secure if tls else srv.port
                t = time.monotonic()
                wait = "30" if should_pass else "8"
                p = subprocess.run(["java", "-XX:TieredStopAtLevel=1", "-Dsecurecheck.wait=" + wait]
                                   + props + ["-cp", f"{classes}:{cp}", "SecureCheck",
                                              f"127.0.0.1:{port}", scheme, ident],
                                   capture_output=True, text=True, timeout=120)
                out = p.stdout.splitlines()
                with open(os.path.join(run_dir, f"{kind}-{name}.out"), "w") as f:
                    f.write(p.stdout + "\n--- stderr\n" + p.stderr)
                passed = p.returncode == 0
                results[(kind, name)] = (passed, out)
                verdict = "as expected" if passed == should_pass else "UNEXPECTED"
                print(f"java-secure: {kind} {name}: exit {p.returncode} ({verdict}, "
                      f"{time.monotonic() - t:.1f}s)")
                for line in out:
                    print(f"    {line}")
                if passed != should_pass:
                    ok = False
    for name, _, _, _, should_pass, _ in scenarios:
        zk, co = results[("zookeeper", name)], results[("corral", name)]
        if zk[1] != co[1]:
            ok = False
            print(f"java-secure: {name}: transcripts differ:\n  zookeeper {zk[1]}\n  corral    {co[1]}")
    if os.path.exists(f"{kdc}/kdc.pid"):
        subprocess.run(["bash", "-c", f"kill $(cat {kdc}/kdc.pid)"])
    print(f"java-secure: {'OK' if ok else 'FAILED'}; outputs in {run_dir}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
