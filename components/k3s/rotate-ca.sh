#!/bin/bash
# Loads the CA files of the cluster's CA secret into K3s with `k3s certificate rotate-ca`, after a
# `pulumi up` that changed platform:cluster.ca (docs/operations.md, "Rotate credentials"). Runs
# on the server that founded the cluster, through SSM Run Command: its boot.env names the CA
# secret and only its role may read it. K3s checks that the new CAs chain to the ones in use and
# stores them in the datastore; servers, then agents, take them up when K3s restarts.
#
# PLATFORM_ROOT prefixes every path, as in boot.sh, so the script can run in a sandbox.
set -euo pipefail
umask 077

ROOT="${PLATFORM_ROOT:-}"
# shellcheck source=/dev/null
. "$ROOT/etc/platform/boot.env"
: "${CA_SECRET_ID:?boot.env names no CA secret: run this on server 0, which founded the cluster}"
: "${AWS_REGION:?boot.env must set AWS_REGION}"

# K3s's rule: stage the files beside server/tls, never over the files in use.
STAGE=$(mktemp -d "$ROOT/var/lib/rancher/k3s/rotate-ca.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT

# The AWS CLI's messages go to the terminal, only SecretString into the staging folder.
aws secretsmanager get-secret-value --region "$AWS_REGION" --secret-id "$CA_SECRET_ID" \
  --query SecretString --output text >"$STAGE/secret.json"
python3 - "$STAGE/secret.json" "$STAGE/server/tls" <<'PY'
import json, os, sys
with open(sys.argv[1]) as handle:
    files = json.load(handle).get("caFiles") or sys.exit("the CA secret has no caFiles")
for name, pem in sorted(files.items()):
    path = os.path.join(sys.argv[2], name)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(pem)
PY
rm -f "$STAGE/secret.json"

k3s certificate rotate-ca --path="$STAGE/server"
echo "rotate-ca: loaded; restart K3s on each server in turn, then on the agents"
