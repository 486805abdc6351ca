#!/bin/sh
# compose's one-shot `redis-init` (SPEC 10.1): the Redis TLS certificates and one
# ACL user per app, made at `docker compose up` and kept across runs (named
# volumes). Runs as root in the sim image (openssl + tools/redis-acl), then:
#   /redis-ca           the CA key: only this service mounts it
#   /redis-tls          ca.crt, server.crt/.key, users.acl (digests only), healthcheck.password: only redis mounts it
#   /users/<user>       that user's password and ca.crt, owned by uid 1000 (node), mounted by that app only
# Delete a user's volume (or its password file) and run `docker compose up` again to rotate it.
set -eu
umask 077
CA=/redis-ca; TLS=/redis-tls
USERS="allocation-api webhooks admin pod-watcher reconciler voice-agents"

if [ ! -f "$CA/ca.key" ] || [ ! -f "$TLS/ca.crt" ]; then
  openssl ecparam -name prime256v1 -genkey -noout -out "$CA/ca.key"
  openssl req -x509 -new -key "$CA/ca.key" -days 825 -subj /CN=smart-router-redis-ca -out "$TLS/ca.crt"
  rm -f "$TLS/server.crt"
fi
if [ ! -f "$TLS/server.crt" ]; then
  openssl ecparam -name prime256v1 -genkey -noout -out "$TLS/server.key"
  openssl req -new -key "$TLS/server.key" -subj /CN=redis -out "$CA/server.csr"
  printf 'subjectAltName=DNS:redis,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >"$CA/server.ext"
  openssl x509 -req -in "$CA/server.csr" -CA "$TLS/ca.crt" -CAkey "$CA/ca.key" -CAcreateserial -days 825 -extfile "$CA/server.ext" -out "$TLS/server.crt"
fi

set --
for user in $USERS; do set -- "$@" --password-file "$user=/users/$user/password"; done
set -- "$@" --password-file "healthcheck=$TLS/healthcheck.password"
node /app/dist/tools/redis-acl/src/main.js --prefix "${REDIS_PREFIX:-voice:}" --generate "$@" --out "$TLS/users.acl"

# Redis runs as its own user (uid 999 in the official image): it reads its files, nobody else mounts them.
chmod 0444 "$TLS/ca.crt" "$TLS/server.crt" "$TLS/server.key" "$TLS/users.acl" "$TLS/healthcheck.password"
for user in $USERS; do
  cp "$TLS/ca.crt" "/users/$user/ca.crt"
  chown 1000:1000 "/users/$user/password" "/users/$user/ca.crt"
  chmod 0400 "/users/$user/password"; chmod 0444 "/users/$user/ca.crt"
done
echo "redis-init: certificates and ACL users ready"
