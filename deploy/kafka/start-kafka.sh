#!/bin/sh
# The compose stack's Kafka: one KRaft node (broker + controller) whose only client listener is SASL_SSL
# (TLS with the certificate from make-secrets.sh, SCRAM-SHA-512 users `admin` and `ews`). The controller listener
# is PLAINTEXT on the container's loopback only. SCRAM users are added when the storage is first formatted.
set -eu
S=/run/secrets
KAFKA=/opt/kafka
CONF=/tmp/server.properties
ADMIN_PW="$(cat "$S/kafka-admin-password")"
EWS_PW="$(cat "$S/kafka-ews-password")"
cat > "$CONF" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@localhost:9094
listeners=SASL_SSL://:9093,CONTROLLER://localhost:9094
advertised.listeners=SASL_SSL://kafka:9093
controller.listener.names=CONTROLLER
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$ADMIN_PW";
ssl.keystore.type=PEM
ssl.keystore.location=$S/kafka-broker-keystore
ssl.truststore.type=PEM
ssl.truststore.location=$S/kafka-ca
ssl.client.auth=none
log.dirs=/var/lib/kafka/data
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
default.replication.factor=1
group.initial.rebalance.delay.ms=0
log.retention.hours=168
PROPS
cat > /tmp/admin.properties <<PROPS
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$ADMIN_PW";
ssl.truststore.type=PEM
ssl.truststore.location=$S/kafka-ca
PROPS
"$KAFKA/bin/kafka-storage.sh" format --ignore-formatted -t "${CLUSTER_ID:?set CLUSTER_ID}" -c "$CONF" \
  --add-scram "SCRAM-SHA-512=[name=admin,password=$ADMIN_PW]" \
  --add-scram "SCRAM-SHA-512=[name=ews,password=$EWS_PW]"
exec "$KAFKA/bin/kafka-server-start.sh" "$CONF"
