#!/usr/bin/env bash
# Makes the key material the TLS tests read (server/src/tls): a CA, a server certificate
# (X.509 v3, SAN 127.0.0.1 and localhost), a client certificate made as kazoo's harness makes
# its own (X.509 v1, CN=client, no extensions), and the server's key and chain in every store
# format ZooKeeper 3.8 reads: JKS and PKCS12 (keytool), PKCS12 with the legacy 3DES scheme
# (openssl -legacy), PEM (one file: PKCS#8 key + chain), PEM with an encrypted key (PBES2).
# Store password: "apassword" (kazoo's). Valid for 100 years. Run from this directory; needs
# openssl and a JDK's keytool. The outputs are committed; run again only to change them.
set -euo pipefail
cd "$(dirname "$0")"
pw=apassword
days=36500
rm -f ./*.pem ./*.jks ./*.p12 ./*.srl ./*.csr ./*.cnf
cat > ca.cnf <<CNF
[req]
distinguished_name = dn
x509_extensions = v3_ca
prompt = no
[dn]
CN = Corral Test CA
O = Corral
[v3_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
CNF
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca.pem -days $days \
    -sha256 -config ca.cnf 2>/dev/null
cat > server.cnf <<CNF
subjectAltName = IP:127.0.0.1, DNS:localhost
basicConstraints = CA:FALSE
keyUsage = digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
CNF
openssl req -newkey rsa:2048 -nodes -keyout server-key.pem -out server.csr \
    -subj "/CN=localhost/OU=Test/O=Corral" 2>/dev/null
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
    -out server-cert.pem -days $days -sha256 -extfile server.cnf 2>/dev/null
# A v1 client certificate (no extensions), as kazoo's harness makes its own.
openssl req -newkey rsa:2048 -nodes -keyout client-key.pem -out client.csr -subj "/CN=client" 2>/dev/null
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
    -out client-cert.pem -days $days -sha256 2>/dev/null
# A v1 server certificate in a JKS keystore whose chain is the leaf alone, as kazoo's.
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
    -out server-v1-cert.pem -days $days -sha256 2>/dev/null
openssl pkcs12 -export -in server-v1-cert.pem -inkey server-key.pem -name server \
    -passout pass:$pw -out server-v1.p12
keytool -importkeystore -srckeystore server-v1.p12 -srcstoretype PKCS12 -srcstorepass $pw \
    -destkeystore keystore-v1.jks -deststoretype JKS -deststorepass $pw -destkeypass $pw \
    -noprompt 2>/dev/null
rm server-v1.p12
# The client's own stores, for the Java client: PKCS12 and PEM (key and certificate).
openssl pkcs12 -export -in client-cert.pem -inkey client-key.pem -name client \
    -passout pass:$pw -out client-keystore.p12
cat client-key.pem client-cert.pem > client-keystore.pem
# A self-signed client certificate no trusted CA vouches for.
openssl req -x509 -newkey rsa:2048 -nodes -keyout rogue-key.pem -out rogue-cert.pem \
    -days $days -sha256 -subj "/CN=client" 2>/dev/null
# A client certificate from the trusted CA that expired in 2021 (openssl ca, which takes
# explicit validity dates).
mkdir -p expired-ca
touch expired-ca/index.txt
echo 1000 > expired-ca/serial
cat > expired-ca.cnf <<CNF
[ca]
default_ca = ca
[ca]
database = expired-ca/index.txt
new_certs_dir = expired-ca
serial = expired-ca/serial
default_md = sha256
policy = any
copy_extensions = none
[any]
commonName = supplied
CNF
openssl req -newkey rsa:2048 -nodes -keyout expired-key.pem -out expired.csr -subj "/CN=expired" 2>/dev/null
openssl ca -batch -config expired-ca.cnf -cert ca.pem -keyfile ca-key.pem -in expired.csr \
    -out expired-cert.pem -startdate 20200101000000Z -enddate 20210101000000Z -notext 2>/dev/null
rm -rf expired-ca expired-ca.cnf expired.csr
cat server-cert.pem ca.pem > server-chain.pem
# PEM keystore: the PKCS#8 key and the chain in one file; and with the key encrypted.
cat server-key.pem server-chain.pem > keystore.pem
openssl pkcs8 -topk8 -in server-key.pem -v2 aes-256-cbc -passout pass:$pw -out server-key-enc.pem
cat server-key-enc.pem server-chain.pem > keystore-encrypted.pem
cp ca.pem truststore.pem
# PKCS12: modern (AES, as keytool writes it) and legacy (3DES/RC2).
openssl pkcs12 -export -in server-cert.pem -inkey server-key.pem -certfile ca.pem \
    -name server -passout pass:$pw -out keystore-openssl.p12
openssl pkcs12 -export -legacy -in server-cert.pem -inkey server-key.pem -certfile ca.pem \
    -name server -passout pass:$pw -out keystore-legacy.p12 2>/dev/null || \
    openssl pkcs12 -export -in server-cert.pem -inkey server-key.pem -certfile ca.pem \
    -name server -passout pass:$pw -keypbe PBE-SHA1-3DES -certpbe PBE-SHA1-3DES \
    -out keystore-legacy.p12
# keytool: JKS and PKCS12 keystores from the openssl PKCS12, truststores with the CA.
keytool -importkeystore -srckeystore keystore-openssl.p12 -srcstoretype PKCS12 \
    -srcstorepass $pw -destkeystore keystore.jks -deststoretype JKS -deststorepass $pw \
    -destkeypass $pw -noprompt 2>/dev/null
keytool -importkeystore -srckeystore keystore-openssl.p12 -srcstoretype PKCS12 \
    -srcstorepass $pw -destkeystore keystore.p12 -deststoretype PKCS12 -deststorepass $pw \
    -noprompt 2>/dev/null
keytool -importcert -alias ca -file ca.pem -keystore truststore.jks -storetype JKS \
    -storepass $pw -noprompt 2>/dev/null
keytool -importcert -alias ca -file ca.pem -keystore truststore.p12 -storetype PKCS12 \
    -storepass $pw -noprompt 2>/dev/null
rm -f ./*.srl ./*.csr ./*.cnf server-key-enc.pem
ls -l
