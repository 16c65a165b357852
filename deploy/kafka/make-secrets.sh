#!/bin/sh
# Makes what the compose stack's TLS + SASL/SCRAM Kafka and the workers need, into deploy/kafka/secrets/
# (ignored by git, files 0600/0644; rerunning keeps what exists, delete the directory to start over):
#
#   ca.pem, ca.key          a private CA (10 years) that signs the broker's certificate; workers trust ca.pem
#   broker-keystore.pem     the broker's PKCS#8 key and certificate (CN and SAN: kafka, localhost), Kafka's PEM store
#   kafka-admin.password    SCRAM-SHA-512 password of `admin` (inter-broker and kafka-configs.sh)
#   kafka-ews.password      SCRAM-SHA-512 password of `ews` (the workers, EWS_KAFKA_SASL_PASSWORD_FILE)
#   ews-data.key            the workers' data key ring (EWS_DATA_KEY_FILE): seals webhook secrets, MACs records
#
# Usage: sh deploy/kafka/make-secrets.sh [extra SAN DNS name ...]     (needs openssl)
set -eu
DIR="$(cd "$(dirname "$0")" && pwd)/secrets"
mkdir -p "$DIR"
chmod 700 "$DIR"   # the directory keeps them private on the host; compose mounts each file as a secret
cd "$DIR"
umask 077
SANS="DNS:kafka,DNS:localhost,IP:127.0.0.1"
for name in "$@"; do SANS="$SANS,DNS:$name"; done
if [ ! -f ca.pem ]; then
  openssl req -x509 -newkey rsa:3072 -sha256 -days 3650 -nodes -keyout ca.key -out ca.pem -subj "/CN=ews-kafka-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi
if [ ! -f broker-keystore.pem ]; then
  openssl req -newkey rsa:3072 -sha256 -nodes -keyout broker.key -out broker.csr -subj "/CN=kafka" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$SANS" > broker.ext
  openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 -sha256 \
    -extfile broker.ext -out broker.pem 2>/dev/null
  openssl pkcs8 -topk8 -nocrypt -in broker.key -out broker.pk8
  cat broker.pk8 broker.pem ca.pem > broker-keystore.pem
  rm -f broker.key broker.pk8 broker.csr broker.ext ca.srl
fi
[ -f kafka-admin.password ] || openssl rand -hex 24 > kafka-admin.password
[ -f kafka-ews.password ] || openssl rand -hex 24 > kafka-ews.password
[ -f ews-data.key ] || printf 'k1 %s\n' "$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n')" > ews-data.key
chmod 644 ca.pem broker.pem
# compose mounts each file at /run/secrets/<name> with the file's mode; the containers' users (uid 1000 in the
# Kafka image, the ews image's own) must read them; the 0700 directory keeps them from other host users
chmod 644 broker-keystore.pem kafka-admin.password kafka-ews.password ews-data.key
echo "secrets in $DIR"
