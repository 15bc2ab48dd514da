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
    results = {}
    ok = True
    for kind in ("zookeeper", "corral"):
        secure = servers.free_port()
        cfg = [e.replace("{secure}", str(secure)) for e in extra]
        with servers.Server(kind, run_dir, corral_bin=corral, extra_config=cfg,
                            props=[f"java.security.auth.login.config={server_jaas}"],
                            classpath=f"{servers.ZK_CLASSPATH}:{netty}") as srv:
            for name, tls, scheme, ident, should_pass, props in scenarios:
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
    print(f"java-secure: {'OK' if ok else 'FAILED'}; outputs in {run_dir}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
