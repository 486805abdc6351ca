#!/bin/sh
# nginx-router's command: renders the admin allow-list from ADMIN_ALLOW_CIDRS
# (comma-separated addresses or CIDRs; unset or empty = 127.0.0.1, i.e. only
# `kubectl port-forward` to a router pod), then runs the container's args
# (nginx). An entry that is not an address or CIDR stops the pod with one line
# naming the variable, before nginx starts.
#   sh start.sh --print     prints the rendered include instead (tools/deploy tests it)
# The admin app still requires its bearer tokens; this only decides who may
# reach status, drain, undrain, pod, /api/v1/admin/* and /dashboard/ through
# the router (SPEC 10.1).
set -euf
cidrs="${ADMIN_ALLOW_CIDRS:-127.0.0.1}"
rules=""
for entry in $(printf '%s' "$cidrs" | tr ',' ' '); do
  if ! printf '%s' "$entry" | grep -Eq '^(([0-9]{1,3}\.){3}[0-9]{1,3}(/([0-9]|[12][0-9]|3[0-2]))?|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*(/([0-9]|[1-9][0-9]|1[01][0-9]|12[0-8]))?)$'; then
    echo "invalid configuration: ADMIN_ALLOW_CIDRS entry \"$entry\" is not an IP address or CIDR" >&2
    exit 1
  fi
  rules="${rules}allow ${entry};
"
done
rules="${rules}deny all;
"
if [ "${1:-}" = "--print" ]; then
  printf '%s' "$rules"
  exit 0
fi
mkdir -p /tmp/smart-router
printf '%s' "$rules" >/tmp/smart-router/admin-access.conf
exec "$@"
